"""Who is calling: bearer JWTs issued by the registry, verified with the instance key set,
refused once the registry has revoked them (revocations.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from anvil_common.auth import BasePrincipal, scope_requirement, verify_bearer
from anvil_common.problems import Forbidden, NotFound
from anvil_common.scopes import KIND_SCOPES

from .deps import state_of

__all__ = ["AUDIENCE", "SCOPES", "KIND_SCOPES", "Principal", "require", "authenticate"]

AUDIENCE = "anvil-bundle-worker"

# The scopes this service checks; the kinds table (anvil_common.scopes) is docs/api.md 3.4.
SCOPES = ("bundles:export", "bundles:import", "peers:admin")


@dataclass(frozen=True)
class Principal(BasePrincipal):
    @property
    def project(self) -> str | None:
        return self.claims.project

    def can_see(self, organisation: str, project: str | None = None) -> bool:
        """Tenancy: org-less tokens see everything; a project-limited token sees only resources
        confined to its project (``project`` None means "the whole organisation")."""
        if self.claims.org is not None and self.claims.org != organisation:
            return False
        return self.claims.project is None or self.claims.project == project

    def ensure_project(self, project: str | None, *, what: str) -> None:
        """A project-limited token reaches only its own project."""
        if self.claims.project is None:
            return
        if project is None:
            raise Forbidden(f"this token is limited to project {self.claims.project!r}: it cannot {what}")
        if project != self.claims.project:
            raise NotFound(f"project {project!r} not found")


async def authenticate(request: Request) -> Principal:
    """The bearer token's principal; any problem with the token is a 401."""
    state = state_of(request)
    # Revoked in the registry (DELETE /v1/tokens/{jti}): refused within revocation_refresh_seconds.
    return Principal(await verify_bearer(request, state.verifier, is_revoked=state.revocations.is_revoked))


# require(scope): a dependency giving the principal whose token holds ``scope`` (else 403).
require = scope_requirement(authenticate, SCOPES)


Authenticated = Annotated[Principal, Depends(authenticate)]
Exporter = Annotated[Principal, Depends(require("bundles:export"))]
Importer = Annotated[Principal, Depends(require("bundles:import"))]
PeerAdmin = Annotated[Principal, Depends(require("peers:admin"))]
