"""Who is calling: bearer JWTs issued by the registry, verified with the instance key set,
refused once the registry has revoked them (revocations.py)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from anvil_common.jwt import Claims, TokenInvalid
from anvil_common.problems import Forbidden, NotFound
from anvil_common.scopes import KIND_SCOPES

from .deps import state_of

__all__ = ["AUDIENCE", "SCOPES", "KIND_SCOPES", "Principal", "require", "authenticate"]

AUDIENCE = "anvil-bundle-worker"

# The scopes this service checks; the kinds table (anvil_common.scopes) is docs/api.md 3.4.
SCOPES = ("bundles:export", "bundles:import", "peers:admin")


@dataclass(frozen=True)
class Principal:
    claims: Claims

    @property
    def actor(self) -> str:
        return self.claims.subject

    @property
    def project(self) -> str | None:
        return self.claims.project

    def can_see(self, organisation: str, project: str | None = None) -> bool:
        """Tenancy: org-less tokens see everything; a project-limited token sees only resources
        confined to its project (``project`` None means "the whole organisation")."""
        if self.claims.org is not None and self.claims.org != organisation:
            return False
        return self.claims.project is None or self.claims.project == project

    def ensure_org(self, organisation: str) -> None:
        """Another organisation does not exist for this caller (404, docs/api.md 3.5)."""
        if self.claims.org is not None and self.claims.org != organisation:
            raise NotFound(f"organisation {organisation!r} not found")

    def ensure_project(self, project: str | None, *, what: str) -> None:
        """A project-limited token reaches only its own project."""
        if self.claims.project is None:
            return
        if project is None:
            raise Forbidden(f"this token is limited to project {self.claims.project!r}: it cannot {what}")
        if project != self.claims.project:
            raise NotFound(f"project {project!r} not found")

    def ensure_project_wide(self, what: str) -> None:
        """Changes to what every environment shares need a token not limited to an environment."""
        if self.claims.environment is not None:
            raise Forbidden(
                f"this token is limited to environment {self.claims.environment!r}: it cannot {what}"
            )


async def authenticate(request: Request) -> Principal:
    """The bearer token's principal; any problem with the token is a 401."""
    header = request.headers.get("authorization")
    if not header:
        raise TokenInvalid("missing Authorization: Bearer <token>")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenInvalid("Authorization must be 'Bearer <token>'")
    state = state_of(request)
    claims = state.verifier.verify(token.strip())
    # Revoked in the registry (DELETE /v1/tokens/{jti}): refused within revocation_refresh_seconds.
    if await state.revocations.is_revoked(claims.jti):
        raise TokenInvalid("token has been revoked")
    if not claims.scopes <= KIND_SCOPES[claims.kind]:
        raise TokenInvalid("token carries scopes its kind may not hold")
    return Principal(claims)


def require(scope: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """Dependency: an authenticated principal whose token holds ``scope``."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    async def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.claims.has(scope):
            raise Forbidden(f"token lacks the {scope!r} scope", required_scope=scope)
        return principal

    return dependency


Authenticated = Annotated[Principal, Depends(authenticate)]
Exporter = Annotated[Principal, Depends(require("bundles:export"))]
Importer = Annotated[Principal, Depends(require("bundles:import"))]
PeerAdmin = Annotated[Principal, Depends(require("peers:admin"))]
