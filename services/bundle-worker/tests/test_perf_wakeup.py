"""On Postgres a queued job wakes idle worker loops at once (LISTEN/NOTIFY), so pickup does not
wait for the next poll; polling still finds every job without it.

The loops here poll once an hour: a job they run was found through the notice. Nothing asserts
how long anything took; the generous ``wait_for`` bounds only turn a hang into a failure."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from anvil_bundle_worker import queue
from anvil_bundle_worker.jobs.runtime import JobOutcome
from anvil_bundle_worker.worker import JobListener, Worker

BOUND = 30.0


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"poll_seconds": 3600.0}


@pytest.fixture
def postgres_only(state: Any) -> None:
    if state.db.dialect != "postgresql":
        pytest.skip("LISTEN/NOTIFY is Postgres's; SQLite loops poll")


async def enqueue(state: Any, *, commit: bool = True) -> Any:
    async with state.db.session() as session:
        job, created = await queue.enqueue(
            session,
            kind="test",
            organisation="acme",
            project=None,
            payload={},
            created_by="operator:tester",
            max_attempts=1,
        )
        assert created
        if not commit:
            await session.rollback()
    return job.id


class _ObservedWorker(Worker):
    """A real loop that also says when it has gone idle (nothing left to claim)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle = asyncio.Event()

    async def _idle(self, stop: asyncio.Event) -> None:
        self.idle.set()
        await super()._idle(stop)


@pytest.mark.usefixtures("postgres_only")
async def test_a_committed_job_wakes_an_idle_loop_that_polls_once_an_hour(state):
    listener = JobListener(state.db.url, schema=state.db.schema)
    listener.start()
    ran: list[Any] = []
    stop = asyncio.Event()

    async def handler(lease: queue.Lease, _state: Any) -> JobOutcome:
        ran.append(lease.job_id)
        stop.set()
        return JobOutcome(result={})

    worker = _ObservedWorker(
        state, worker_id="listening", handlers={"test": handler}, wakeup=listener.subscribe()
    )
    try:
        await asyncio.wait_for(listener.connected.wait(), BOUND)
        loop = asyncio.create_task(worker.run(stop))
        await asyncio.wait_for(worker.idle.wait(), BOUND)  # it looked, found nothing, and waits
        job_id = await enqueue(state)
        await asyncio.wait_for(loop, BOUND)
    finally:
        stop.set()
        await listener.stop()
    assert ran == [job_id]


@pytest.mark.usefixtures("postgres_only")
async def test_every_subscribed_loop_is_woken_by_a_commit(state):
    listener = JobListener(state.db.url, schema=state.db.schema)
    events = [listener.subscribe(), listener.subscribe()]
    listener.start()
    try:
        await asyncio.wait_for(listener.connected.wait(), BOUND)
        for event in events:
            event.clear()  # connecting wakes everyone once (jobs queued while nobody listened)
        await enqueue(state, commit=False)  # a rolled-back job announces nothing (Postgres's NOTIFY)
        await enqueue(state)
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), BOUND)
    finally:
        await listener.stop()
    assert all(e.is_set() for e in events)


def test_a_listener_ignores_notices_from_another_schema():
    listener = JobListener("postgresql+asyncpg://anvil@127.0.0.1/anvil", schema="ours")
    event = listener.subscribe()
    listener._on_notify(None, 1, queue.CHANNEL, "theirs")
    assert not event.is_set()
    listener._on_notify(None, 1, queue.CHANNEL, "ours")
    assert event.is_set()


async def test_without_a_listener_loops_still_find_jobs_by_polling(state):
    job_id = await enqueue(state)
    seen: list[Any] = []

    async def handler(lease: queue.Lease, _state: Any) -> JobOutcome:
        seen.append(lease.job_id)
        return JobOutcome(result={})

    assert await Worker(state, worker_id="polling", handlers={"test": handler}).run_once()
    assert seen == [job_id]
