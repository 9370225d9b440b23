"""Who is calling: bearer JWTs verified by anvil_common.jwt, revocation, scopes, tenancy."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

from fastapi import Request

from anvil_common.auth import BasePrincipal, scope_requirement, verify_bearer
from anvil_common.problems import Forbidden, NotFound
from anvil_common.scopes import KIND_SCOPES, SCOPES

from .deps import state_of
from .state import RegistryState
from .tokens.revocations import unexpired_revocations

__all__ = ["AUDIENCE", "SCOPES", "KIND_SCOPES", "Principal", "require", "authenticate"]

AUDIENCE = "anvil-registry"


@dataclass(frozen=True)
class Principal(BasePrincipal):
    @property
    def token_id(self) -> str:
        return self.claims.jti

    @property
    def is_instance_admin(self) -> bool:
        return self.claims.org is None and self.claims.kind == "operator"

    def ensure_org_wide(self, what: str) -> None:
        """Changes that reach beyond one project need a token not limited to a project."""
        if self.claims.project is not None:
            raise Forbidden(f"this token is limited to project {self.claims.project!r}: it cannot {what}")

    def ensure_scope_target(
        self, org: str, project: str | None = None, environment: str | None = None
    ) -> None:
        """Enforce the token's organisation, project and environment limits."""
        self.ensure_org(org)
        if self.claims.project is not None and project is not None and self.claims.project != project:
            raise NotFound(f"project {project!r} not found")
        if (
            self.claims.environment is not None
            and environment is not None
            and self.claims.environment != environment
        ):
            raise Forbidden(f"this token is limited to environment {self.claims.environment!r}")


async def _revoked(state: RegistryState, jti: str) -> bool:
    cache = state.revocations
    now = time.monotonic()
    if now - cache.loaded_at > cache.refresh_seconds:
        async with state.db.session(write=False) as session:
            rows = await session.execute(unexpired_revocations())
            # Union, never replace: a revocation committed (and added by its after-commit hook)
            # while this read ran must not be forgotten until the next refresh.
            cache.revoked |= {jti for jti, _ in rows}
        cache.loaded_at = now
    return jti in cache.revoked


async def authenticate(request: Request) -> Principal:
    """The bearer token's principal; any problem with the token is a 401."""
    state = state_of(request)
    return Principal(await verify_bearer(request, state.verifier, is_revoked=partial(_revoked, state)))


# require(scope): a dependency giving the principal whose token holds ``scope`` (else 403).
require = scope_requirement(authenticate, SCOPES)
