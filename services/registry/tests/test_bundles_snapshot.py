"""read_snapshot (POST /v1/orgs/{org}/snapshot): what each selection carries, pinned
dependencies, deterministic order, tenancy and scope, checked against the bundle format's own
manifest validation (anvil_wire.bundles.assemble_manifest, as the bundle worker uses it).

Every test here only reads acme, so they share one registry (module scope) built once."""

from __future__ import annotations

import json
from typing import Any

import pytest
from bundle_testkit import Served, project, shared_registry, snapshot_of, version

from anvil_registry.auth import KIND_SCOPES
from anvil_wire.bundles import assemble_manifest

pytestmark = pytest.mark.asyncio(loop_scope="module")
EXPORTER = {"instance": "http://testserver", "software": "anvil-registry-tests/0"}


served, client = shared_registry("snapshot")


@pytest.fixture
def exporter(served: Served) -> dict[str, str]:
    """The bundle worker's export token for acme."""
    return served.token(scopes=["bundles:export"])


def _token(served: Served, scopes: list[str] | None = None, **limits: Any) -> dict[str, str]:
    return served.token(scopes=scopes or ["bundles:export"], **limits)


async def _snapshot(
    client: Any, headers: dict[str, str], selection: dict[str, Any], **options: Any
) -> dict[str, Any]:
    r = await snapshot_of(client, headers, {"selection": selection, **options})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    _, contents = assemble_manifest(body, exporter=EXPORTER)  # the format's own checks
    assert set(contents) == set(body["contents"])
    return body


def _prompts(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{p['slug']}/{x['name']}": x for p in snapshot["projects"] for x in p["prompts"]}


def _numbers(snapshot: dict[str, Any]) -> dict[str, tuple[list[int], str]]:
    return {key: ([v["number"] for v in p["versions"]], p["role"]) for key, p in _prompts(snapshot).items()}


async def test_an_organisation_snapshot_carries_full_history_environments_and_sets(client, exporter):
    snap = await _snapshot(client, exporter, {"kind": "organisation"}, history="full", environments=True)
    assert snap["selection"] == {"kind": "organisation", "project": None, "prompt_set": None, "prompts": None}
    assert snap["options"] == {"history": "full", "environments": True}
    assert snap["organisation"] == {"slug": "acme", "name": "Acme"}
    assert _numbers(snap) == {
        "shared/footer": ([1, 2, 3], "selected"),
        "web/farewell": ([1], "selected"),
        "web/greeting": ([1, 2, 3], "selected"),
        "web/letter": ([1], "selected"),
        "web/old": ([1], "selected"),  # archived prompts travel with their organisation
    }
    prompts = _prompts(snap)
    assert prompts["web/old"]["archived"] is True
    greeting = prompts["web/greeting"]["versions"]
    assert greeting[0]["digest"] == greeting[2]["digest"] != greeting[1]["digest"]  # A, B, A
    web = next(p for p in snap["projects"] if p["slug"] == "web")
    assert web["prompt_sets"] == [
        {"name": "app", "description": "the app", "prompts": ["farewell", "greeting"]}
    ]
    staging = next(e for e in web["environments"] if e["name"] == "staging")
    assert [(r["number"], r["kind"], r["rollback_of"]) for r in staging["revisions"]] == [
        (1, "publish", None),
        (2, "publish", None),
        (3, "rollback", 1),
    ]
    assert staging["revisions"][2]["prompts"] == staging["revisions"][0]["prompts"]
    prod = next(e for e in web["environments"] if e["name"] == "prod")
    assert [(r["kind"], r["message"]) for r in prod["revisions"]] == [
        ("promote", ""),
        ("publish", "reverted"),
    ]
    assert [
        (d["from"]["prompt"], d["from"]["version"], d["reference"], d["to"]["version"])
        for d in snap["dependencies"]
    ] == [
        ("farewell", 1, "shared:footer@prod", 2),
        ("greeting", 2, "shared:footer@1", 1),
        ("letter", 1, "greeting", 3),
        ("letter", 1, "shared:footer@1", 1),
    ]
    assert list(snap["contents"]) == sorted(snap["contents"])
    assert {v["digest"] for p in prompts.values() for v in p["versions"]} == set(snap["contents"])


async def test_a_project_snapshot_pulls_the_versions_its_partials_reach_from_other_projects(client, exporter):
    snap = await _snapshot(client, exporter, {"kind": "project", "project": "web"})
    assert _numbers(snap) == {
        "shared/footer": ([1, 2], "dependency"),  # @1 from letter, @prod (serving 2) from farewell
        "web/farewell": ([1], "selected"),
        "web/greeting": ([3], "selected"),
        "web/letter": ([1], "selected"),
    }
    full = await _snapshot(client, exporter, {"kind": "organisation"}, history="full")
    digests = {key: [v["digest"] for v in p["versions"]] for key, p in _prompts(full).items()}
    assert _prompts(snap)["shared/footer"]["ancestors"] == []
    assert _prompts(snap)["web/greeting"]["ancestors"] == digests["web/greeting"][:2]
    shared = next(p for p in snap["projects"] if p["slug"] == "shared")
    assert (shared["prompt_sets"], shared["environments"]) == ([], [])


async def test_a_full_history_project_snapshot_carries_every_version_of_its_dependencies(client, exporter):
    snap = await _snapshot(
        client, exporter, {"kind": "project", "project": "web"}, history="full", environments=True
    )
    assert _numbers(snap)["shared/footer"] == ([1, 2, 3], "dependency")
    assert _numbers(snap)["web/greeting"] == ([1, 2, 3], "selected")
    assert "web/old" in _numbers(snap)  # not selected (archived), but a staging revision served it
    assert _numbers(snap)["web/old"][1] == "dependency"


async def test_a_prompt_set_snapshot_carries_the_set_its_members_and_their_dependencies(client, exporter):
    snap = await _snapshot(client, exporter, {"kind": "prompt_set", "project": "web", "prompt_set": "app"})
    assert _numbers(snap) == {
        "shared/footer": ([2], "dependency"),
        "web/farewell": ([1], "selected"),
        "web/greeting": ([3], "selected"),
    }
    assert _prompts(snap)["shared/footer"]["ancestors"] != []
    assert [s["name"] for p in snap["projects"] for s in p["prompt_sets"]] == ["app"]


async def test_chosen_prompts_across_projects_pull_pinned_and_unsuffixed_references(client, exporter):
    snap = await _snapshot(client, exporter, {"kind": "prompts", "prompts": ["web/letter", "shared/footer"]})
    assert snap["selection"]["prompts"] == ["shared/footer", "web/letter"]  # sorted
    assert _numbers(snap) == {
        "shared/footer": ([1, 3], "selected"),  # 1 pinned by letter, 3 its latest
        "web/greeting": ([3], "dependency"),  # unsuffixed: the latest version
        "web/letter": ([1], "selected"),
    }


async def test_a_reference_through_an_environment_follows_what_it_serves_not_the_latest(client, exporter):
    snap = await _snapshot(client, exporter, {"kind": "prompts", "prompts": ["web/farewell"]})
    assert _numbers(snap)["shared/footer"] == ([2], "dependency")  # shared/prod serves 2; 3 is the latest
    assert snap["dependencies"][0]["to"]["version"] == 2


async def test_snapshots_do_not_depend_on_the_order_things_were_created_in(served):
    client, admin = served.client, served.admin
    for org, order in (("one", ["b", "a", "c"]), ("two", ["c", "a", "b"])):
        r = await client.post("/v1/orgs", json={"slug": org, "name": "Same"}, headers=admin)
        assert r.status_code == 201
        for slug in reversed(order):
            await project(client, admin, f"p{slug}", org=org)
        for name in order:
            for slug in order:
                await version(client, admin, f"p{slug}", f"x/{name}", f"{name} in {slug}", org=org)
        await version(client, admin, f"p{order[0]}", "x/a", "{{> pa:x/b}} {{> pc:x/c@1}}", org=org)
    body = {"selection": {"kind": "organisation"}, "history": "full", "environments": True}
    snaps = []
    for org in ("one", "two"):
        r = await snapshot_of(client, _token(served, org=org), body, org=org)
        assert r.status_code == 200, r.text
        snap = r.json()
        snap.pop("organisation")
        snaps.append(snap)
    one, two = snaps
    # Which project holds the new x/a differs; names, digests and their order do not.
    assert list(one["contents"]) == list(two["contents"])
    assert [p["slug"] for p in one["projects"]] == [p["slug"] for p in two["projects"]] == ["pa", "pb", "pc"]
    assert [[x["name"] for x in p["prompts"]] for p in one["projects"]] == [
        [x["name"] for x in p["prompts"]] for p in two["projects"]
    ]
    first = await snapshot_of(client, _token(served, org="one"), body, org="one")
    again = await snapshot_of(client, _token(served, org="one"), body, org="one")
    assert json.dumps(again.json()) == json.dumps(first.json())


async def test_a_project_limited_token_finds_other_projects_absent(client, served):
    limited = _token(served, project="web")
    r = await snapshot_of(client, limited, {"selection": {"kind": "project", "project": "shared"}})
    assert r.status_code == 404, r.text
    assert r.json()["type"] == "urn:anvil:problem:not-found"
    r = await snapshot_of(client, limited, {"selection": {"kind": "prompts", "prompts": ["shared/footer"]}})
    assert r.status_code == 404, r.text


async def test_a_project_limited_token_cannot_export_what_reaches_into_another_project(client, served):
    limited = _token(served, project="web")
    r = await snapshot_of(client, limited, {"selection": {"kind": "prompts", "prompts": ["web/farewell"]}})
    assert r.status_code == 403, r.text
    assert "limited to project 'web'" in r.json()["detail"]
    r = await snapshot_of(client, limited, {"selection": {"kind": "organisation"}})
    assert r.status_code == 403, r.text
    r = await snapshot_of(client, limited, {"selection": {"kind": "prompts", "prompts": ["web/greeting"]}})
    assert r.status_code == 200, r.text


async def test_an_environment_limited_token_exports_only_its_environment(client, served):
    limited = _token(served, project="web", environment="staging")
    snap = await _snapshot(
        client, limited, {"kind": "prompts", "prompts": ["web/greeting"]}, environments=True
    )
    web = next(p for p in snap["projects"] if p["slug"] == "web")
    assert [e["name"] for e in web["environments"]] == ["staging"]
    # Its current revision (the rollback to 1) serves greeting 1 and the archived 'old'.
    assert _numbers(snap) == {"web/greeting": ([1, 3], "selected"), "web/old": ([1], "dependency")}
    # prod's current revision serves farewell, whose partial reaches project 'shared'.
    limited = _token(served, project="web", environment="prod")
    r = await snapshot_of(
        client, limited, {"selection": {"kind": "prompts", "prompts": ["web/greeting"]}, "environments": True}
    )
    assert r.status_code == 403, r.text


async def test_another_organisations_token_finds_nothing(client, served):
    r = await snapshot_of(client, _token(served, org="globex"), {"selection": {"kind": "organisation"}})
    assert r.status_code == 404, r.text
    r = await snapshot_of(
        client, _token(served, org="globex"), {"selection": {"kind": "organisation"}}, org="globex"
    )
    assert r.status_code == 404, r.text


@pytest.mark.parametrize("scopes", [["bundles:import"], sorted(KIND_SCOPES["service"] - {"bundles:export"})])
async def test_a_token_without_bundles_export_is_refused(client, served, scopes):
    r = await snapshot_of(client, _token(served, scopes=scopes), {"selection": {"kind": "organisation"}})
    assert r.status_code == 403, r.text
    assert r.json()["required_scope"] == "bundles:export"


REFUSED = [
    ({"kind": "project", "project": "nope"}, 404, "not-found"),
    ({"kind": "prompt_set", "project": "web", "prompt_set": "nope"}, 404, "not-found"),
    ({"kind": "prompts", "prompts": ["web/nope"]}, 404, "not-found"),
    ({"kind": "prompts", "prompts": ["web/old"]}, 409, "archived"),
    ({"kind": "prompts", "prompts": ["web/empty"]}, 409, "prompt-without-versions"),
    ({"kind": "project"}, 422, "validation-failed"),
    ({"kind": "organisation", "project": "web"}, 422, "validation-failed"),
    ({"kind": "prompts", "prompts": []}, 422, "validation-failed"),
    ({"kind": "prompts", "prompts": ["no-slash"]}, 422, "validation-failed"),
]


async def test_a_selection_that_cannot_be_exported_is_a_problem(client, exporter):
    for selection, status, code in REFUSED:
        r = await snapshot_of(client, exporter, {"selection": selection})
        assert r.status_code == status, (selection, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"] == f"urn:anvil:problem:{code}"


async def test_a_snapshot_writes_nothing(client, exporter, served):
    before = await served.tables()
    r = await snapshot_of(
        client, exporter, {"selection": {"kind": "organisation"}, "history": "full", "environments": True}
    )
    assert r.status_code == 200
    assert await served.tables() == before
