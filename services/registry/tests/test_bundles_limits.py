"""The body limits: apply_import takes bodies up to max_import_bytes, above the ordinary
max_body_bytes that every other path keeps (BodyGuardMiddleware path_limits)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from bundle_testkit import BUNDLE, SOURCE

from anvil_registry.settings import RegistrySettings
from anvil_wire import content_digest, normalize_content

ORDINARY = 64 * 1024
IMPORTS = 512 * 1024


@pytest.fixture
def settings(settings: RegistrySettings) -> RegistrySettings:
    return settings.model_copy(update={"max_body_bytes": ORDINARY, "max_import_bytes": IMPORTS})


@pytest.fixture
async def target(client, admin_headers, make_token) -> dict[str, str]:
    r = await client.post("/v1/orgs", json={"slug": "acme", "name": "Acme"}, headers=admin_headers)
    assert r.status_code == 201
    return {"Authorization": f"Bearer {make_token('service', scopes=['bundles:import'])}"}


def _body(size: int) -> dict[str, Any]:
    """An import of one prompt version whose template has ``size`` characters."""
    content = normalize_content({"template": "x" * size})
    digest = content_digest(content)
    return {
        "import_id": str(uuid.uuid4()),
        "origin": {"instance": SOURCE, "bundle": BUNDLE},
        "expect": {"projects": {"big": {"exists": False}}},
        "projects": [{"slug": "big", "name": "Big"}],
        "prompts": [{"project": "big", "name": "large", "versions": [{"digest": digest}]}],
        "contents": {digest: content},
    }


async def test_an_import_above_the_ordinary_limit_is_accepted(client, target):
    body = _body(3 * ORDINARY)
    assert len(json.dumps(body)) > ORDINARY
    r = await client.post("/v1/orgs/acme/imports", json=body, headers=target)
    assert r.status_code == 201, r.text


async def test_the_same_body_size_is_refused_on_every_other_path(client, target, admin_headers, snapshot):
    before = await snapshot()
    content = {"content": {"template": "x" * (3 * ORDINARY)}}
    r = await client.post(
        "/v1/orgs/acme/projects/web/prompts/large/versions", json=content, headers=admin_headers
    )
    assert r.status_code == 413, r.text
    assert r.json()["type"] == "urn:anvil:problem:payload-too-large"
    for path in ("/v1/orgs/acme/import-state", "/v1/orgs/acme/imports/extra", "/v1/orgs/acme/snapshot"):
        r = await client.post(path, json={"pad": "x" * (3 * ORDINARY)}, headers=target)
        assert r.status_code == 413, (path, r.text)
    assert await snapshot() == before


@pytest.mark.parametrize("declared", [True, False])
async def test_an_import_above_max_import_bytes_is_a_413_and_nothing_is_written(
    client, target, snapshot, declared
):
    data = json.dumps(_body(IMPORTS)).encode()
    headers = {**target, "Content-Type": "application/json"}
    before = await snapshot()
    if declared:
        r = await client.post("/v1/orgs/acme/imports", content=data, headers=headers)
    else:  # chunked, no Content-Length: counted as it arrives

        async def chunks():  # type: ignore[no-untyped-def]
            for start in range(0, len(data), 65536):
                yield data[start : start + 65536]

        r = await client.post("/v1/orgs/acme/imports", content=chunks(), headers=headers)
    assert r.status_code == 413, r.text
    assert r.json()["detail"] == f"request body exceeds {IMPORTS} bytes"
    assert await snapshot() == before
