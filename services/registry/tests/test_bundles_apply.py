"""apply_import (POST /v1/orgs/{org}/imports): one transaction that writes a plan, reproduces
content hashes and revision history, replays by import_id, and writes nothing on any refusal."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import uuid
from typing import Any

import pytest
from bundle_testkit import (
    BUNDLE,
    SOURCE,
    build_acme,
    restore_body,
    serve_acme,
    snapshot_of,
    state_of,
    version,
)
from sqlalchemy import Text, cast, select

from anvil_common.db import utcnow
from anvil_registry.auth import KIND_SCOPES
from anvil_registry.models import Organisation, PromptVersion
from anvil_wire import canonical_json, content_digest, normalize_content, verify_revision

FULL = {"selection": {"kind": "organisation"}, "history": "full", "environments": True}


@pytest.fixture
async def restored(client, admin_headers) -> dict[str, str]:
    """An empty organisation 'restored' and an import token for it (the worker's service token)."""
    r = await client.post("/v1/orgs", json={"slug": "restored", "name": "Restored"}, headers=admin_headers)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {_service_token(client, 'restored')}"}


def _service_token(client: Any, org: str, scopes: list[str] | None = None, **limits: str) -> str:
    """A token like the bundle worker's (kind service, 5 minutes, organisation and limits)."""
    state = client._transport.app.state.registry  # the app under test
    token, _ = state.issuer.issue(
        subject="service:bundle-worker",
        kind="service",
        audience="anvil-registry",
        scopes=scopes or ["bundles:import"],
        ttl_seconds=300,
        org=org,
        **limits,
    )
    return str(token)


async def _apply(client: Any, headers: dict[str, str], body: dict[str, Any], org: str = "restored") -> Any:
    return await client.post(f"/v1/orgs/{org}/imports", json=body, headers=headers)


@pytest.fixture
async def backup(client, admin_headers, acme) -> dict[str, Any]:
    """acme built in this test's database, and its full snapshot."""
    await build_acme(client, admin_headers)
    r = await snapshot_of(client, admin_headers, FULL)
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.fixture(scope="session")
def backup_json(template_db, keyset_file, tmp_path_factory) -> dict[str, Any]:
    """The same snapshot made once for the session (it holds no ids), for the tests that only
    need a body to apply; their database has none of acme's rows."""

    async def make() -> dict[str, Any]:
        async with serve_acme(template_db, keyset_file, tmp_path_factory.mktemp("backup")) as served:
            r = await snapshot_of(served.client, served.admin, FULL)
            assert r.status_code == 200, r.text
            return dict(r.json())

    return asyncio.run(make())


async def test_restoring_an_organisation_backup_reproduces_hashes_and_revision_history(
    client, admin_headers, backup, restored
):
    r = await _apply(client, restored, restore_body(backup))
    assert r.status_code == 201, r.text
    result = r.json()
    assert result["created"] == {
        "projects": 2,
        "prompts": 5,
        "versions": 9,
        "prompt_sets": 1,
        "environments": 3,
        "revisions": 6,
    }
    source = await state_of(client, admin_headers, "acme")
    del source["web"]["prompts"]["empty"]  # no version: nothing to carry
    assert await state_of(client, admin_headers, "restored") == source


async def test_every_stored_content_is_the_canonical_json_its_hash_was_taken_of(
    client, admin_headers, backup, restored, state
):
    # Versions written one at a time (build_acme, through the ORM) and in bulk (COPY on
    # Postgres): an export splices this text into its snapshot without encoding it again.
    r = await _apply(client, restored, restore_body(backup))
    assert r.status_code == 201, r.text
    async with state.db.session(write=False) as session:
        rows = (
            await session.execute(select(PromptVersion.content_hash, cast(PromptVersion.content, Text)))
        ).all()
    assert len(rows) == 2 * 9
    for content_hash, text in rows:
        assert text == canonical_json(json.loads(text)).decode()
        assert "sha256:" + hashlib.sha256(text.encode()).hexdigest() == content_hash


async def test_imported_versions_record_their_origin(client, admin_headers, backup, restored):
    assert (await _apply(client, restored, restore_body(backup))).status_code == 201
    r = await client.get("/v1/orgs/restored/projects/web/prompts/greeting/versions/2", headers=admin_headers)
    assert r.json()["origin"] == {"instance": SOURCE, "digest": BUNDLE}
    assert r.json()["parent"] == 1
    r = await client.get("/v1/orgs/acme/projects/web/prompts/greeting/versions/2", headers=admin_headers)
    assert r.json()["origin"] is None


async def test_restored_revisions_are_signed_by_this_instance_for_its_own_environments(
    client, admin_headers, backup, restored, state
):
    assert (await _apply(client, restored, restore_body(backup))).status_code == 201
    envs = {}
    for org in ("acme", "restored"):
        r = await client.get(f"/v1/orgs/{org}/projects/web/environments/staging", headers=admin_headers)
        envs[org] = r.json()["id"]
    assert envs["acme"] != envs["restored"]
    url = "/v1/orgs/restored/projects/web/environments/staging/revisions/3/document"
    document = (await client.get(url, headers=admin_headers)).json()
    verified = verify_revision(document, state.keyset.public_keys(), environment_id=envs["restored"])
    assert (verified.manifest.revision, verified.manifest.rollback_of) == (3, 1)
    assert verified.manifest.organisation["slug"] == "restored"


async def test_an_import_announces_revisions_and_archiving_and_is_audited(
    client, admin_headers, backup_json, restored
):
    head = (await client.get("/v1/events", headers=admin_headers)).json()["head"]
    r = await _apply(client, restored, restore_body(backup_json))
    assert r.status_code == 201
    events = (await client.get(f"/v1/events?after={head}&limit=100", headers=admin_headers)).json()["events"]
    kinds = [
        (e["kind"], e["payload"].get("kind"), e["payload"].get("revision") or e["payload"].get("prompt"))
        for e in events
    ]
    assert kinds == [
        ("revision.created", "publish", 1),  # shared/prod first: web/prod's partials resolve through it
        ("revision.created", "promote", 1),  # web/prod
        ("revision.created", "publish", 2),
        ("revision.created", "publish", 1),  # web/staging
        ("revision.created", "publish", 2),
        ("revision.created", "rollback", 3),
        ("prompt.archived", None, "old"),
    ]
    assert all(e["payload"]["organisation"] == "restored" for e in events)
    audit = (await client.get("/v1/audit?page_size=500", headers=admin_headers)).json()["items"]
    mine = [a for a in audit if a["actor"] == "service:bundle-worker"]
    assert all(a["target"].startswith("restored") for a in mine)
    actions = sorted({a["action"] for a in mine})
    assert actions == [
        "environment.create",
        "import.apply",
        "project.create",
        "prompt.archive",
        "prompt.create",
        "prompt.version.create",
        "prompt_set.create",
        "revision.promote",
        "revision.publish",
        "revision.rollback",
    ]
    assert sum(a["action"] == "prompt.version.create" for a in mine) == 9
    applied = next(a for a in mine if a["action"] == "import.apply")
    assert applied["details"]["origin"] == {"instance": SOURCE, "bundle": BUNDLE}
    assert applied["details"]["versions"] == 9


async def test_the_same_import_id_and_body_replays_the_first_result_and_writes_nothing(
    client, backup_json, restored, snapshot
):
    body = restore_body(backup_json)
    first = await _apply(client, restored, body)
    assert first.status_code == 201
    before = await snapshot()
    again = await _apply(client, restored, copy.deepcopy(body))
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert await snapshot() == before


async def test_the_same_import_id_with_another_body_is_refused_and_writes_nothing(
    client, backup_json, restored, snapshot, admin_headers
):
    body = restore_body(backup_json)
    assert (await _apply(client, restored, body)).status_code == 201
    before = await snapshot()
    other = copy.deepcopy(body)
    other["prompts"][0]["description"] = "changed"
    r = await _apply(client, restored, other)
    assert r.status_code == 409, r.text
    assert r.json()["type"] == "urn:anvil:problem:import-id-reused"
    r = await client.post("/v1/orgs", json={"slug": "third", "name": "Third"}, headers=admin_headers)
    before = await snapshot()
    r = await _apply(
        client, {"Authorization": f"Bearer {_service_token(client, 'third')}"}, body, org="third"
    )
    assert r.status_code == 409, r.text
    assert r.json()["type"] == "urn:anvil:problem:import-id-reused"
    assert await snapshot() == before


async def test_a_target_that_changed_since_the_plan_is_a_409_and_nothing_is_written(
    client, backup_json, restored, snapshot, admin_headers
):
    body = restore_body(backup_json)
    r = await client.post(
        "/v1/orgs/restored/projects", json={"slug": "web", "name": "Meanwhile"}, headers=admin_headers
    )
    assert r.status_code == 201
    await version(client, admin_headers, "web", "greeting", "Made meanwhile", org="restored")
    body["expect"]["projects"]["web"] = {"exists": True, "prompts": {"greeting": 0, "farewell": 0}}
    before = await snapshot()
    r = await _apply(client, restored, body)
    assert r.status_code == 409, r.text
    problem = r.json()
    assert problem["type"] == "urn:anvil:problem:import-target-changed"
    assert problem["changes"] == [
        {"kind": "prompt", "project": "web", "name": "greeting", "expected": 0, "found": 1}
    ]
    assert "prompt web/greeting now at version 1 (planned: does not exist)" in problem["detail"]
    assert await snapshot() == before


EXPECTATIONS = [
    ({"web": {"exists": False}}, {"kind": "project", "name": None, "expected": False, "found": True}),
    (
        {"web": {"exists": True, "prompts": {"greeting": 2}}},
        {"kind": "prompt", "name": "greeting", "expected": 2, "found": 3},
    ),
    (
        {"web": {"exists": True, "prompt_sets": {"app": 0}}},
        {"kind": "prompt_set", "name": "app", "expected": 0, "found": 1},
    ),
    (
        {"web": {"exists": True, "environments": {"prod": 1}}},
        {"kind": "environment", "name": "prod", "expected": 1, "found": 2},
    ),
    (
        {"web": {"exists": True, "environments": {"qa": 0}}},
        {"kind": "environment", "name": "qa", "expected": 0, "found": -1},
    ),
]


async def test_every_kind_of_expectation_is_checked(client, backup, snapshot):
    headers = {"Authorization": f"Bearer {_service_token(client, 'acme')}"}
    before = await snapshot()
    for expect, change in EXPECTATIONS:
        body = {
            "import_id": str(uuid.uuid4()),
            "origin": {"instance": SOURCE, "bundle": BUNDLE},
            "expect": {"projects": expect},
        }
        r = await _apply(client, headers, body, org="acme")
        assert r.status_code == 409, r.text
        assert r.json()["changes"] == [{"project": "web", **change}]
    assert await snapshot() == before


async def test_versions_after_the_targets_head_are_appended_with_parent_and_origin(
    client, backup, admin_headers
):
    headers = {"Authorization": f"Bearer {_service_token(client, 'acme')}"}
    greeting = next(p for p in backup["projects"] if p["slug"] == "web")["prompts"][1]
    head = greeting["versions"][2]["digest"]
    content = {"template": "Fresh {{name}}", "variables": {"name": {}}}
    digest = content_digest(content)
    body = {
        "import_id": str(uuid.uuid4()),
        "origin": {"instance": SOURCE, "bundle": BUNDLE},
        "expect": {"projects": {"web": {"exists": True, "prompts": {"greeting": 3}}}},
        "prompts": [
            {
                "project": "web",
                "name": "greeting",
                "versions": [{"digest": head}, {"digest": digest, "message": "m"}],
            }
        ],
        "contents": {head: backup["contents"][head], digest: normalize_content(content)},
    }
    r = await _apply(client, headers, body, org="acme")
    assert r.status_code == 201, r.text
    assert r.json()["versions"] == [{"project": "web", "name": "greeting", "number": 4, "digest": digest}]
    assert r.json()["created"]["prompts"] == 0
    v = (
        await client.get("/v1/orgs/acme/projects/web/prompts/greeting/versions/4", headers=admin_headers)
    ).json()
    assert (v["parent"], v["content_hash"], v["message"], v["origin"]["digest"]) == (3, digest, "m", BUNDLE)


async def test_an_import_that_writes_nothing_new_is_still_recorded(client, acme):
    headers = {"Authorization": f"Bearer {_service_token(client, 'acme')}"}
    body = {"import_id": str(uuid.uuid4()), "origin": {"instance": SOURCE, "bundle": BUNDLE}}
    r = await _apply(client, headers, body, org="acme")
    assert r.status_code == 201, r.text
    assert r.json() == {
        "import_id": body["import_id"],
        "created": {
            "projects": 0,
            "prompts": 0,
            "versions": 0,
            "prompt_sets": 0,
            "environments": 0,
            "revisions": 0,
        },
        "versions": [],
        "revisions": [],
    }
    assert (await _apply(client, headers, body, org="acme")).status_code == 200


def _break(body: dict[str, Any], how: str) -> None:
    web_prompts = [p for p in body["prompts"] if p["project"] == "web"]
    digest = web_prompts[0]["versions"][0]["digest"]
    if how == "digest":
        body["contents"][digest] = {**body["contents"][digest], "metadata": {"tampered": True}}
    elif how == "missing-content":
        del body["contents"][digest]
    elif how == "invalid-content":
        body["contents"][digest] = {"template": "{{undeclared}}"}
    elif how == "partial":
        bad = {"template": "{{> nowhere:thing}}", "variables": {}, "model": None, "metadata": {}}
        key = content_digest(bad)
        body["contents"][key] = bad
        web_prompts[0]["versions"].append({"digest": key, "message": ""})
    elif how == "pinned":
        bad = {"template": "{{> shared:footer@9}}", "variables": {}, "model": None, "metadata": {}}
        key = content_digest(bad)
        body["contents"][key] = bad
        web_prompts[0]["versions"].append({"digest": key, "message": ""})
    elif how == "set-member":
        body["prompt_sets"][0]["prompts"].append("nope")
    elif how == "revision-digest":
        body["environments"][0]["revisions"][0]["prompts"]["footer"] = "sha256:" + "0" * 64
        body["environments"][0]["revisions"][0]["versions"].pop("footer")
    elif how == "revision-version":
        body["environments"][0]["revisions"][0]["versions"]["footer"] = 1
    elif how == "rollback":
        staging = next(e for e in body["environments"] if e["name"] == "staging")
        staging["revisions"][2]["rollback_of"] = 2
    elif how == "rollback-forward":
        staging = next(e for e in body["environments"] if e["name"] == "staging")
        staging["revisions"][2]["rollback_of"] = 3
    elif how == "duplicate":
        body["prompts"].append(copy.deepcopy(body["prompts"][0]))
    elif how == "unknown-project":
        body["projects"] = [p for p in body["projects"] if p["slug"] != "shared"]
        del body["expect"]["projects"]["shared"]


BROKEN = [
    ("digest", "digest-mismatch"),
    ("missing-content", "invalid-import"),
    ("invalid-content", "invalid-prompt"),
    ("partial", "unresolved-partial"),
    ("pinned", "unresolved-partial"),
    ("set-member", "unknown-prompt"),
    ("revision-digest", "invalid-import"),
    ("revision-version", "invalid-import"),
    ("rollback", "invalid-import"),
    ("rollback-forward", "invalid-import"),
    ("duplicate", "invalid-import"),
    ("unknown-project", "invalid-import"),
]


async def test_a_body_that_cannot_be_applied_is_a_422_and_nothing_is_written(
    client, backup_json, restored, snapshot
):
    before = await snapshot()
    for how, code in BROKEN:  # one database for all: each refusal must leave it as it was
        body = restore_body(backup_json)
        _break(body, how)
        r = await _apply(client, restored, body)
        assert r.status_code == 422, (how, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"] == f"urn:anvil:problem:{code}", (how, r.json())
    assert await snapshot() == before


async def test_a_malformed_revision_is_a_422(client, backup_json, restored):
    for change in (
        {"kind": "rollback"},
        {"rollback_of": 1},
        {"versions": {"not-served": 1}},
        {"kind": "merge"},
    ):
        body = restore_body(backup_json)
        body["environments"][0]["revisions"][0].update(change)
        r = await _apply(client, restored, body)
        assert r.status_code == 422, (change, r.text)
        assert r.json()["type"] == "urn:anvil:problem:validation-failed"


async def test_a_token_without_bundles_import_is_refused(client, backup_json, restored):
    token = _service_token(client, "restored", scopes=sorted(KIND_SCOPES["service"] - {"bundles:import"}))
    r = await _apply(client, {"Authorization": f"Bearer {token}"}, restore_body(backup_json))
    assert r.status_code == 403, r.text
    assert r.json()["required_scope"] == "bundles:import"


async def test_another_organisation_is_not_found(client, acme, backup_json, restored, snapshot):
    before = await snapshot()
    r = await _apply(client, restored, restore_body(backup_json), org="acme")
    assert r.status_code == 404, r.text
    assert await snapshot() == before


async def test_a_project_limited_token_cannot_create_projects_or_reach_others(
    client, backup_json, restored, snapshot
):
    limited = {"Authorization": f"Bearer {_service_token(client, 'restored', project='web')}"}
    before = await snapshot()
    r = await _apply(client, limited, restore_body(backup_json))
    assert r.status_code == 404, r.text  # the body names project 'shared', which it may not see
    body = restore_body(backup_json)
    body["projects"] = [p for p in body["projects"] if p["slug"] == "web"]
    body["expect"] = {"projects": {"web": {"exists": False}}}
    for member in ("prompts", "prompt_sets", "environments"):
        body[member] = [x for x in body[member] if x["project"] == "web"]
    r = await _apply(client, limited, body)
    assert r.status_code == 403, r.text
    assert "create projects" in r.json()["detail"]
    assert await snapshot() == before


async def test_an_archived_organisation_takes_no_import(client, backup_json, restored, snapshot, state):
    async with state.db.session() as session:
        org = await session.scalar(select(Organisation).where(Organisation.slug == "restored"))
        assert org is not None
        org.archived_at = utcnow()
    before = await snapshot()
    r = await _apply(client, restored, restore_body(backup_json))
    assert r.status_code == 409, r.text
    assert r.json()["type"] == "urn:anvil:problem:archived"
    assert await snapshot() == before


async def test_thousands_of_versions_are_written_in_bulk_with_their_lines(client, restored, admin_headers):
    contents, prompts = {}, []
    for p in range(700):
        versions = []
        for n in range(3):
            content = {
                "template": f"prompt {p} version {n} " + "x" * 200,
                "variables": {},
                "model": None,
                "metadata": {},
            }
            digest = content_digest(content)
            contents[digest] = content
            versions.append({"digest": digest})
        prompts.append({"project": "bulk", "name": f"p{p:04d}", "versions": versions})
    body = {
        "import_id": str(uuid.uuid4()),
        "origin": {"instance": SOURCE, "bundle": BUNDLE},
        "expect": {"projects": {"bulk": {"exists": False}}},
        "projects": [{"slug": "bulk", "name": "Bulk"}],
        "prompts": prompts,
        "contents": contents,
    }
    r = await _apply(client, restored, body)
    assert r.status_code == 201, r.text
    assert r.json()["created"]["versions"] == 2100
    url = "/v1/orgs/restored/projects/bulk/prompts/p0699/versions"
    versions = (await client.get(url, headers=admin_headers)).json()["items"]
    assert [(v["number"], v["parent"], v["content_hash"]) for v in versions] == [
        (3 - i, 2 - i or None, prompts[699]["versions"][2 - i]["digest"]) for i in range(3)
    ]


async def test_two_applies_of_one_import_at_once_write_it_once(client, backup_json, restored, admin_headers):
    body = restore_body(backup_json)
    first, second = await asyncio.gather(_apply(client, restored, body), _apply(client, restored, body))
    assert sorted([first.status_code, second.status_code]) == [200, 201], (first.text, second.text)
    assert first.json() == second.json()
    r = await client.get("/v1/orgs/restored/projects/web/prompts/greeting/versions", headers=admin_headers)
    assert [v["number"] for v in r.json()["items"]] == [3, 2, 1]


async def test_a_project_limited_token_sees_other_projects_as_absent_in_expectations(client, backup):
    limited = {"Authorization": f"Bearer {_service_token(client, 'acme', project='web')}"}
    content = {"template": "Limited", "variables": {}, "model": None, "metadata": {}}
    digest = content_digest(content)
    body = {
        "import_id": str(uuid.uuid4()),
        "origin": {"instance": SOURCE, "bundle": BUNDLE},
        # 'shared' exists, but not for this token: the import state answered null for it.
        "expect": {
            "projects": {"web": {"exists": True, "prompts": {"fresh": 0}}, "shared": {"exists": False}}
        },
        "prompts": [{"project": "web", "name": "fresh", "versions": [{"digest": digest}]}],
        "contents": {digest: content},
    }
    r = await _apply(client, limited, body, org="acme")
    assert r.status_code == 201, r.text


async def test_an_environment_limited_token_writes_only_its_environment(client, backup, snapshot):
    token = _service_token(client, "acme", project="web", environment="prod")
    limited = {"Authorization": f"Bearer {token}"}
    before = await snapshot()
    for environment, expected in (("staging", 403), ("qa", 403)):
        body = {
            "import_id": str(uuid.uuid4()),
            "origin": {"instance": SOURCE, "bundle": BUNDLE},
            "environments": [{"project": "web", "name": environment}],
        }
        r = await _apply(client, limited, body, org="acme")
        assert r.status_code == expected, (environment, r.text)
    assert await snapshot() == before


async def test_a_revision_that_publishing_refuses_rolls_the_whole_import_back(client, backup, snapshot):
    headers = {"Authorization": f"Bearer {_service_token(client, 'acme')}"}
    web = next(p for p in backup["projects"] if p["slug"] == "web")
    old = next(p for p in web["prompts"] if p["name"] == "old")["versions"][0]["digest"]
    content = {"template": "Written first", "variables": {}, "model": None, "metadata": {}}
    digest = content_digest(content)
    body = {
        "import_id": str(uuid.uuid4()),
        "origin": {"instance": SOURCE, "bundle": BUNDLE},
        "prompts": [{"project": "web", "name": "first", "versions": [{"digest": digest}]}],
        # 'old' is archived on the target: no new revision may serve it.
        "environments": [{"project": "web", "name": "qa", "revisions": [{"prompts": {"old": old}}]}],
        "contents": {digest: content},
    }
    before = await snapshot()
    r = await _apply(client, headers, body, org="acme")
    assert r.status_code == 422, r.text
    assert r.json()["type"] == "urn:anvil:problem:archived-prompt"
    assert await snapshot() == before
