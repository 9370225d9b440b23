"""Requests refused before anything is stored (no job, no upload), and resources that do not
exist. No registry is needed: nothing here reaches it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

BUNDLE = {"Content-Type": "application/vnd.anvil.bundle"}


@pytest.fixture
def importer(make_token: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(org='beta', scopes=['bundles:import'])}"}


@pytest.mark.parametrize(
    ("params", "headers", "status", "code"),
    [
        ({"strategy": "merge"}, {}, 422, "validation-failed"),
        ({"override": "web/greeting"}, {}, 422, "validation-failed"),
        ({"override": "web/greeting=merge"}, {}, 422, "validation-failed"),
        ({"override": "Web/greeting=skip"}, {}, 422, "validation-failed"),
        ({"organisation": "Bad Slug"}, {}, 422, "validation-failed"),
        ({"organisation": "acme"}, {}, 404, "not-found"),
        ({}, {"Content-Type": "application/json"}, 415, "unsupported-media-type"),
        ({}, {"Idempotency-Key": ""}, 400, "bad-request"),
    ],
)
async def test_bad_import_requests_are_refused_unread(
    client, importer, snapshot, params, headers, status, code
):
    before = await snapshot()
    query = {"organisation": "beta", **params}
    r = await client.post(
        "/v1/imports", params=query, content=b"\x1f\x8b not read", headers={**importer, **BUNDLE, **headers}
    )
    assert r.status_code == status, r.text
    assert r.json()["type"] == f"urn:anvil:problem:{code}"
    assert await snapshot() == before


async def test_empty_upload_is_422(client, importer, snapshot):
    before = await snapshot()
    r = await client.post(
        "/v1/imports", params={"organisation": "beta"}, content=b"", headers={**importer, **BUNDLE}
    )
    assert r.status_code == 422
    assert "empty" in r.json()["detail"]
    assert await snapshot() == before


@pytest.mark.parametrize("settings_overrides", [{"max_bundle_bytes": 4096}])
async def test_upload_over_the_limit_is_413_declared_or_streamed(live_worker, importer, snapshot):
    before = await snapshot()
    async with httpx.AsyncClient(base_url=live_worker) as http:
        declared = await http.post(
            "/v1/imports",
            params={"organisation": "beta"},
            content=b"x" * 5000,
            headers={**importer, **BUNDLE},
        )
        assert declared.status_code == 413
        assert declared.json()["type"] == "urn:anvil:problem:bundle-too-large"

        async def chunks() -> Any:
            for _ in range(10):
                yield b"y" * 1000

        streamed = await http.post(
            "/v1/imports", params={"organisation": "beta"}, content=chunks(), headers={**importer, **BUNDLE}
        )
        assert streamed.status_code == 413
        assert streamed.json()["type"] == "urn:anvil:problem:bundle-too-large"
        at_limit = await http.post(
            "/v1/imports",
            params={"organisation": "beta"},
            content=b"z" * 4096,
            headers={**importer, **BUNDLE},
        )
        assert at_limit.status_code == 202
    after = await snapshot()
    assert after["jobs"] != before["jobs"]  # only the upload at the limit was taken
    assert len(after["jobs"]) == 1


async def test_unknown_plan_is_404(client, importer):
    r = await client.get("/v1/plans/00000000-0000-4000-8000-000000000000", headers=importer)
    assert r.status_code == 404
    assert r.json()["type"] == "urn:anvil:problem:plan-not-found"
    r = await client.post("/v1/plans/00000000-0000-4000-8000-000000000000/apply", headers=importer)
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"organisation": "acme", "selection": {"kind": "project"}}, "selection"),
        ({"organisation": "acme", "selection": {"kind": "organisation", "project": "web"}}, "selection"),
        ({"organisation": "Not A Slug", "selection": {"kind": "organisation"}}, "organisation"),
        ({"organisation": "acme", "selection": {"kind": "prompts", "prompts": ["no-slash"]}}, "selection"),
        ({"organisation": "acme", "selection": {"kind": "organisation"}, "history": "some"}, "history"),
        ({"organisation": "acme", "selection": {"kind": "organisation"}, "extra": 1}, "extra"),
    ],
)
async def test_invalid_export_requests_are_422_and_write_nothing(client, acme_headers, snapshot, body, where):
    before = await snapshot()
    r = await client.post("/v1/exports", json=body, headers=acme_headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "urn:anvil:problem:validation-failed"
    assert where in r.json()["detail"]
    assert await snapshot() == before


async def test_unknown_bundle_is_404(client, acme_headers):
    r = await client.get("/v1/bundles/sha256:" + "0" * 64, headers=acme_headers)
    assert r.status_code == 404
    assert r.json()["type"] == "urn:anvil:problem:bundle-not-found"
