"""Token verification as the registry's HTTP API sees it: every bad credential is a 401
problem (never a 500), with a ``WWW-Authenticate`` challenge."""

from __future__ import annotations

import time

import pytest

from anvil_common.jwt import TokenIssuer
from anvil_registry.auth import KIND_SCOPES
from anvil_wire import KeySet

PROBLEM = "application/problem+json"
URL = "/v1/orgs/acme"


def assert_401(r, code: str = "invalid-token") -> None:
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["type"] == f"urn:anvil:problem:{code}"
    assert r.json()["status"] == 401


async def test_valid_token_is_accepted(client, make_token, acme):
    r = await client.get(URL, headers={"Authorization": f"Bearer {make_token()}"})
    assert r.status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Token abc.def.ghi",
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Bearer eyJhbGciOiJub25lIn0.e30.",
        "Bearer " + "x" * 10_000,
    ],
)
async def test_missing_or_malformed_credentials_are_401(client, acme, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    assert_401(await client.get(URL, headers=headers))


async def test_wrong_scheme_with_a_valid_token_is_401(client, make_token, acme):
    assert_401(await client.get(URL, headers={"Authorization": f"Basic {make_token()}"}))


async def test_expired_token_is_401_token_expired(client, state, acme):
    token, _ = state.issuer.issue(
        subject="late",
        kind="operator",
        audience="anvil-registry",
        scopes=["projects:read"],
        ttl_seconds=3600,
        org="acme",
        now=int(time.time()) - 2 * 86400,
    )
    assert_401(await client.get(URL, headers={"Authorization": f"Bearer {token}"}), "token-expired")


async def test_token_for_another_audience_is_401(client, make_token, acme):
    token = make_token(audience="anvil-push-gateway")
    assert_401(await client.get(URL, headers={"Authorization": f"Bearer {token}"}))


async def test_token_from_another_issuer_is_401(client, state, acme):
    other = TokenIssuer(state.keyset.active, issuer="https://elsewhere.example")
    token, _ = other.issue(
        subject="x",
        kind="operator",
        audience="anvil-registry",
        scopes=["projects:read"],
        ttl_seconds=600,
        org="acme",
    )
    assert_401(await client.get(URL, headers={"Authorization": f"Bearer {token}"}))


async def test_token_signed_by_another_key_set_is_401(client, state, acme):
    stranger = TokenIssuer(KeySet.generate().active, issuer=state.settings.issuer)
    token, _ = stranger.issue(
        subject="x",
        kind="operator",
        audience="anvil-registry",
        scopes=["projects:read"],
        ttl_seconds=600,
        org="acme",
    )
    r = await client.get(URL, headers={"Authorization": f"Bearer {token}"})
    assert_401(r)
    assert "unknown key" in r.json()["detail"]


async def test_tampered_token_is_401(client, make_token, acme):
    header, payload, signature = make_token().split(".")
    forged = ".".join(
        [header, payload, signature[:-4] + ("AAAA" if not signature.endswith("AAAA") else "BBBB")]
    )
    assert_401(await client.get(URL, headers={"Authorization": f"Bearer {forged}"}))


@pytest.mark.parametrize(
    ("kind", "scopes"),
    [
        ("client", ["config:read", "tokens:admin"]),
        ("client", ["orgs:admin"]),
        ("peer", ["revisions:publish"]),
        ("service", ["tokens:admin"]),
    ],
)
async def test_token_with_scopes_beyond_its_kind_is_401(client, make_token, acme, kind, scopes):
    token = make_token(kind, scopes=scopes, project="web", environment="prod")
    r = await client.get(URL, headers={"Authorization": f"Bearer {token}"})
    assert_401(r)
    assert "kind" in r.json()["detail"]


async def test_bad_tokens_on_a_write_endpoint_write_nothing(client, make_token, acme, snapshot):
    before = await snapshot()
    for token in ("garbage", make_token("client", scopes=sorted(KIND_SCOPES["operator"]))):
        r = await client.post(
            "/v1/tokens",
            json={"kind": "operator", "name": "x", "org": "acme"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert_401(r)
    assert await snapshot() == before
