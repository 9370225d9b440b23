"""read_import_state (POST /v1/orgs/{org}/import-state): the target's heads for the names a
bundle carries; absent ones (and what the token may not see) are null. Read-only: the tests
share one registry with acme built (module scope)."""

from __future__ import annotations

from typing import Any

import pytest
from bundle_testkit import Served, shared_registry

from anvil_registry.auth import KIND_SCOPES

pytestmark = pytest.mark.asyncio(loop_scope="module")


served, client = shared_registry("state")


@pytest.fixture
def admin_headers(served: Served) -> dict[str, str]:
    return served.admin


@pytest.fixture
def importer(served: Served) -> dict[str, str]:
    return served.token(scopes=["bundles:import"])


def _token(served: Served, scopes: list[str] | None = None, **limits: Any) -> dict[str, str]:
    return served.token(scopes=scopes or ["bundles:import"], **limits)


async def _state(client: Any, headers: dict[str, str], projects: dict[str, Any], org: str = "acme") -> Any:
    return await client.post(f"/v1/orgs/{org}/import-state", json={"projects": projects}, headers=headers)


async def _versions(client: Any, headers: dict[str, str], name: str) -> list[str]:
    r = await client.get(f"/v1/orgs/acme/projects/web/prompts/{name}/versions", headers=headers)
    return [v["content_hash"] for v in reversed(r.json()["items"])]


async def test_present_names_answer_their_heads_and_absent_ones_null(client, importer, admin_headers):
    query = {
        "web": {
            "prompts": ["greeting", "old", "nope"],
            "prompt_sets": ["app", "nope"],
            "environments": ["prod", "nope"],
        },
        "ghost": {"prompts": ["greeting"]},
    }
    r = await _state(client, importer, query)
    assert r.status_code == 200, r.text
    greeting = await _versions(client, admin_headers, "greeting")
    old = await _versions(client, admin_headers, "old")
    assert r.json() == {
        "organisation": {"slug": "acme", "name": "Acme"},
        "projects": {
            "ghost": None,
            "web": {
                "name": "Web",
                "description": "",
                "archived": False,
                "prompts": {
                    "greeting": {"head": 3, "archived": False, "versions": greeting},
                    "nope": None,
                    "old": {"head": 1, "archived": True, "versions": old},
                },
                "prompt_sets": {
                    "app": {
                        "description": "the app",
                        "prompts": ["farewell", "greeting"],
                        "row_version": 1,
                        "archived": False,
                    },
                    "nope": None,
                },
                "environments": {
                    "nope": None,
                    "prod": {
                        "last_revision": 2,
                        "archived": False,
                        "prompts": {
                            "farewell": {
                                "version": 1,
                                "digest": (await _versions(client, admin_headers, "farewell"))[0],
                            },
                            "greeting": {"version": 3, "digest": greeting[2]},
                            "old": {"version": 1, "digest": old[0]},  # served since promoted from staging
                        },
                    },
                },
            },
        },
    }


async def test_an_empty_question_gets_an_empty_answer(client, importer):
    r = await _state(client, importer, {"web": {}})
    assert r.status_code == 200, r.text
    web = r.json()["projects"]["web"]
    assert (web["prompts"], web["prompt_sets"], web["environments"]) == ({}, {}, {})


async def test_a_project_limited_token_sees_other_projects_as_absent(client, served):
    r = await _state(client, _token(served, project="web"), {"web": {}, "shared": {"prompts": ["footer"]}})
    assert r.status_code == 200, r.text
    assert r.json()["projects"]["shared"] is None
    assert r.json()["projects"]["web"] is not None


async def test_an_environment_limited_token_cannot_read_another_environment(client, served):
    limited = _token(served, project="web", environment="prod")
    r = await _state(client, limited, {"web": {"environments": ["prod"]}})
    assert r.status_code == 200, r.text
    r = await _state(client, limited, {"web": {"environments": ["staging"]}})
    assert r.status_code == 403, r.text


async def test_another_organisation_is_not_found(client, importer, served):
    r = await _state(client, importer, {"web": {}}, org="globex")
    assert r.status_code == 404, r.text
    r = await _state(client, _token(served, org="globex"), {"web": {}})
    assert r.status_code == 404, r.text


@pytest.mark.parametrize("scopes", [["bundles:export"], sorted(KIND_SCOPES["service"] - {"bundles:import"})])
async def test_a_token_without_bundles_import_is_refused(client, served, scopes):
    r = await _state(client, _token(served, scopes=scopes), {"web": {}})
    assert r.status_code == 403, r.text
    assert r.json()["required_scope"] == "bundles:import"


@pytest.mark.parametrize(
    "projects",
    [
        {"Not A Slug": {}},
        {"web": {"prompts": ["Bad Name"]}},
        {"web": {"unknown": []}},
        {"web": {"environments": ["a/b"]}},
    ],
)
async def test_a_malformed_question_is_a_422(client, importer, projects):
    r = await _state(client, importer, projects)
    assert r.status_code == 422, r.text
    assert r.json()["type"] == "urn:anvil:problem:validation-failed"


async def test_reading_the_state_writes_nothing(client, importer, served):
    before = await served.tables()
    r = await _state(client, importer, {"web": {"prompts": ["greeting"], "environments": ["prod"]}})
    assert r.status_code == 200
    assert await served.tables() == before
