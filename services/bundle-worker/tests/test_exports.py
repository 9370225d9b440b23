"""Exports end to end: a real registry on loopback, the worker API in process, a real worker
loop: job created -> snapshot read -> bundle built, signed, stored -> downloaded -> verified."""

from __future__ import annotations

import os
from typing import Any

import pytest
from sqlalchemy import text

from anvil_bundle_worker.trust import own_trust
from anvil_wire.bundles import MEDIA_TYPE, read_bundle


@pytest.fixture
def registry_url(live_registry: Any) -> str:
    return str(live_registry.url)


@pytest.fixture
async def acme(seed: Any) -> None:
    await seed.org("acme", "web", "shared")
    await seed.version("acme", "web", "greeting", "Hello {{name}}", "first")
    await seed.version("acme", "web", "greeting", "Hi {{name}}!", "second")
    await seed.version("acme", "shared", "footer", "-- acme")


def export_body(kind: str = "project", history: str = "full", **selection: Any) -> dict[str, Any]:
    return {
        "organisation": "acme",
        "selection": {"kind": kind, **selection},
        "history": history,
        "environments": False,
    }


async def _job(client: Any, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/jobs/{job_id}", headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.mark.usefixtures("acme")
async def test_export_job_stores_a_signed_bundle_that_downloads_and_verifies(
    client, acme_headers, work, state, settings
):
    r = await client.post("/v1/exports", json=export_body(project="web"), headers=acme_headers)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["kind"] == "export"
    assert job["status"] == "queued"
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"

    assert await work() == 1
    done = await _job(client, acme_headers, job["id"])
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1
    assert done["error"] is None
    digest, size = done["result"]["bundle"], done["result"]["size"]

    download = await client.get(f"/v1/bundles/{digest}", headers=acme_headers)
    assert download.status_code == 200
    assert download.headers["content-type"] == MEDIA_TYPE
    assert download.headers["etag"] == f'"{digest}"'
    assert len(download.content) == size
    bundle = read_bundle(download.content, trust=own_trust(state.keyset, settings.issuer))
    assert bundle.digest == digest
    assert bundle.seal is not None
    assert bundle.seal.issuer == settings.issuer
    assert bundle.manifest["exporter"]["instance"] == settings.issuer
    [project] = bundle.manifest["projects"]
    assert project["slug"] == "web"
    [greeting] = project["prompts"]
    assert [v["message"] for v in greeting["versions"]] == ["first", "second"]
    assert {c["template"] for c in bundle.contents.values()} == {"Hello {{name}}", "Hi {{name}}!"}

    again = await client.get(
        f"/v1/bundles/{digest}", headers={**acme_headers, "If-None-Match": download.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""


@pytest.mark.usefixtures("acme")
async def test_exporting_the_same_content_twice_gives_the_same_digest(client, acme_headers, work):
    digests = []
    for _ in range(2):
        r = await client.post("/v1/exports", json=export_body("organisation"), headers=acme_headers)
        assert r.status_code == 202
        await work()
        digests.append((await _job(client, acme_headers, r.json()["id"]))["result"]["bundle"])
    assert digests[0] == digests[1]


@pytest.mark.usefixtures("acme")
async def test_same_idempotency_key_and_body_returns_the_same_export_job(client, acme_headers, snapshot):
    headers = {**acme_headers, "Idempotency-Key": "export-1"}
    first = await client.post("/v1/exports", json=export_body(project="web"), headers=headers)
    second = await client.post("/v1/exports", json=export_body(project="web"), headers=headers)
    assert first.status_code == second.status_code == 202
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    before = await snapshot()
    other = await client.post("/v1/exports", json=export_body(project="shared"), headers=headers)
    assert other.status_code == 422
    assert other.json()["type"] == "urn:anvil:problem:idempotency-key-reused"
    assert await snapshot() == before


async def test_export_of_an_organisation_the_registry_lacks_fails_with_its_problem(client, make_token, work):
    headers = {"Authorization": f"Bearer {make_token(org=None, scopes=['bundles:export'])}"}
    body = {**export_body("organisation"), "organisation": "ghost"}
    r = await client.post("/v1/exports", json=body, headers=headers)
    assert r.status_code == 202
    await work()
    job = await _job(client, headers, r.json()["id"])
    assert job["status"] == "failed"
    assert job["attempts"] == 1
    assert job["error"]["status"] == 404
    assert job["error"]["type"] == "urn:anvil:problem:not-found"
    assert job["result"] is None


@pytest.mark.usefixtures("acme")
async def test_project_limited_token_downloads_a_bundle_of_its_project_only(client, make_token, work):
    web = {"Authorization": f"Bearer {make_token(project='web', scopes=['bundles:export'])}"}
    org_wide = {"Authorization": f"Bearer {make_token(scopes=['bundles:export'])}"}
    r = await client.post("/v1/exports", json=export_body(project="web"), headers=org_wide)
    whole = await client.post("/v1/exports", json=export_body("organisation"), headers=org_wide)
    await work()
    project_bundle = (await _job(client, org_wide, r.json()["id"]))["result"]["bundle"]
    org_bundle = (await _job(client, org_wide, whole.json()["id"]))["result"]["bundle"]
    # Exported by an org-wide token, confined to project web: the web token may have it.
    assert (await client.get(f"/v1/bundles/{project_bundle}", headers=web)).status_code == 200
    assert (await client.get(f"/v1/bundles/{org_bundle}", headers=web)).status_code == 404
    # It cannot export the whole organisation, nor another project.
    refused = await client.post("/v1/exports", json=export_body("organisation"), headers=web)
    assert refused.status_code == 403
    other = await client.post("/v1/exports", json=export_body(project="shared"), headers=web)
    assert other.status_code == 404


@pytest.mark.parametrize("settings_overrides", [{"max_bundle_bytes": 1024}])
async def test_export_larger_than_the_store_limit_fails_and_stores_nothing(
    client, acme_headers, seed, work, state
):
    await seed.org("acme", "web")
    await seed.version("acme", "web", "big", os.urandom(4096).hex())
    r = await client.post("/v1/exports", json=export_body(project="web"), headers=acme_headers)
    await work()
    job = await _job(client, acme_headers, r.json()["id"])
    assert job["status"] == "failed"
    assert job["attempts"] == 1
    assert job["error"]["type"] == "urn:anvil:problem:bundle-too-large"
    assert "1024" in job["error"]["detail"]
    async with state.db.session(write=False) as session:
        assert await state.store.exists(session, "sha256:" + "0" * 64) is False
        assert (await session.execute(text("SELECT count(*) FROM bundles"))).scalar() == 0
