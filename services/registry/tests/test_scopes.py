"""Every /v1 operation: which scope it needs (a token lacking it gets 403), that it needs a
token at all (401), and that another organisation's token sees acme's resources as absent (404).

A new endpoint fails `test_every_operation_is_in_the_table` until it is added here."""

from __future__ import annotations

from typing import Any

import pytest
from registry_testkit import add_version, create_env, publish

from anvil_registry.auth import KIND_SCOPES

SCOPE_OF: dict[str, str | None] = {
    "create_organisation": "orgs:admin",
    "list_organisations": None,
    "get_organisation": None,
    "create_project": "projects:write",
    "list_projects": "projects:read",
    "get_project": "projects:read",
    "update_project": "projects:write",
    "archive_project": "projects:write",
    "create_prompt": "prompts:write",
    "list_prompts": "prompts:read",
    "get_prompt": "prompts:read",
    "archive_prompt": "prompts:write",
    "create_prompt_version": "prompts:write",
    "list_prompt_versions": "prompts:read",
    "get_prompt_version": "prompts:read",
    "create_prompt_set": "projects:write",
    "list_prompt_sets": "projects:read",
    "get_prompt_set": "projects:read",
    "update_prompt_set": "projects:write",
    "archive_prompt_set": "projects:write",
    "create_environment": "projects:write",
    "list_environments": "projects:read",
    "get_environment": "projects:read",
    "archive_environment": "projects:write",
    "publish_revision": "revisions:publish",
    "promote_revision": "revisions:publish",
    "roll_back": "revisions:publish",
    "list_revisions": "revisions:read",
    "get_revision": "revisions:read",
    "get_revision_document": "revisions:read",
    "diff_revisions": "revisions:read",
    "get_config": "config:read",
    "issue_token": "tokens:admin",
    "list_tokens": "tokens:admin",
    "get_token": "tokens:admin",
    "revoke_token": "tokens:admin",
    "list_revocations": "events:read",
    "list_audit_entries": "audit:read",
    "list_events": "events:read",
    "read_snapshot": "bundles:export",
    "read_import_state": "bundles:import",
    "apply_import": "bundles:import",
}
PATH_VALUES = {
    "org": "acme",
    "project": "web",
    "environment": "prod",
    "name": "greeting",
    "number": "1",
    "token_id": "none",
}
# Bodies valid enough that tenancy (404) is decided before anything else.
BODIES: dict[str, Any] = {
    "create_project": {"slug": "other", "name": "Other"},
    "update_project": {"name": "Renamed"},
    "create_prompt": {"name": "fresh"},
    "create_prompt_version": {"content": {"template": "hi"}},
    "create_prompt_set": {"name": "app", "prompts": ["greeting"]},
    "update_prompt_set": {"description": "x"},
    "create_environment": {"name": "qa"},
    "publish_revision": {"prompts": {"greeting": 1}},
    "promote_revision": {"from_environment": "prod"},
    "roll_back": {"to_revision": 1},
    "read_snapshot": {"selection": {"kind": "organisation"}},
    "read_import_state": {"projects": {"web": {"prompts": ["greeting"]}}},
    "apply_import": {
        "import_id": "6d1c3c52-3f0b-4a57-9d7e-0b5a2f9e8c11",
        "origin": {"instance": "https://other.example", "bundle": "sha256:" + "0" * 64},
    },
}
ORG_FREE = {
    "create_organisation",
    "list_organisations",
    "issue_token",
    "list_tokens",
    "get_token",
    "revoke_token",
    "list_revocations",
    "list_audit_entries",
    "list_events",
}


def _operations(app: Any) -> list[tuple[str, str, str]]:
    ops = []
    for path, methods in app.openapi()["paths"].items():
        if path.startswith("/v1/"):
            for method, op in methods.items():
                ops.append((method.upper(), path, op["operationId"]))
    return ops


def _url(path: str) -> str:
    if "/prompt-sets/" in path:
        path = path.replace("{name}", "set")
    for key, value in PATH_VALUES.items():
        path = path.replace("{" + key + "}", value)
    return path


async def _call(client: Any, method: str, path: str, op: str, headers: dict[str, str]) -> Any:
    kwargs: dict[str, Any] = {"headers": {**headers, "If-Match": "*"}}
    if method in ("POST", "PATCH"):
        kwargs["json"] = BODIES.get(op, {})
    if op == "diff_revisions":
        kwargs["params"] = {"from": 1}
    return await client.request(method, _url(path), **kwargs)


def test_every_operation_is_in_the_table(app):
    operations = {op for _, _, op in _operations(app)}
    assert operations == set(SCOPE_OF)


async def test_every_operation_refuses_a_request_without_a_token(client, app):
    for method, path, op in _operations(app):
        r = await _call(client, method, path, op, {})
        assert r.status_code == 401, (op, r.text)
        assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("op", sorted(op for op, scope in SCOPE_OF.items() if scope))
async def test_a_token_lacking_the_scope_gets_403(client, app, make_token, op):
    scope = SCOPE_OF[op]
    method, path = next((m, p) for m, p, o in _operations(app) if o == op)
    lacking = sorted(KIND_SCOPES["operator"] - {scope})
    token = make_token(scopes=lacking, org=None)
    r = await _call(client, method, path, op, {"Authorization": f"Bearer {token}"})
    assert r.status_code == 403, (op, r.text)
    assert r.json()["required_scope"] == scope


async def test_another_organisations_token_finds_nothing_of_acme(
    client, app, admin_headers, make_token, acme, state
):
    await create_env(client, admin_headers, "prod")
    await add_version(state, "web", "greeting", "hello")
    assert (await publish(client, admin_headers, "prod", {"prompts": {"greeting": 1}})).status_code == 201
    r = await client.post(
        "/v1/orgs/acme/projects/web/prompt-sets",
        json={"name": "set", "prompts": ["greeting"]},
        headers=admin_headers,
    )
    assert r.status_code == 201
    await client.post("/v1/orgs", json={"slug": "globex", "name": "Globex"}, headers=admin_headers)
    scopes = sorted(KIND_SCOPES["operator"] - {"orgs:admin"})
    globex = {"Authorization": f"Bearer {make_token(scopes=scopes, org='globex')}"}
    checked = 0
    for method, path, op in _operations(app):
        if op in ORG_FREE:
            continue
        r = await _call(client, method, path, op, globex)
        assert r.status_code == 404, (op, r.status_code, r.text)
        checked += 1
    assert checked == len(SCOPE_OF) - len(ORG_FREE)
