"""Hostile input of every shape (NUL bytes, out-of-range integers, forged page tokens, deep
nesting, lone surrogates): always a 4xx problem+json, never a 500."""

import base64
import json

import pytest


def tok(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


async def _setup(raw, admin_headers):
    await raw.post("/v1/orgs/acme/projects/web/environments", json={"name": "dev"}, headers=admin_headers)


CASES = [
    ("GET", "/v1/orgs/a%00b", None, {}),
    ("GET", "/v1/orgs/acme/projects/web/prompts/a%00b", None, {}),
    ("GET", "/v1/tokens/a%00b", None, {}),
    ("GET", "/v1/orgs/acme/projects/web/environments/dev/revisions/99999999999", None, {}),
    ("GET", "/v1/orgs/acme/projects/web/prompts/p/versions/99999999999", None, {}),
    ("GET", "/v1/orgs/acme/projects/web/environments/dev/diff?from=99999999999", None, {}),
    (
        "GET",
        "/v1/orgs/acme/projects/web/environments/dev/revisions?page_token=" + tok({"after": "x"}),
        None,
        {},
    ),
    ("GET", "/v1/orgs/acme/projects?page_token=" + tok({"after": 5}), None, {}),
    ("GET", "/v1/audit?page_token=" + tok({"after": 2**70}), None, {}),
    ("GET", "/v1/orgs?page_token=" + tok({"after": "a\u0000"}), None, {}),
    ("GET", "/v1/orgs?page_token=" + base64.urlsafe_b64encode(b"[" * 5000).rstrip(b"=").decode(), None, {}),
    ("GET", "/v1/audit?since=9999-12-31T23:59:59-01:00", None, {}),
    ("GET", "/v1/audit?since=0001-01-01T00:00:00%2B01:00", None, {}),
    (
        "POST",
        "/v1/orgs/acme/projects/web/environments/dev/revisions",
        {"prompts": {"p": 99999999999}},
        {"If-Match": '"rev-0"'},
    ),
    (
        "POST",
        "/v1/orgs/acme/projects/web/environments/dev/promotions",
        {"from_environment": "dev", "revision": 99999999999},
        {"If-Match": '"rev-0"'},
    ),
    (
        "POST",
        "/v1/orgs/acme/projects/web/prompts/p/versions",
        {"content": {"template": "hi"}, "message": "a\u0000b"},
        {},
    ),
    ("POST", "/v1/orgs/acme/projects", {"slug": "x", "name": "bad\ud800"}, {}),
    (
        "POST",
        "/v1/orgs/acme/projects/web/prompts/p/versions",
        {"content": {"template": "hi", "metadata": {"k": "\ud800"}}},
        {},
    ),
    (
        "POST",
        "/v1/orgs/acme/projects/web/environments/dev/revisions",
        {"prompts": {"p": "latest"}},
        {"If-Match": '"rev-0"', "Idempotency-Key": "k\x00"},
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers"), CASES, ids=[f"c{i}" for i in range(len(CASES))]
)
async def test_no_500(raw, acme, admin_headers, method, path, body, headers):
    await _setup(raw, admin_headers)
    h = {**admin_headers, **headers}
    if body is None:
        r = await raw.request(method, path, headers=h)
    else:
        r = await raw.request(
            method, path, content=json.dumps(body), headers={**h, "Content-Type": "application/json"}
        )
    assert r.status_code < 500, (r.status_code, r.text)


@pytest.mark.parametrize("depth", [200, 400, 600, 800, 950, 990])
async def test_deep_metadata(raw, acme, admin_headers, depth):
    body = '{"content": {"template": "hi", "metadata": {"m": ' + '{"a":' * depth + "1" + "}" * depth + "}}}"
    r = await raw.post(
        "/v1/orgs/acme/projects/web/prompts/p/versions",
        content=body,
        headers={**admin_headers, "Content-Type": "application/json"},
    )
    assert r.status_code < 500


async def test_deep_metadata_written_then_unreadable(raw, acme, admin_headers, snapshot):
    depth = 300
    body = '{"content": {"template": "hi", "metadata": {"m": ' + '{"a":' * depth + "1" + "}" * depth + "}}}"
    before = await snapshot()
    r = await raw.post(
        "/v1/orgs/acme/projects/web/prompts/p/versions",
        content=body,
        headers={**admin_headers, "Content-Type": "application/json"},
    )
    assert r.status_code == 422
    assert r.json()["type"] == "urn:anvil:problem:invalid-prompt"
    assert await snapshot() == before
