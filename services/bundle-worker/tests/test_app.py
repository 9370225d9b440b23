"""The API's shape: stable operationIds under /v1, problem+json everywhere, health probes."""

from __future__ import annotations

from anvil_bundle_worker.routers import RAW_BODY_PREFIXES

OPERATIONS = {
    ("post", "/v1/exports"): "create_export",
    ("post", "/v1/imports"): "create_import",
    ("get", "/v1/jobs/{job_id}"): "get_job",
    ("get", "/v1/plans/{plan_id}"): "get_plan",
    ("post", "/v1/plans/{plan_id}/apply"): "apply_plan",
    ("post", "/v1/plans/{plan_id}/reject"): "reject_plan",
    ("get", "/v1/bundles/{digest}"): "download_bundle",
    ("post", "/v1/peers"): "create_peer",
    ("get", "/v1/peers"): "list_peers",
    ("get", "/v1/peers/{organisation}/{name}"): "get_peer",
    ("patch", "/v1/peers/{organisation}/{name}"): "update_peer",
    ("delete", "/v1/peers/{organisation}/{name}"): "delete_peer",
    ("post", "/v1/peers/{organisation}/{name}/refresh-keys"): "refresh_peer_keys",
    ("post", "/v1/peers/{organisation}/{name}/push"): "push_to_peer",
    ("post", "/v1/peers/{organisation}/{name}/pull"): "pull_from_peer",
}


async def test_openapi_lists_every_operation_with_its_stable_id(client):
    spec = (await client.get("/openapi.json")).json()
    found = {
        (method, path): op["operationId"]
        for path, item in spec["paths"].items()
        if path.startswith("/v1/")
        for method, op in item.items()
    }
    assert found == OPERATIONS
    upload = spec["paths"]["/v1/imports"]["post"]
    assert "application/vnd.anvil.bundle" in upload["requestBody"]["content"]
    assert {p["name"] for p in upload["parameters"]} >= {
        "organisation",
        "strategy",
        "override",
        "Idempotency-Key",
    }


def test_only_the_upload_path_escapes_the_json_body_guard():
    assert RAW_BODY_PREFIXES == ("/v1/imports",)


async def test_unknown_paths_and_methods_are_problems(client, acme_headers):
    missing = await client.get("/v1/nothing", headers=acme_headers)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong = await client.delete("/v1/exports", headers=acme_headers)
    assert wrong.status_code == 405
    assert wrong.json()["type"] == "urn:anvil:problem:method-not-allowed"


async def test_json_endpoints_keep_the_body_guard(client, acme_headers):
    r = await client.post("/v1/exports", content=b"x", headers={**acme_headers, "Content-Type": "text/plain"})
    assert r.status_code == 415


async def test_health_probes(client):
    assert (await client.get("/livez")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
