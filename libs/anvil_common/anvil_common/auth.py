"""Bearer tokens on a request, the same way in every service: the ``Authorization`` header
parsed, the JWT verified (anvil_common.jwt), the service's revocation check, the kind's scopes.
Each service keeps its own revocation source and its own ``Principal`` (a subclass of
:class:`BasePrincipal` adding the service's tenancy rules)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from fastapi import Depends, Request

from .jwt import Claims, TokenInvalid, TokenVerifier
from .problems import Forbidden, NotFound
from .scopes import KIND_SCOPES

__all__ = ["BasePrincipal", "bearer_token", "verify_bearer", "accept_claims", "scope_requirement"]


@dataclass(frozen=True)
class BasePrincipal:
    """Who is calling: the verified claims, and the limits every service enforces alike."""

    claims: Claims

    @property
    def actor(self) -> str:
        return self.claims.subject

    def ensure_org(self, organisation: str) -> None:
        """Tenancy: another organisation does not exist for this caller (404, docs/api.md 3.5).

        Org-less tokens are instance-wide (operators and services such as the push gateway;
        issuance allows no other kind without an organisation).
        """
        if self.claims.org is not None and self.claims.org != organisation:
            raise NotFound(f"organisation {organisation!r} not found")

    def ensure_project_wide(self, what: str) -> None:
        """Changes to what every environment shares need a token not limited to an environment."""
        if self.claims.environment is not None:
            raise Forbidden(
                f"this token is limited to environment {self.claims.environment!r}: it cannot {what}"
            )


class _HasClaims(Protocol):
    @property
    def claims(self) -> Claims: ...


P = TypeVar("P", bound=_HasClaims)


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; TokenInvalid (401) otherwise."""
    if not header:
        raise TokenInvalid("missing Authorization: Bearer <token>")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenInvalid("Authorization must be 'Bearer <token>'")
    return token.strip()


async def verify_bearer(
    request: Request, verifier: TokenVerifier, *, is_revoked: Callable[[str], Awaitable[bool]]
) -> Claims:
    """The verified claims of the request's bearer token; any problem with it is a 401."""
    claims = verifier.verify(bearer_token(request.headers.get("authorization")))
    return accept_claims(claims, revoked=await is_revoked(claims.jti))


def accept_claims(claims: Claims, *, revoked: bool) -> Claims:
    """What every service checks once a token's signature and claims verified: that it is not
    revoked, and holds only scopes its kind may hold (TokenInvalid, a 401, otherwise)."""
    if revoked:
        raise TokenInvalid("token has been revoked")
    if not claims.scopes <= KIND_SCOPES[claims.kind]:
        raise TokenInvalid("token carries scopes its kind may not hold")
    return claims


def scope_requirement(
    authenticate: Callable[[Request], Awaitable[P]], scopes: Collection[str]
) -> Callable[[str], Callable[..., Coroutine[Any, Any, P]]]:
    """A service's ``require(scope)``: a dependency giving ``authenticate``'s principal when its
    token holds ``scope`` (403 otherwise); ``require`` refuses a scope not in ``scopes``."""

    def require(scope: str) -> Callable[..., Coroutine[Any, Any, P]]:
        if scope not in scopes:
            raise ValueError(f"unknown scope {scope!r}")

        # Depends as a default, not in Annotated: FastAPI resolves string annotations in this
        # module's globals, where the service's ``authenticate`` is not.
        async def dependency(principal: Any = Depends(authenticate)) -> P:
            if not principal.claims.has(scope):
                raise Forbidden(f"token lacks the {scope!r} scope", required_scope=scope)
            result: P = principal
            return result

        return dependency

    return require
