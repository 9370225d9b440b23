"""Rollout policy rules for the HTTP API: who may read or set an environment's policy
(docs/api.md 3.5), which environment it is (by id, from the registry), and its ETag."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.db import utcnow
from anvil_common.http import parse_etags
from anvil_common.problems import PreconditionFailed
from anvil_common.registry_http import RegistryError

from ..auth import Principal
from ..fleet.errors import RegistryUnavailable
from ..models import RolloutPolicy
from . import repository
from .errors import NoRolloutPolicy
from .schemas import RolloutPolicyUpdate

if TYPE_CHECKING:
    from ..state import GatewayState

__all__ = ["policy_etag", "get_rollout_policy", "put_rollout_policy"]

EnvironmentKey = tuple[str, str, str]


def policy_etag(row: RolloutPolicy) -> str:
    return f'"r{row.row_version}"'


async def _environment_id(state: GatewayState, principal: Principal, key: EnvironmentKey) -> uuid.UUID:
    """The environment's id, within the token's limits (404 or 403 outside, 410 archived)."""
    principal.ensure_environment(*key)
    try:
        channel = await state.hub.channel(key)
    except RegistryError as exc:
        raise RegistryUnavailable("the environment could not be loaded from the registry") from exc
    return uuid.UUID(channel.environment_id)


async def get_rollout_policy(
    session: AsyncSession, state: GatewayState, principal: Principal, key: EnvironmentKey
) -> RolloutPolicy:
    """The environment's rollout policy (404 ``no-rollout-policy`` when none is set)."""
    row = await repository.get_policy(session, await _environment_id(state, principal, key))
    if row is None:
        raise NoRolloutPolicy(f"environment {key[2]!r} has no rollout policy")
    return row


def _check_if_match(if_match: str | None, row: RolloutPolicy | None) -> None:
    tags = parse_etags(if_match, weak=False)
    if tags is None:
        return
    current = None if row is None else policy_etag(row)
    if current is None or ("*" not in tags and current not in tags):
        raise PreconditionFailed(
            f"the rollout policy's ETag is {current or 'none (no policy)'}, not {', '.join(tags)}",
            current_etag=current,
        )


async def put_rollout_policy(
    session: AsyncSession,
    state: GatewayState,
    principal: Principal,
    key: EnvironmentKey,
    data: RolloutPolicyUpdate,
    *,
    if_match: str | None,
) -> tuple[RolloutPolicy, bool]:
    """Set the environment's rollout policy (If-Match honoured); the row, and whether it is new."""
    environment_id = await _environment_id(state, principal, key)
    existing = await repository.get_policy(session, environment_id, for_update=True)
    _check_if_match(if_match, existing)
    organisation, project, environment = key
    row = await repository.put_policy(
        session,
        {
            "environment_id": environment_id,
            "organisation": organisation,
            "project": project,
            "environment": environment,
            **data.model_dump(),
            "updated_at": utcnow(),
            "updated_by": principal.actor,
        },
    )
    return row, existing is None
