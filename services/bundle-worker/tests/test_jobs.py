"""Jobs through the API while the registry is down (this module's worker points at the discard
port): the job is kept, with the problem of its last attempt, and retried after a backoff."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from anvil_bundle_worker.exports.service import SOFTWARE
from anvil_bundle_worker.models import Plan
from anvil_bundle_worker.planning import plan_import
from anvil_bundle_worker.storage import NewBundle
from anvil_common.db import utcnow
from anvil_wire.bundles import read_bundle, write_bundle

EXPORT = {"organisation": "acme", "selection": {"kind": "project", "project": "web"}}


def _empty_bundle(state: Any) -> bytes:
    """A valid bundle of organisation acme holding no project, sealed by this instance."""
    manifest = {
        "format": "anvil.bundle",
        "version": "1.0",
        "exporter": {"instance": state.settings.issuer, "software": SOFTWARE},
        "selection": {"kind": "organisation", "project": None, "prompt_set": None, "prompts": None},
        "options": {"history": "latest", "environments": False},
        "organisation": {"slug": "acme", "name": "Acme"},
        "projects": [],
        "dependencies": [],
        "objects": [],
    }
    return write_bundle(manifest, {}, state.keyset.active, created_at=utcnow()).data


async def test_export_is_retried_while_the_registry_is_unreachable(client, acme_headers, work):
    r = await client.post("/v1/exports", json=EXPORT, headers=acme_headers)
    assert r.status_code == 202
    assert await work() == 1  # one attempt; the retry is not due yet
    job = (await client.get(f"/v1/jobs/{r.json()['id']}", headers=acme_headers)).json()
    assert job["status"] == "queued"
    assert job["attempts"] == 1
    assert job["run_after"] > job["created_at"]
    assert job["error"]["type"] == "urn:anvil:problem:registry-unavailable"
    assert job["error"]["status"] == 503
    assert job["result"] is None


async def test_import_is_retried_while_the_registry_is_unreachable(client, acme_headers, work, state):
    data = _empty_bundle(state)
    r = await client.post(
        "/v1/imports",
        params={"organisation": "acme"},
        content=data,
        headers={**acme_headers, "Content-Type": "application/vnd.anvil.bundle"},
    )
    assert r.status_code == 202, r.text
    assert await work() == 1
    job = (await client.get(f"/v1/jobs/{r.json()['id']}", headers=acme_headers)).json()
    assert job["status"] == "queued", job
    assert job["error"]["type"] == "urn:anvil:problem:registry-unavailable"
    async with state.db.session(write=False) as session:
        assert await state.store.exists(session, f"upload:{r.json()['id'].replace('-', '')}")


async def test_unknown_job_is_404(client, acme_headers):
    r = await client.get("/v1/jobs/00000000-0000-4000-8000-000000000000", headers=acme_headers)
    assert r.status_code == 404
    assert r.json()["type"] == "urn:anvil:problem:job-not-found"


async def test_apply_while_the_registry_is_unreachable_is_503_and_the_plan_stays_open(
    client, acme_headers, state
):
    data = _empty_bundle(state)
    bundle = read_bundle(data, trust=None)
    target = {"organisation": {"slug": "acme", "name": "Acme"}, "projects": {}}
    plan = plan_import(bundle.manifest, target, bundle=bundle.digest)
    plan_id = uuid.uuid4()
    async with state.db.session() as session:
        await state.store.put(
            session,
            NewBundle(
                digest="upload:" + plan_id.hex,
                data=data,
                kind="import",
                organisation="acme",
                project=None,
                created_by="operator:tester",
                expires_at=utcnow() + timedelta(days=1),
            ),
        )
        session.add(
            Plan(
                id=plan_id,
                job_id=uuid.uuid4(),
                organisation="acme",
                bundle_digest=bundle.digest,
                upload="upload:" + plan_id.hex,
                origin=state.settings.issuer,
                strategy="fail",
                overrides={},
                plan=plan.to_json(),
                target_state=target,
                expires_at=utcnow() + timedelta(hours=1),
                created_by="operator:tester",
            )
        )
    r = await client.post(f"/v1/plans/{plan_id}/apply", headers=acme_headers)
    assert r.status_code == 503
    assert r.json()["type"] == "urn:anvil:problem:registry-unavailable"
    after = (await client.get(f"/v1/plans/{plan_id}", headers=acme_headers)).json()
    assert after["status"] == "planned"
    assert after["result"] is None
