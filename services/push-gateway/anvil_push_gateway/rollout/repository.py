"""SQL of rollout safety: the policies, and each revision's counts and automatic rollback.

Every replica runs the same checks over the same tables; the writes are upserts and guarded
updates, so two replicas counting or deciding at once leave one consistent row.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, exists, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from ..models import RevisionHealth, RolloutPolicy

__all__ = ["get_policy", "list_policies", "put_policy", "list_health", "record_counts", "record_rollback"]

POLICIES = cast(Table, RolloutPolicy.__table__)
HEALTH = cast(Table, RevisionHealth.__table__)


def _insert(session: AsyncSession, table: Table) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


async def get_policy(
    session: AsyncSession, environment_id: uuid.UUID, *, for_update: bool = False
) -> RolloutPolicy | None:
    stmt = select(RolloutPolicy).where(RolloutPolicy.environment_id == environment_id)
    if for_update:
        stmt = stmt.with_for_update()
    return cast(RolloutPolicy | None, await session.scalar(stmt))


async def list_policies(session: AsyncSession) -> Sequence[RolloutPolicy]:
    """Every environment's policy."""
    return (await session.scalars(select(RolloutPolicy).order_by(RolloutPolicy.environment_id))).all()


async def put_policy(session: AsyncSession, values: dict[str, Any]) -> RolloutPolicy:
    """Insert or replace a policy (its ``row_version`` counts the writes); the stored row."""
    stmt = _insert(session, POLICIES).values(**values, row_version=1)
    changed = {k: stmt.excluded[k] for k in values if k != "environment_id"}
    stmt = stmt.on_conflict_do_update(
        index_elements=[POLICIES.c.environment_id],
        set_={**changed, "row_version": POLICIES.c.row_version + 1},
    )
    await session.execute(stmt)
    row = await session.scalar(
        select(RolloutPolicy)
        .where(RolloutPolicy.environment_id == values["environment_id"])
        .execution_options(populate_existing=True)
    )
    assert row is not None
    return row


async def list_health(session: AsyncSession, environment_id: uuid.UUID) -> Sequence[RevisionHealth]:
    """What is recorded of an environment's revisions, oldest first."""
    stmt = (
        select(RevisionHealth)
        .where(RevisionHealth.environment_id == environment_id)
        .order_by(RevisionHealth.revision)
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(stmt)).all()


async def record_counts(
    session: AsyncSession,
    *,
    environment_id: uuid.UUID,
    revision: int,
    rollback_of: int | None,
    acks: int,
    nacks: int,
    verdict: str,
    at: datetime,
) -> None:
    """Store a revision's counts, unless a newer revision of the environment is recorded: once
    clients move on, a lagging replica's counts of the older revision would only be its decay."""
    values: dict[str, Any] = {
        "environment_id": environment_id,
        "revision": revision,
        "rollback_of": rollback_of,
        "acks": acks,
        "nacks": nacks,
        "verdict": verdict,
        "counted_at": at,
    }
    newer = aliased(RevisionHealth)
    no_newer = ~exists().where(newer.environment_id == environment_id, newer.revision > revision)
    # INSERT .. SELECT .. WHERE (the WHERE also keeps SQLite from misreading ON CONFLICT).
    rows = select(*(literal(value, HEALTH.c[name].type) for name, value in values.items())).where(no_newer)
    stmt = _insert(session, HEALTH).from_select(list(values), rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=[HEALTH.c.environment_id, HEALTH.c.revision],
        set_={k: stmt.excluded[k] for k in ("acks", "nacks", "verdict", "counted_at")},
        where=no_newer,
    )
    await session.execute(stmt)


async def record_rollback(
    session: AsyncSession,
    *,
    environment_id: uuid.UUID,
    revision: int,
    to_revision: int,
    made: int | None,
    outcome: str,
    at: datetime,
) -> bool:
    """Record what the registry answered to the rollback of ``revision``, unless an outcome is
    recorded already (the first replica's answer stands); True if this one was recorded."""
    result = await session.execute(
        update(HEALTH)
        .where(
            HEALTH.c.environment_id == environment_id,
            HEALTH.c.revision == revision,
            HEALTH.c.rollback_outcome.is_(None),
        )
        .values(rollback_to=to_revision, rollback_revision=made, rollback_outcome=outcome, decided_at=at)
    )
    return bool(getattr(result, "rowcount", 0))
