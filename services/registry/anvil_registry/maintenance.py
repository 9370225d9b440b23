"""Retention: events, audit entries and idempotency keys older than their settings go away."""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.db import utcnow
from anvil_common.maintenance import run_retention_loop as retention_loop

from .events.service import SEQUENCE_NAME
from .models import AuditEntry, Event, EventSequence, IdempotencyRecord
from .state import RegistryState

__all__ = ["prune", "run_retention_loop"]

log = logging.getLogger("anvil.registry.retention")


async def prune(session: AsyncSession, state: RegistryState) -> dict[str, int]:
    """Delete what is past retention; record the highest pruned event id ("too old" answers)."""
    settings = state.settings
    now = utcnow()
    audit = await session.execute(
        delete(AuditEntry).where(AuditEntry.at < now - timedelta(days=settings.audit_retention_days))
    )
    idem = await session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.created_at < now - timedelta(hours=settings.idempotency_retention_hours)
        )
    )
    # Events last: the event_sequence row lock taken below is one publishers also need.
    event_cutoff = now - timedelta(days=settings.event_retention_days)
    newest_old = await session.scalar(select(func.max(Event.id)).where(Event.created_at < event_cutoff))
    removed_events = 0
    if newest_old is not None:
        # Events go by id, not by date, so the kept ones stay contiguous above pruned_through.
        result = await session.execute(delete(Event).where(Event.id <= newest_old))
        removed_events = result.rowcount or 0  # type: ignore[attr-defined]
        # A conditional UPDATE: a concurrent prune (another replica) that saw an older value can
        # never move pruned_through back below what was deleted.
        await session.execute(
            update(EventSequence)
            .where(EventSequence.name == SEQUENCE_NAME, EventSequence.pruned_through < newest_old)
            .values(pruned_through=newest_old)
        )
    return {
        "events": removed_events,
        "audit_entries": audit.rowcount or 0,  # type: ignore[attr-defined]
        "idempotency_keys": idem.rowcount or 0,  # type: ignore[attr-defined]
    }


async def run_retention_loop(state: RegistryState, **timing: float) -> None:
    """Prune every hour, starting a minute after startup (anvil_common.maintenance; ``timing``:
    interval_seconds, first_delay_seconds)."""
    await retention_loop(state.db, partial(prune, state=state), log=log, **timing)
