from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from anvil_registry.models import AuditEntry

PROBLEM = "application/problem+json"
PROMPTS = "/v1/orgs/acme/projects/web/prompts"
SETS = "/v1/orgs/acme/projects/web/prompt-sets"


def assert_problem(r, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    assert body["type"] == f"urn:anvil:problem:{code}"
    return body


@pytest.fixture
async def prompts(client, acme_headers, acme) -> list[str]:
    names = ["a", "b", "support/greeting", "old"]
    for name in names:
        r = await client.post(PROMPTS, json={"name": name}, headers=acme_headers)
        assert r.status_code == 201, r.text
    assert (await client.delete(f"{PROMPTS}/old", headers=acme_headers)).status_code == 200
    return names[:3]


async def test_create_stores_members_sorted_and_deduplicated(client, acme_headers, prompts, state):
    body = {"name": "app/checkout", "description": "Checkout", "prompts": ["support/greeting", "b", "a", "b"]}
    r = await client.post(SETS, json=body, headers=acme_headers)
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == '"s1"'
    assert r.headers["location"] == f"{SETS}/app/checkout"
    assert r.json()["prompts"] == ["a", "b", "support/greeting"]
    r = await client.get(f"{SETS}/app/checkout", headers=acme_headers)
    assert r.status_code == 200
    assert r.headers["etag"] == '"s1"'
    assert r.json()["description"] == "Checkout"
    async with state.db.session(write=False) as session:
        actions = list(await session.scalars(select(AuditEntry.action)))
    assert "prompt_set.create" in actions


@pytest.mark.parametrize(
    ("members", "missing"),
    [(["a", "nope"], ["nope"]), (["old", "b"], ["old"]), (["z", "y", "a"], ["y", "z"])],
)
async def test_unknown_or_archived_member_is_422_naming_them_and_writes_nothing(
    client, acme_headers, prompts, snapshot, members, missing
):
    before = await snapshot()
    r = await client.post(SETS, json={"name": "s", "prompts": members}, headers=acme_headers)
    assert assert_problem(r, 422, "unknown-prompt")["missing"] == missing
    assert await snapshot() == before


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Bad Name", "prompts": []},
        {"name": "s", "prompts": ["Not/A/Name"]},
        {"name": "s", "prompts": "a"},
        {"name": "s", "colour": "red"},
    ],
)
async def test_malformed_body_is_422_and_writes_nothing(client, acme_headers, prompts, snapshot, body):
    before = await snapshot()
    assert_problem(await client.post(SETS, json=body, headers=acme_headers), 422, "validation-failed")
    assert await snapshot() == before


async def test_duplicate_set_is_409_and_writes_nothing(client, acme_headers, prompts, snapshot):
    assert (
        await client.post(SETS, json={"name": "s", "prompts": ["a"]}, headers=acme_headers)
    ).status_code == 201
    before = await snapshot()
    r = await client.post(SETS, json={"name": "s", "prompts": ["b"]}, headers=acme_headers)
    assert_problem(r, 409, "prompt-set-exists")
    assert await snapshot() == before


async def test_update_honours_if_match_and_validates_members(client, acme_headers, prompts, snapshot):
    assert (
        await client.post(SETS, json={"name": "s", "prompts": ["a"]}, headers=acme_headers)
    ).status_code == 201
    before = await snapshot()
    r = await client.patch(f"{SETS}/s", json={"prompts": ["b"]}, headers={**acme_headers, "If-Match": '"s7"'})
    assert assert_problem(r, 412, "precondition-failed")["current_etag"] == '"s1"'
    r = await client.patch(f"{SETS}/s", json={"prompts": ["b", "ghost"]}, headers=acme_headers)
    assert assert_problem(r, 422, "unknown-prompt")["missing"] == ["ghost"]
    assert_problem(await client.patch(f"{SETS}/nope", json={}, headers=acme_headers), 404, "not-found")
    assert await snapshot() == before
    r = await client.patch(
        f"{SETS}/s",
        json={"prompts": ["b", "a"], "description": "D"},
        headers={**acme_headers, "If-Match": '"s1"'},
    )
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"s2"'
    assert (r.json()["prompts"], r.json()["description"]) == (["a", "b"], "D")
    r = await client.patch(f"{SETS}/s", json={"description": "only"}, headers=acme_headers)
    assert (r.json()["prompts"], r.headers["etag"]) == (["a", "b"], '"s3"')


async def test_archive_hides_the_set_and_makes_it_read_only(client, acme_headers, prompts, snapshot):
    for name in ("s1", "s2"):
        r = await client.post(SETS, json={"name": name, "prompts": ["a"]}, headers=acme_headers)
        assert r.status_code == 201
    before = await snapshot()
    r = await client.delete(f"{SETS}/s1", headers={**acme_headers, "If-Match": '"s9"'})
    assert_problem(r, 412, "precondition-failed")
    assert await snapshot() == before
    r = await client.delete(f"{SETS}/s1", headers={**acme_headers, "If-Match": '"s1"'})
    assert r.status_code == 200
    assert r.json()["archived_at"] is not None
    assert r.headers["etag"] == '"s2"'
    before = await snapshot()
    assert_problem(
        await client.patch(f"{SETS}/s1", json={"description": "x"}, headers=acme_headers), 409, "archived"
    )
    assert await snapshot() == before
    listed = (await client.get(SETS, headers=acme_headers)).json()["items"]
    assert [s["name"] for s in listed] == ["s2"]
    listed = (await client.get(SETS, params={"include_archived": True}, headers=acme_headers)).json()["items"]
    assert [s["name"] for s in listed] == ["s1", "s2"]


async def test_list_paginates_by_name(client, acme_headers, prompts):
    for name in ("d", "b/x", "a", "c"):
        r = await client.post(SETS, json={"name": name, "prompts": ["a"]}, headers=acme_headers)
        assert r.status_code == 201
    seen: list[str] = []
    token = None
    while True:
        params: dict[str, Any] = {"page_size": 3, **({"page_token": token} if token else {})}
        page = (await client.get(SETS, params=params, headers=acme_headers)).json()
        seen += [s["name"] for s in page["items"]]
        if not (token := page["next_page_token"]):
            break
    assert seen == ["a", "b/x", "c", "d"]


async def test_missing_scope_is_403_and_writes_nothing(client, acme_headers, make_token, prompts, snapshot):
    assert (
        await client.post(SETS, json={"name": "s", "prompts": ["a"]}, headers=acme_headers)
    ).status_code == 201
    reader = {"Authorization": f"Bearer {make_token(scopes=['projects:read', 'prompts:write'])}"}
    nobody = {"Authorization": f"Bearer {make_token(scopes=['prompts:read'])}"}
    before = await snapshot()
    r = await client.post(SETS, json={"name": "t", "prompts": ["a"]}, headers=reader)
    assert assert_problem(r, 403, "forbidden")["required_scope"] == "projects:write"
    assert_problem(
        await client.patch(f"{SETS}/s", json={"description": "x"}, headers=reader), 403, "forbidden"
    )
    assert_problem(await client.delete(f"{SETS}/s", headers=reader), 403, "forbidden")
    for url in (SETS, f"{SETS}/s"):
        r = await client.get(url, headers=nobody)
        assert assert_problem(r, 403, "forbidden")["required_scope"] == "projects:read"
    assert await snapshot() == before


async def test_token_of_another_org_gets_404_and_writes_nothing(
    client, acme_headers, admin_headers, make_token, prompts, snapshot
):
    assert (
        await client.post(SETS, json={"name": "s", "prompts": ["a"]}, headers=acme_headers)
    ).status_code == 201
    await client.post("/v1/orgs", json={"slug": "globex", "name": "Globex"}, headers=admin_headers)
    globex = {"Authorization": f"Bearer {make_token(org='globex')}"}
    before = await snapshot()
    for url in (SETS, f"{SETS}/s"):
        assert_problem(await client.get(url, headers=globex), 404, "not-found")
    r = await client.post(SETS, json={"name": "t", "prompts": ["a"]}, headers=globex)
    assert_problem(r, 404, "not-found")
    assert_problem(
        await client.patch(f"{SETS}/s", json={"description": "x"}, headers=globex), 404, "not-found"
    )
    assert_problem(await client.delete(f"{SETS}/s", headers=globex), 404, "not-found")
    assert await snapshot() == before


async def test_archived_project_refuses_new_sets(client, acme_headers, prompts, snapshot):
    assert (await client.delete("/v1/orgs/acme/projects/web", headers=acme_headers)).status_code == 200
    before = await snapshot()
    r = await client.post(SETS, json={"name": "s", "prompts": []}, headers=acme_headers)
    assert_problem(r, 409, "archived")
    assert await snapshot() == before
