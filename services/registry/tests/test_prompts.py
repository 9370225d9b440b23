from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from anvil_registry.models import (
    AuditEntry,
    ConfigRevision,
    Environment,
    Event,
    Project,
    Prompt,
    PromptVersion,
    RevisionEntry,
)

PROBLEM = "application/problem+json"
ORG = "/v1/orgs/acme"
PROMPTS = "/v1/orgs/acme/projects/web/prompts"


def text(template: str, **variables: dict[str, Any]) -> dict[str, Any]:
    return {"template": template, "variables": variables}


async def add(client, headers, name: str, content: dict[str, Any], **extra: Any):
    return await client.post(
        f"{PROMPTS}/{name}/versions", json={"content": content, **extra}, headers=headers
    )


async def create_project(client, headers, slug: str, org: str = "acme") -> None:
    r = await client.post(f"/v1/orgs/{org}/projects", json={"slug": slug, "name": slug}, headers=headers)
    assert r.status_code == 201, r.text


def assert_problem(r, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    assert body["type"] == f"urn:anvil:problem:{code}"
    return body


async def test_create_prompt_returns_201_with_etag_and_location(client, acme_headers, acme):
    r = await client.post(
        PROMPTS, json={"name": "support/greeting", "description": "Hi"}, headers=acme_headers
    )
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == '"v0"'
    assert r.headers["location"] == f"{PROMPTS}/support/greeting"
    body = r.json()
    assert body["name"] == "support/greeting"
    assert body["latest_version"] == 0
    assert body["archived_at"] is None
    r = await client.get(f"{PROMPTS}/support/greeting", headers=acme_headers)
    assert r.status_code == 200
    assert r.headers["etag"] == '"v0"'
    assert r.json()["description"] == "Hi"


async def test_duplicate_prompt_is_409_and_writes_nothing(client, acme_headers, acme, snapshot):
    assert (await client.post(PROMPTS, json={"name": "a"}, headers=acme_headers)).status_code == 201
    before = await snapshot()
    r = await client.post(PROMPTS, json={"name": "a"}, headers=acme_headers)
    assert_problem(r, 409, "prompt-exists")
    assert await snapshot() == before


@pytest.mark.parametrize("name", ["versions", "a/versions", "versions/a", "Bad", "a//b", "-a", "a/"])
async def test_invalid_or_reserved_names_are_422_and_write_nothing(
    client, acme_headers, acme, snapshot, name
):
    before = await snapshot()
    r = await client.post(PROMPTS, json={"name": name}, headers=acme_headers)
    assert_problem(r, 422, "validation-failed")
    assert await snapshot() == before


@pytest.mark.parametrize("name", ["a/versions", "versions", "Bad", "a..b/C"])
async def test_first_version_under_an_invalid_name_is_422_and_writes_nothing(
    client, acme_headers, acme, snapshot, name
):
    before = await snapshot()
    assert_problem(await add(client, acme_headers, name, text("Hi")), 422, "invalid-prompt-name")
    assert await snapshot() == before


async def test_first_version_creates_the_prompt_in_the_same_transaction(client, acme_headers, acme, database):
    content = {"template": "Hello {{ name }}", "variables": {"name": None}}
    r = await add(client, acme_headers, "support/greeting", content, message="first")
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == '"v1"'
    assert r.headers["location"] == f"{PROMPTS}/support/greeting/versions/1"
    v = r.json()
    assert v["prompt"] == "support/greeting"
    assert v["number"] == 1
    assert v["parent"] is None
    assert v["origin"] is None
    assert v["message"] == "first"
    assert v["created_by"] == "tester"
    assert v["content_hash"].startswith("sha256:")
    assert v["content"] == {
        "template": "Hello {{ name }}",
        "variables": {"name": {"default": None, "description": ""}},
        "model": None,
        "metadata": {},
    }
    r = await client.get(f"{PROMPTS}/support/greeting", headers=acme_headers)
    assert r.json()["latest_version"] == 1
    assert (await client.get(f"{PROMPTS}/support/greeting/versions/1", headers=acme_headers)).json() == v


async def test_new_content_gets_the_next_number_and_the_latest_as_parent(client, acme_headers, acme, state):
    assert (await add(client, acme_headers, "a", text("one"))).status_code == 201
    r = await add(client, acme_headers, "a", text("two"))
    assert r.status_code == 201
    assert (r.json()["number"], r.json()["parent"]) == (2, 1)
    # Going back to older content is a new version, not a no-op: only the latest is compared.
    r = await add(client, acme_headers, "a", text("one"))
    assert r.status_code == 201
    assert (r.json()["number"], r.json()["parent"]) == (3, 2)
    async with state.db.session(write=False) as session:
        actions = list(await session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert actions.count("prompt.version.create") == 3
    assert actions.count("prompt.create") == 1


async def test_identical_content_is_a_no_op_returning_the_latest_with_200(
    client, acme_headers, acme, snapshot
):
    first = await add(client, acme_headers, "a", {"template": "Hi {{x}}", "variables": {"x": {}}})
    assert first.status_code == 201
    before = await snapshot()
    # Same normal form, spelled differently: still identical.
    r = await add(
        client,
        acme_headers,
        "a",
        {"template": "Hi {{x}}", "variables": {"x": None}, "metadata": {}},
        message="m",
    )
    assert r.status_code == 200, r.text
    assert r.json() == first.json()
    assert r.headers["etag"] == '"v1"'
    assert await snapshot() == before


TOO_BIG = "x" * (256 * 1024 + 1)


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        ({"template": 42}, 422, "invalid-prompt"),
        ({"template": "x", "colour": "red"}, 422, "invalid-prompt"),
        ({"variables": {}}, 422, "invalid-prompt"),
        ({"template": [{"role": "robot", "content": "x"}]}, 422, "invalid-prompt"),
        (text("Hello {{ name }}"), 422, "invalid-prompt"),
        (text("Hello {{ not a tag }}"), 422, "invalid-prompt"),
        (text("Hello {{ name"), 422, "invalid-prompt"),
        (text("{{> bad ref!}}"), 422, "invalid-prompt"),
        (text("{{> footer@1}}"), 422, "unresolved-partial"),
        (text("{{> base@9}}"), 422, "unresolved-partial"),
        (text("{{> nowhere:footer@prod}}"), 422, "unresolved-partial"),
        (text("{{> nowhere:footer}}"), 422, "unresolved-partial"),
        (text("{{> secret:base@1}}"), 422, "unresolved-partial"),
        (text("{{> greeting}}"), 422, "cyclic-reference"),
        (text("{{> greeting@1}}"), 422, "cyclic-reference"),
        (text("{{> web:greeting@prod}}"), 422, "cyclic-reference"),
        ({"template": TOO_BIG}, 422, "prompt-too-large"),
    ],
)
@pytest.mark.parametrize("name", ["greeting", "fresh/one"])
async def test_bad_content_is_rejected_and_writes_nothing(
    client, acme_headers, admin_headers, acme, snapshot, content, status, code, name
):
    assert (await add(client, acme_headers, "greeting", text("Hello"))).status_code == 201
    assert (await add(client, acme_headers, "base", text("Base"))).status_code == 201
    # Another organisation has a project 'secret' with a prompt 'base': invisible from acme.
    await client.post("/v1/orgs", json={"slug": "globex", "name": "Globex"}, headers=admin_headers)
    await create_project(client, admin_headers, "secret", org="globex")
    r = await client.post(
        "/v1/orgs/globex/projects/secret/prompts/base/versions",
        json={"content": text("G")},
        headers=admin_headers,
    )
    assert r.status_code == 201
    if name != "greeting" and code == "cyclic-reference":
        content = text(content["template"].replace("greeting", name))
    before = await snapshot()
    r = await add(client, acme_headers, name, content)
    body = assert_problem(r, status, code)
    assert body["detail"]
    assert await snapshot() == before


async def test_valid_partials_pinned_through_environments_and_across_projects(client, acme_headers, acme):
    await create_project(client, acme_headers, "shared")
    r = await client.post(
        "/v1/orgs/acme/projects/shared/prompts/footer/versions",
        json={"content": text("F")},
        headers=acme_headers,
    )
    assert r.status_code == 201
    assert (await add(client, acme_headers, "footer", text("local"))).status_code == 201
    template = "{{> footer@1}} {{> shared:footer@1}} {{> footer@prod}} {{> shared:footer}} {{> not-yet}}"
    r = await add(client, acme_headers, "page", text(template))
    assert r.status_code == 201, r.text


async def test_stale_if_match_is_412_and_writes_nothing(client, acme_headers, acme, snapshot):
    assert (await add(client, acme_headers, "a", text("one"))).status_code == 201
    before = await snapshot()
    r = await add(client, {**acme_headers, "If-Match": '"v0"'}, "a", text("two"))
    assert assert_problem(r, 412, "precondition-failed")["current_etag"] == '"v1"'
    r = await add(client, {**acme_headers, "If-Match": '"v1"'}, "missing", text("two"))
    assert_problem(r, 412, "precondition-failed")
    assert await snapshot() == before
    r = await add(client, {**acme_headers, "If-Match": '"v1"'}, "a", text("two"))
    assert r.status_code == 201
    assert r.headers["etag"] == '"v2"'


async def test_archived_prompt_or_project_refuses_new_versions_and_writes_nothing(
    client, acme_headers, acme, snapshot
):
    assert (await add(client, acme_headers, "a", text("one"))).status_code == 201
    assert (await client.delete(f"{PROMPTS}/a", headers=acme_headers)).status_code == 200
    before = await snapshot()
    assert_problem(await add(client, acme_headers, "a", text("two")), 409, "archived")
    assert_problem(await add(client, acme_headers, "a", text("one")), 409, "archived")
    assert await snapshot() == before
    assert (await client.delete(f"{ORG}/projects/web", headers=acme_headers)).status_code == 200
    before = await snapshot()
    assert_problem(await add(client, acme_headers, "b", text("one")), 409, "archived")
    assert_problem(await client.post(PROMPTS, json={"name": "c"}, headers=acme_headers), 409, "archived")
    assert await snapshot() == before


async def test_missing_scope_is_403_and_writes_nothing(client, make_token, acme, snapshot):
    reader = {"Authorization": f"Bearer {make_token(scopes=['prompts:read'])}"}
    writer_only = {"Authorization": f"Bearer {make_token(scopes=['prompts:write'])}"}
    before = await snapshot()
    r = await add(client, reader, "a", text("one"))
    assert assert_problem(r, 403, "forbidden")["required_scope"] == "prompts:write"
    assert_problem(await client.post(PROMPTS, json={"name": "a"}, headers=reader), 403, "forbidden")
    assert_problem(await client.delete(f"{PROMPTS}/a", headers=reader), 403, "forbidden")
    for url in (PROMPTS, f"{PROMPTS}/a", f"{PROMPTS}/a/versions", f"{PROMPTS}/a/versions/1"):
        r = await client.get(url, headers=writer_only)
        assert assert_problem(r, 403, "forbidden")["required_scope"] == "prompts:read"
    assert await snapshot() == before


async def test_token_of_another_org_or_project_gets_404_and_writes_nothing(
    client, acme_headers, admin_headers, make_token, acme, snapshot
):
    assert (await add(client, acme_headers, "a", text("one"))).status_code == 201
    await client.post("/v1/orgs", json={"slug": "globex", "name": "Globex"}, headers=admin_headers)
    globex = {"Authorization": f"Bearer {make_token(org='globex')}"}
    other_project = {"Authorization": f"Bearer {make_token(project='mobile')}"}
    before = await snapshot()
    for headers in (globex, other_project):
        for url in (PROMPTS, f"{PROMPTS}/a", f"{PROMPTS}/a/versions", f"{PROMPTS}/a/versions/1"):
            assert_problem(await client.get(url, headers=headers), 404, "not-found")
        assert_problem(await add(client, headers, "a", text("two")), 404, "not-found")
        assert_problem(await client.post(PROMPTS, json={"name": "b"}, headers=headers), 404, "not-found")
        assert_problem(await client.delete(f"{PROMPTS}/a", headers=headers), 404, "not-found")
    assert await snapshot() == before


async def test_prompt_list_paginates_by_name_and_hides_archived(client, acme_headers, acme):
    for name in ("e", "a/x", "c", "b", "d"):
        assert (await client.post(PROMPTS, json={"name": name}, headers=acme_headers)).status_code == 201
    assert (await client.delete(f"{PROMPTS}/c", headers=acme_headers)).status_code == 200
    seen: list[str] = []
    token = None
    while True:
        params: dict[str, Any] = {"page_size": 2, **({"page_token": token} if token else {})}
        page = (await client.get(PROMPTS, params=params, headers=acme_headers)).json()
        seen += [p["name"] for p in page["items"]]
        if not (token := page["next_page_token"]):
            break
    assert seen == ["a/x", "b", "d", "e"]
    page = (await client.get(PROMPTS, params={"include_archived": True}, headers=acme_headers)).json()
    assert [p["name"] for p in page["items"]] == ["a/x", "b", "c", "d", "e"]


async def test_versions_list_newest_first_and_missing_version_is_404(client, acme_headers, acme):
    for i in range(5):
        assert (await add(client, acme_headers, "team/a", text(f"v{i}"))).status_code == 201
    url = f"{PROMPTS}/team/a/versions"
    page = (await client.get(url, params={"page_size": 3}, headers=acme_headers)).json()
    assert [v["number"] for v in page["items"]] == [5, 4, 3]
    assert [v["parent"] for v in page["items"]] == [4, 3, 2]
    rest = (
        await client.get(url, params={"page_token": page["next_page_token"]}, headers=acme_headers)
    ).json()
    assert [v["number"] for v in rest["items"]] == [2, 1]
    assert rest["next_page_token"] is None
    assert_problem(await client.get(f"{url}/6", headers=acme_headers), 404, "not-found")
    assert_problem(await client.get(f"{PROMPTS}/nope/versions", headers=acme_headers), 404, "not-found")


async def test_concurrent_writers_get_consecutive_numbers(client, acme_headers, acme):
    results = await asyncio.gather(*(add(client, acme_headers, "busy/one", text(f"c{i}")) for i in range(8)))
    assert [r.status_code for r in results] == [201] * 8, [r.text for r in results]
    assert sorted(r.json()["number"] for r in results) == list(range(1, 9))
    versions = (await client.get(f"{PROMPTS}/busy/one/versions", headers=acme_headers)).json()["items"]
    assert [(v["number"], v["parent"]) for v in versions] == [(n, n - 1 or None) for n in range(8, 0, -1)]


async def test_archive_sets_archived_at_and_writes_event_and_audit(
    client, acme_headers, acme, state, snapshot
):
    assert (await add(client, acme_headers, "a", text("one"))).status_code == 201
    before = await snapshot()
    r = await client.delete(f"{PROMPTS}/a", headers={**acme_headers, "If-Match": '"v0"'})
    assert assert_problem(r, 412, "precondition-failed")["current_etag"] == '"v1"'
    assert await snapshot() == before
    r = await client.delete(f"{PROMPTS}/a", headers={**acme_headers, "If-Match": '"v1"'})
    assert r.status_code == 200
    assert r.json()["archived_at"] is not None
    # Archived prompts stay readable, with their versions.
    assert (await client.get(f"{PROMPTS}/a/versions/1", headers=acme_headers)).status_code == 200
    async with state.db.session(write=False) as session:
        events = list(await session.scalars(select(Event).where(Event.kind == "prompt.archived")))
        audit = list(
            await session.scalars(select(AuditEntry.action).where(AuditEntry.action == "prompt.archive"))
        )
    assert [e.payload for e in events] == [{"organisation": "acme", "project": "web", "prompt": "a"}]
    assert audit == ["prompt.archive"]
    # Archiving again changes nothing.
    before = await snapshot()
    assert (await client.delete(f"{PROMPTS}/a", headers=acme_headers)).status_code == 200
    assert await snapshot() == before


async def test_purge_deletes_an_unused_prompt_and_its_versions(client, acme_headers, acme, state):
    assert (await add(client, acme_headers, "a", text("one"))).status_code == 201
    assert (await add(client, acme_headers, "a", text("two"))).status_code == 201
    r = await client.delete(f"{PROMPTS}/a", params={"purge": True}, headers=acme_headers)
    assert r.status_code == 204, r.text
    assert_problem(await client.get(f"{PROMPTS}/a", headers=acme_headers), 404, "not-found")
    async with state.db.session(write=False) as session:
        assert list(await session.scalars(select(PromptVersion))) == []
        assert list(await session.scalars(select(Prompt))) == []
        kinds = list(await session.scalars(select(Event.kind)))
    assert kinds == ["prompt.purged"]
    # The name is free again.
    assert (await add(client, acme_headers, "a", text("new"))).json()["number"] == 1


async def test_purge_of_a_pinned_prompt_is_409_naming_the_user(client, acme_headers, acme, snapshot):
    await create_project(client, acme_headers, "shared")
    r = await client.post(
        "/v1/orgs/acme/projects/shared/prompts/footer/versions",
        json={"content": text("F")},
        headers=acme_headers,
    )
    assert r.status_code == 201
    assert (await add(client, acme_headers, "page", text("{{> shared:footer@1}}"))).status_code == 201
    before = await snapshot()
    r = await client.delete(
        "/v1/orgs/acme/projects/shared/prompts/footer", params={"purge": True}, headers=acme_headers
    )
    body = assert_problem(r, 409, "prompt-in-use")
    assert "web:page@1" in body["detail"]
    assert await snapshot() == before


async def test_purge_of_a_prompt_in_a_revision_is_409_and_writes_nothing(
    client, acme_headers, acme, state, snapshot
):
    assert (await add(client, acme_headers, "a", text("one"))).status_code == 201
    async with state.db.session() as session:
        project = await session.scalar(select(Project).where(Project.slug == "web"))
        assert project is not None
        version = await session.scalar(select(PromptVersion))
        assert version is not None
        env = Environment(project_id=project.id, name="prod", last_revision=1)
        session.add(env)
        await session.flush()
        revision = ConfigRevision(
            environment_id=env.id,
            number=1,
            kind="publish",
            document="{}",
            manifest_digest="sha256:" + "0" * 64,
            content_key="sha256:" + "0" * 64,
            created_by="test",
        )
        session.add(revision)
        await session.flush()
        session.add(
            RevisionEntry(
                revision_id=revision.id,
                key="a",
                served=True,
                version_id=version.id,
                content_hash=version.content_hash,
            )
        )
    before = await snapshot()
    r = await client.delete(f"{PROMPTS}/a", params={"purge": True}, headers=acme_headers)
    assert "revision" in assert_problem(r, 409, "prompt-in-use")["detail"]
    assert await snapshot() == before
    # Archiving is still allowed: the revision keeps serving the version.
    assert (await client.delete(f"{PROMPTS}/a", headers=acme_headers)).status_code == 200
