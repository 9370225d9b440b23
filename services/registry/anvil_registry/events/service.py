"""The outbox: events written in the same transaction as the change they announce.

Ids are gap-free and in commit order: the next id is read and bumped while holding a lock that
is only released at commit (``BEGIN IMMEDIATE`` on SQLite; a transaction-scoped advisory lock
on Postgres), so no transaction can commit id N+1 before id N is committed or rolled back.
Call :func:`append_event` as the last write of a transaction to keep the lock short.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.db import after_commit

from ..models import Event, EventSequence
from .hub import CHANNEL

__all__ = ["append_event", "head", "EVENT_LOCK_KEY", "SEQUENCE_NAME"]

SEQUENCE_NAME = "events"
EVENT_LOCK_KEY = 0x616E76696C  # "anvil"


async def append_event(
    session: AsyncSession,
    *,
    kind: str,
    payload: dict[str, Any],
    organisation_id: uuid.UUID | None = None,
    project_id: uuid.UUID | None = None,
    environment_id: uuid.UUID | None = None,
) -> Event:
    """Append one event to the feed inside the caller's transaction."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": EVENT_LOCK_KEY})
    sequence = await session.get(EventSequence, SEQUENCE_NAME, populate_existing=True)
    if sequence is None:
        sequence = EventSequence(name=SEQUENCE_NAME, last_id=0, pruned_through=0)
        session.add(sequence)
    sequence.last_id += 1
    event = Event(
        id=sequence.last_id,
        kind=kind,
        organisation_id=organisation_id,
        project_id=project_id,
        environment_id=environment_id,
        payload=payload,
    )
    session.add(event)
    await session.flush()
    if bind.dialect.name == "postgresql":
        # Delivered by Postgres only when (and if) this transaction commits.
        await session.execute(
            text("SELECT pg_notify(:channel, :id)"), {"channel": CHANNEL, "id": str(event.id)}
        )
    state = session.info.get("state")
    if state is not None:
        after_commit(session, state.hub.notify)
    return event


async def head(session: AsyncSession) -> tuple[int, int]:
    """(last id handed out, highest id removed by retention)."""
    row = await session.get(EventSequence, SEQUENCE_NAME)
    return (row.last_id, row.pruned_through) if row else (0, 0)
