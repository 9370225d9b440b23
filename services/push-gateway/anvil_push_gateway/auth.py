"""Who is calling the gateway's HTTP API: bearer JWTs issued by the registry, verified with its
JWKS (keys.py), refused once revoked (the feed's ``token.revoked`` and the registry's list)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from anvil_common.auth import BasePrincipal, accept_claims, bearer_token, scope_requirement
from anvil_common.problems import Forbidden, NotFound

from .deps import state_of

__all__ = ["AUDIENCE", "SCOPES", "Principal", "require", "authenticate"]

AUDIENCE = "anvil-push-gateway"

# The scopes this service checks; the kinds table (anvil_common.scopes) is docs/api.md 3.4.
SCOPES = ("config:read", "fleet:read", "revisions:publish")


@dataclass(frozen=True)
class Principal(BasePrincipal):
    def ensure_environment(self, organisation: str, project: str, environment: str) -> None:
        """Tenancy (api.md 3.5): another organisation or project is absent (404); another
        environment of the token's project is forbidden (403)."""
        self.ensure_org(organisation)
        claims = self.claims
        if claims.project is not None and claims.project != project:
            raise NotFound(f"project {project!r} not found")
        if claims.environment is not None and claims.environment != environment:
            raise Forbidden(f"this token is limited to environment {claims.environment!r}")


async def authenticate(request: Request) -> Principal:
    """The bearer token's principal; any problem with the token is a 401."""
    state = state_of(request)
    claims = await state.keys.verify_token(bearer_token(request.headers.get("authorization")))
    return Principal(accept_claims(claims, revoked=claims.jti in state.revocations))


# require(scope): a dependency giving the principal whose token holds ``scope`` (else 403).
require = scope_requirement(authenticate, SCOPES)
