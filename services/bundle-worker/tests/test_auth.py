"""Who may call what: bearer tokens (audience, expiry, signature, kind), scopes, tenancy."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest

from anvil_bundle_worker.models import Plan
from anvil_bundle_worker.storage import NewBundle
from anvil_common.db import utcnow
from anvil_common.jwt import TokenIssuer
from anvil_wire import KeySet

DIGEST = "sha256:" + "b" * 64
EXPORT = {"organisation": "acme", "selection": {"kind": "organisation"}}


@pytest.fixture
async def resources(state: Any, client: Any, acme_headers: dict[str, str]) -> dict[str, str]:
    """An export job, an import plan and a stored bundle of organisation acme."""
    job = await client.post("/v1/exports", json=EXPORT, headers=acme_headers)
    assert job.status_code == 202
    plan_id = uuid.uuid4()
    async with state.db.session() as session:
        session.add(
            Plan(
                id=plan_id,
                job_id=uuid.uuid4(),
                organisation="acme",
                bundle_digest=DIGEST,
                upload="upload:x",
                origin="http://registry.test",
                strategy="fail",
                overrides={},
                plan={"applicable": True, "changes": False},
                target_state={},
                expires_at=utcnow() + timedelta(hours=1),
                created_by="operator:tester",
            )
        )
        await state.store.put(
            session,
            NewBundle(
                digest=DIGEST,
                data=b"x",
                kind="export",
                organisation="acme",
                project=None,
                created_by="operator:tester",
                expires_at=utcnow() + timedelta(days=1),
            ),
        )
    return {"job": job.json()["id"], "plan": str(plan_id)}


def _calls(ids: dict[str, str]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("POST", "/v1/exports", {"json": EXPORT}),
        ("POST", "/v1/imports?organisation=acme", {"content": b"bundle"}),
        ("GET", f"/v1/jobs/{ids['job']}", {}),
        ("GET", f"/v1/plans/{ids['plan']}", {}),
        ("POST", f"/v1/plans/{ids['plan']}/apply", {}),
        ("POST", f"/v1/plans/{ids['plan']}/reject", {}),
        ("GET", f"/v1/bundles/{DIGEST}", {}),
    ]


def _expired(issuer: TokenIssuer) -> str:
    an_hour_ago = int(time.time()) - 3600
    token, _ = issuer.issue(
        subject="operator:tester",
        kind="operator",
        audience="anvil-bundle-worker",
        scopes=["bundles:export", "bundles:import"],
        ttl_seconds=60,
        org="acme",
        now=an_hour_ago,
    )
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_every_endpoint_refuses_a_request_without_a_valid_token(
    client, resources, make_token, issuer, snapshot
):
    stranger = TokenIssuer(KeySet.generate().active, issuer="http://registry.test")
    forged, _ = stranger.issue(
        subject="operator:x",
        kind="operator",
        audience="anvil-bundle-worker",
        scopes=["bundles:export"],
        ttl_seconds=60,
    )
    refused = {
        "none": {},
        "not bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
        "garbage": bearer("not-a-jwt"),
        "wrong audience": bearer(make_token(audience="anvil-registry")),
        "expired": bearer(_expired(issuer)),
        "unknown key": bearer(forged),
        "scope the kind may not hold": bearer(make_token("client", scopes=["bundles:export"])),
    }
    before = await snapshot()
    for method, path, kwargs in _calls(resources):
        for why, headers in refused.items():
            r = await client.request(method, path, headers=headers, **kwargs)
            assert r.status_code == 401, (method, path, why, r.text)
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert r.json()["type"] in ("urn:anvil:problem:invalid-token", "urn:anvil:problem:token-expired")
    assert await snapshot() == before


async def test_a_token_without_the_scope_is_403_naming_it(client, resources, make_token, snapshot):
    export_only = bearer(make_token(scopes=["bundles:export"]))
    import_only = bearer(make_token(scopes=["bundles:import"]))
    needs = {
        "/v1/exports": ("bundles:export", import_only),
        "/v1/imports": ("bundles:import", export_only),
        "/v1/plans": ("bundles:import", export_only),
        "/v1/bundles": ("bundles:export", import_only),
        "/v1/jobs": ("bundles:export", import_only),  # the job is an export
    }
    before = await snapshot()
    for method, path, kwargs in _calls(resources):
        scope, headers = next(v for prefix, v in needs.items() if path.startswith(prefix))
        r = await client.request(method, path, headers=headers, **kwargs)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["type"] == "urn:anvil:problem:forbidden"
        assert r.json()["required_scope"] == scope
    assert await snapshot() == before


async def test_another_organisations_resources_do_not_exist_for_the_caller(
    client, resources, make_token, snapshot
):
    beta = bearer(make_token(org="beta"))
    before = await snapshot()
    for method, path, kwargs in _calls(resources):
        r = await client.request(method, path, headers=beta, **kwargs)
        assert r.status_code == 404, (method, path, r.text)
    assert await snapshot() == before


async def test_project_and_environment_limits(client, resources, make_token):
    web = bearer(make_token(project="web"))
    # A plan made for the whole organisation is not the project's.
    assert (await client.get(f"/v1/plans/{resources['plan']}", headers=web)).status_code == 404
    assert (await client.get(f"/v1/jobs/{resources['job']}", headers=web)).status_code == 404
    prod = bearer(make_token(project="web", environment="prod"))
    r = await client.post("/v1/imports?organisation=acme", content=b"bundle", headers=prod)
    assert r.status_code == 403
    assert "environment" in r.json()["detail"]


async def test_instance_wide_token_sees_every_organisation(client, resources, make_token):
    admin = bearer(make_token(org=None))
    assert (await client.get(f"/v1/jobs/{resources['job']}", headers=admin)).status_code == 200
    assert (await client.get(f"/v1/plans/{resources['plan']}", headers=admin)).status_code == 200
    assert (await client.get(f"/v1/bundles/{DIGEST}", headers=admin)).status_code == 200
