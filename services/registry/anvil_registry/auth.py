"""Who is calling: bearer JWTs verified by anvil_common.jwt, revocation, scopes, tenancy."""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from anvil_common.jwt import Claims, TokenInvalid
from anvil_common.problems import Forbidden, NotFound
from anvil_common.scopes import KIND_SCOPES, SCOPES

from .deps import state_of
from .state import RegistryState
from .tokens.revocations import unexpired_revocations

__all__ = ["AUDIENCE", "SCOPES", "KIND_SCOPES", "Principal", "require", "authenticate"]

AUDIENCE = "anvil-registry"


@dataclass(frozen=True)
class Principal:
    claims: Claims

    @property
    def actor(self) -> str:
        return self.claims.subject

    @property
    def token_id(self) -> str:
        return self.claims.jti

    @property
    def is_instance_admin(self) -> bool:
        return self.claims.org is None and self.claims.kind == "operator"

    def can_see_org(self, org_slug: str) -> bool:
        # Org-less tokens are instance-wide (operators and services such as the push gateway;
        # issuance allows no other kind without an organisation).
        return self.claims.org is None or self.claims.org == org_slug

    def ensure_org(self, org_slug: str) -> None:
        """Tenancy: another organisation's resources do not exist for this caller (404)."""
        if not self.can_see_org(org_slug):
            raise NotFound(f"organisation {org_slug!r} not found")

    def ensure_org_wide(self, what: str) -> None:
        """Changes that reach beyond one project need a token not limited to a project."""
        if self.claims.project is not None:
            raise Forbidden(f"this token is limited to project {self.claims.project!r}: it cannot {what}")

    def ensure_project_wide(self, what: str) -> None:
        """Changes that affect every environment need a token not limited to an environment."""
        if self.claims.environment is not None:
            raise Forbidden(
                f"this token is limited to environment {self.claims.environment!r}: it cannot {what}"
            )

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
    header = request.headers.get("authorization")
    if not header:
        raise TokenInvalid("missing Authorization: Bearer <token>")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenInvalid("Authorization must be 'Bearer <token>'")
    state = state_of(request)
    claims = state.verifier.verify(token.strip())
    if await _revoked(state, claims.jti):
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
