"""Retention: expired bundles, old finished jobs, and plans past their time go away."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.db import utcnow
from anvil_common.maintenance import run_retention_loop as retention_loop

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


async def run_retention_loop(state: WorkerState, **timing: float) -> None:
    """Prune every hour, starting a minute after startup (anvil_common.maintenance; ``timing``:
    interval_seconds, first_delay_seconds)."""
    await retention_loop(state.db, partial(prune, state=state), log=log, **timing)
