"""The periodic maintenance (retention) loop every service with tables runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from .db import Database

__all__ = ["Prune", "run_retention_loop"]

Prune = Callable[[AsyncSession], Awaitable[Mapping[str, int]]]


async def run_retention_loop(
    db: Database,
    prune: Prune,
    *,
    log: logging.Logger,
    interval_seconds: float = 3600.0,
    first_delay_seconds: float = 60.0,
) -> None:
    """Run ``prune`` in a write session every ``interval_seconds``, the first time a while after
    startup (not during it, and not in a process that only lives for a moment); a failed pass is
    logged and retried at the next interval, and rows removed are logged as ``removed``."""
    await asyncio.sleep(first_delay_seconds)
    while True:
        try:
            async with db.session() as session:
                removed = dict(await prune(session))
            if any(removed.values()):
                log.info("retention removed rows", extra={"removed": removed})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("retention pass failed; will retry")
        await asyncio.sleep(interval_seconds)
