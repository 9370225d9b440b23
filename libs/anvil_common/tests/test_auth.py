"""Bearer tokens on a request (anvil_common.auth): every way the header or the token can be wrong
is a 401 problem, a revoked token is refused, a missing scope is a 403 naming it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import Depends, FastAPI, Request

from anvil_common.auth import bearer_token, scope_requirement, verify_bearer
from anvil_common.jwt import Claims, TokenInvalid, TokenIssuer, TokenVerifier
from anvil_common.problems import install_problem_handlers
from anvil_common.testing import asgi_client
from anvil_wire import KeySet

ISSUER = "https://registry.example"
AUDIENCE = "anvil-test"
REVOKED = "revoked-jti"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing Authorization: Bearer <token>"),
        ("", "missing Authorization: Bearer <token>"),
        ("Basic abc", "Authorization must be 'Bearer <token>'"),
        ("Bearer", "Authorization must be 'Bearer <token>'"),
        ("Bearer    ", "Authorization must be 'Bearer <token>'"),
    ],
)
def test_a_header_that_is_not_a_bearer_token_is_invalid(header: str | None, message: str) -> None:
    with pytest.raises(TokenInvalid) as caught:
        bearer_token(header)
    assert caught.value.detail == message


def test_the_scheme_is_case_insensitive_and_the_token_stripped() -> None:
    assert bearer_token("bearer  abc.def.ghi ") == "abc.def.ghi"


@dataclass(frozen=True)
class Principal:
    claims: Claims


@pytest.fixture(scope="module")
def keyset() -> KeySet:
    return KeySet.generate()


@pytest.fixture(scope="module")
def issuer(keyset: KeySet) -> TokenIssuer:
    return TokenIssuer(keyset.active, issuer=ISSUER)


@pytest.fixture
async def client(keyset: KeySet) -> AsyncIterator[httpx.AsyncClient]:
    verifier = TokenVerifier.for_keyset(keyset, issuer=ISSUER, audience=AUDIENCE)

    async def is_revoked(jti: str) -> bool:
        return jti == REVOKED

    async def authenticate(request: Request) -> Principal:
        return Principal(await verify_bearer(request, verifier, is_revoked=is_revoked))

    require = scope_requirement(authenticate, ("bundles:export", "bundles:import"))
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/export")
    async def export(principal: Principal = Depends(require("bundles:export"))) -> dict[str, str]:
        return {"subject": principal.claims.subject}

    with pytest.raises(ValueError, match="unknown scope 'orgs:admin'"):
        require("orgs:admin")
    async with asgi_client(app, "http://test") as c:
        yield c


def token(issuer: TokenIssuer, *, scopes: list[str], kind: str = "operator", jti: str | None = None) -> str:
    issued, _ = issuer.issue(
        subject="tester", kind=kind, audience=AUDIENCE, scopes=scopes, ttl_seconds=600, org="acme", jti=jti
    )
    return issued


async def get(client: httpx.AsyncClient, bearer: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    return await client.get("/export", headers=headers)


async def test_a_token_holding_the_scope_reaches_the_route(client, issuer) -> None:
    r = await get(client, token(issuer, scopes=["bundles:export"]))
    assert r.status_code == 200, r.text
    assert r.json() == {"subject": "tester"}


@pytest.mark.parametrize(
    ("make", "detail"),
    [
        (lambda issuer: None, "missing Authorization: Bearer <token>"),
        (lambda issuer: "not-a-jwt", "token is not a well-formed JWT"),
        (lambda issuer: token(issuer, scopes=["bundles:export"], jti=REVOKED), "token has been revoked"),
        (
            lambda issuer: token(issuer, kind="client", scopes=["bundles:export"]),
            "token carries scopes its kind may not hold",
        ),
    ],
)
async def test_a_bad_missing_or_revoked_token_is_a_401_problem(client, issuer, make, detail) -> None:
    r = await get(client, make(issuer))
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == detail


async def test_a_token_without_the_scope_is_a_403_naming_it(client, issuer) -> None:
    r = await get(client, token(issuer, scopes=["bundles:import"]))
    assert r.status_code == 403, r.text
    assert r.json()["detail"] == "token lacks the 'bundles:export' scope"
    assert r.json()["required_scope"] == "bundles:export"
