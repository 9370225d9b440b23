"""The retention loop (anvil_common.maintenance): a pass in its own committed write session, again
every interval; a failed pass is logged and retried, not the end of the loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.db import Database
from anvil_common.maintenance import run_retention_loop

LOGGER = "anvil.test.retention"


async def test_passes_commit_repeat_and_survive_a_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'retention.db'}")
    async with db.session() as session:
        await session.execute(text("CREATE TABLE rows (id INTEGER PRIMARY KEY)"))
        await session.execute(text("INSERT INTO rows (id) VALUES (1), (2), (3)"))
    passes: list[int] = []
    done = asyncio.Event()

    async def prune(session: AsyncSession) -> dict[str, int]:
        passes.append(len(passes) + 1)
        if len(passes) == 1:
            raise RuntimeError("the database went away")
        if len(passes) == 4:
            done.set()
        removed = await session.execute(text("DELETE FROM rows WHERE id = :id"), {"id": len(passes)})
        return {"rows": removed.rowcount}

    log = logging.getLogger(LOGGER)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        task = asyncio.create_task(
            run_retention_loop(db, prune, log=log, interval_seconds=0, first_delay_seconds=0)
        )
        try:
            await asyncio.wait_for(done.wait(), timeout=30)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    try:
        async with db.session(write=False) as session:
            left = (await session.execute(text("SELECT id FROM rows"))).scalars().all()
    finally:
        await db.dispose()
    # Pass 1 failed; passes 2 and 3 removed a row each (committed); pass 4 found none to remove.
    assert left == [1]
    messages = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOGGER]
    assert messages[0] == ("ERROR", "retention pass failed; will retry")
    removed = [r.__dict__["removed"] for r in caplog.records if r.name == LOGGER and r.levelname == "INFO"]
    assert removed[:2] == [{"rows": 1}, {"rows": 1}]
    assert task.cancelled()
