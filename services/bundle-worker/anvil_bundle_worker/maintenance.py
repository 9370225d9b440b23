"""Retention: expired bundles, old finished jobs, and plans past their time go away."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.db import utcnow

from .models import OPEN_PLAN_STATUSES, Job, Plan
from .state import WorkerState

__all__ = ["prune", "run_retention_loop"]

log = logging.getLogger("anvil.bundle_worker.retention")


async def prune(session: AsyncSession, state: WorkerState, *, now: datetime | None = None) -> dict[str, int]:
    """Expire open plans past their time; delete expired bundles, and finished jobs and closed
    plans untouched for ``retention_days`` (an upload outlives its plan: imports/service.py)."""
    now = now or utcnow()
    cutoff = now - timedelta(days=state.settings.retention_days)
    expired = await session.scalars(
        update(Plan)
        .where(Plan.status.in_(OPEN_PLAN_STATUSES), Plan.expires_at <= now)
        .values(status="expired", updated_at=now)
        .returning(Plan.id)
    )
    expired_plans = len(expired.all())
    plans = await session.scalars(
        delete(Plan)
        .where(Plan.status.not_in(OPEN_PLAN_STATUSES), Plan.updated_at < cutoff)
        .returning(Plan.id)
    )
    jobs = await session.scalars(
        delete(Job).where(Job.status.in_(("succeeded", "failed")), Job.finished_at < cutoff).returning(Job.id)
    )
    return {
        "bundles": await state.store.delete_expired(session, now=now),
        "jobs": len(jobs.all()),
        "plans_expired": expired_plans,
        "plans": len(plans.all()),
    }


async def run_retention_loop(
    state: WorkerState, *, interval_seconds: float = 3600.0, first_delay_seconds: float = 60.0
) -> None:
    """Prune every ``interval_seconds``, starting a while after startup."""
    await asyncio.sleep(first_delay_seconds)
    while True:
        try:
            async with state.db.session() as session:
                removed = await prune(session, state)
            if any(removed.values()):
                log.info("retention removed rows", extra={"removed": removed})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("retention pass failed; will retry")
        await asyncio.sleep(interval_seconds)
