"""The job queue on a real database (SQLite or Postgres): claims, leases, heartbeats, fencing,
bounded retries with backoff, idempotency keys, and several worker loops at once.

Time is moved by passing ``now`` (the queue's clock parameter) or by ageing a lease in the
database, never by sleeping and never by asserting how long anything took."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from anvil_bundle_worker import queue
from anvil_bundle_worker.app import build_state, close_state
from anvil_bundle_worker.jobs.errors import IdempotencyKeyReused
from anvil_bundle_worker.jobs.runtime import JobFailed, JobOutcome
from anvil_bundle_worker.models import Job
from anvil_bundle_worker.worker import Worker
from anvil_common.db import utcnow
from anvil_common.problems import ServiceUnavailable

LEASE = 60.0


async def add_jobs(
    state: Any, count: int = 1, *, kind: str = "test", max_attempts: int = 3
) -> list[uuid.UUID]:
    ids = []
    async with state.db.session() as session:
        for n in range(count):
            job, created = await queue.enqueue(
                session,
                kind=kind,
                organisation="acme",
                project=None,
                payload={"n": n},
                created_by="operator:tester",
                max_attempts=max_attempts,
            )
            assert created
            ids.append(job.id)
    return ids


async def job_row(state: Any, job_id: uuid.UUID) -> Job:
    async with state.db.session(write=False) as session:
        row = await session.scalar(select(Job).where(Job.id == job_id))
    assert row is not None
    return row


async def claim(state: Any, worker: str, *, now: Any = None) -> queue.Lease | None:
    async with state.db.session() as session:
        return await queue.claim_next_job(session, worker_id=worker, lease_seconds=LEASE, now=now)


async def finish(state: Any, lease: queue.Lease, result: dict[str, Any]) -> bool:
    async with state.db.session() as session:
        return await queue.complete(session, lease, result)


# -- claims -------------------------------------------------------------------------------------------


async def test_claim_takes_the_oldest_runnable_job_and_holds_it(state):
    first, second = await add_jobs(state, 2)
    lease = await claim(state, "a")
    assert lease is not None
    assert lease.job_id == first
    assert lease.attempt == 1
    row = await job_row(state, first)
    assert row.status == "running"
    assert row.lease_owner == "a"
    assert row.lease_token == lease.token
    other = await claim(state, "b")
    assert other is not None
    assert other.job_id == second
    assert await claim(state, "c") is None


async def test_a_claim_in_flight_never_hands_out_the_same_job(state, settings, database):
    """Two open claim transactions: on Postgres the second skips the first one's locked row at
    once (SKIP LOCKED); on SQLite it waits for the write lock, then sees the row taken."""
    first, second = await add_jobs(state, 2)
    other = build_state(settings)
    try:
        async with state.db.session() as session:
            lease = await queue.claim_next_job(session, worker_id="a", lease_seconds=LEASE)
            rival = asyncio.create_task(claim(other, "b"))
            if database.dialect == "postgresql":
                # Answered while our claim is still uncommitted: it did not wait on our row.
                rival_lease = await asyncio.wait_for(rival, timeout=30)
        if database.dialect != "postgresql":
            rival_lease = await rival
    finally:
        await close_state(other)
    assert lease is not None
    assert rival_lease is not None
    assert {lease.job_id, rival_lease.job_id} == {first, second}


async def test_several_worker_loops_run_every_job_exactly_once(state, settings):
    job_ids = await add_jobs(state, 24)
    runs: Counter[uuid.UUID] = Counter()
    stop = asyncio.Event()

    async def handler(lease: queue.Lease, _state: Any) -> JobOutcome:
        runs[lease.job_id] += 1
        await asyncio.sleep(0)  # let the other loops interleave
        if sum(runs.values()) >= len(job_ids):
            stop.set()
        return JobOutcome(result={"by": lease.job_id.hex})

    # Four loops, each with its own engine and connection pool, as four processes would have.
    states = [build_state(settings) for _ in range(4)]
    try:
        loops = [
            Worker(s, worker_id=f"loop-{i}", handlers={"test": handler}).run(stop)
            for i, s in enumerate(states)
        ]
        await asyncio.wait_for(asyncio.gather(*loops), timeout=60)
    finally:
        for s in states:
            await close_state(s)
    assert runs == Counter({job_id: 1 for job_id in job_ids})
    for job_id in job_ids:
        row = await job_row(state, job_id)
        assert row.status == "succeeded"
        assert row.attempts == 1
        assert row.result == {"by": job_id.hex}


# -- leases, heartbeats, fencing ---------------------------------------------------------------------


async def test_crashed_workers_job_is_retried_by_another_after_its_lease_expires(state):
    [job_id] = await add_jobs(state)
    crashed = await claim(state, "crashed")
    assert crashed is not None
    assert await claim(state, "other") is None  # the lease still holds
    later = crashed.expires_at + timedelta(seconds=1)
    retry = await claim(state, "other", now=later)
    assert retry is not None
    assert retry.job_id == job_id
    assert retry.attempt == 2
    assert retry.token != crashed.token
    assert await finish(state, retry, {"ok": True})
    row = await job_row(state, job_id)
    assert row.status == "succeeded"
    assert row.attempts == 2
    assert row.result == {"ok": True}


async def test_a_stalled_worker_that_wakes_up_late_cannot_overwrite_the_result(state):
    [job_id] = await add_jobs(state)
    stalled = await claim(state, "stalled")
    assert stalled is not None
    taker = await claim(state, "taker", now=stalled.expires_at + timedelta(seconds=1))
    assert taker is not None
    assert await finish(state, taker, {"by": "taker"})
    async with state.db.session() as session:
        assert await queue.heartbeat(session, stalled, lease_seconds=LEASE) is False
        assert await queue.complete(session, stalled, {"by": "stalled"}) is False
        failed = await queue.fail(
            session, stalled, ServiceUnavailable("late"), retryable=True, base_seconds=1, max_seconds=1
        )
        assert failed is None
    row = await job_row(state, job_id)
    assert row.status == "succeeded"
    assert row.result == {"by": "taker"}
    assert row.error is None


async def test_heartbeats_keep_the_lease(state):
    [job_id] = await add_jobs(state)
    lease = await claim(state, "a")
    assert lease is not None
    beat = lease.expires_at - timedelta(seconds=1)
    async with state.db.session() as session:
        assert await queue.heartbeat(session, lease, lease_seconds=LEASE, now=beat)
    assert await claim(state, "b", now=lease.expires_at + timedelta(seconds=1)) is None
    taken = await claim(state, "b", now=beat + timedelta(seconds=LEASE + 1))
    assert taken is not None
    assert taken.job_id == job_id


async def test_a_job_whose_last_attempt_stopped_heartbeating_fails_for_good(state):
    [job_id] = await add_jobs(state, max_attempts=1)
    lease = await claim(state, "a")
    assert lease is not None
    assert await claim(state, "b", now=lease.expires_at + timedelta(seconds=1)) is None
    row = await job_row(state, job_id)
    assert row.status == "failed"
    assert row.attempts == 1
    assert row.lease_token is None
    assert row.error is not None
    assert row.error["type"] == "urn:anvil:problem:job-lease-expired"


async def _age_lease(state: Any, job_id: uuid.UUID) -> None:
    """The lease ran out (its worker stalled): what a stop-the-world pause would leave behind."""
    async with state.db.session() as session:
        await session.execute(
            update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


async def test_a_worker_that_lost_its_lease_while_running_writes_nothing(state):
    [job_id] = await add_jobs(state)
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow(lease: queue.Lease, _state: Any) -> JobOutcome:
        started.set()
        await release.wait()
        return JobOutcome(result={"by": "slow"})

    async def quick(lease: queue.Lease, _state: Any) -> JobOutcome:
        return JobOutcome(result={"by": "quick"})

    stalled = asyncio.create_task(Worker(state, worker_id="slow", handlers={"test": slow}).run_once())
    await started.wait()
    await _age_lease(state, job_id)
    assert await Worker(state, worker_id="quick", handlers={"test": quick}).run_once()
    release.set()
    assert await stalled  # it ran its job, but its result was discarded
    row = await job_row(state, job_id)
    assert row.status == "succeeded"
    assert row.result == {"by": "quick"}
    assert row.attempts == 2


@pytest.mark.parametrize("settings_overrides", [{"heartbeat_seconds": 0.02}])
async def test_a_heartbeat_that_finds_the_job_taken_stops_the_job(state):
    [job_id] = await add_jobs(state)
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever(lease: queue.Lease, _state: Any) -> JobOutcome:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    worker = Worker(state, worker_id="a", handlers={"test": forever})
    lease = await claim(state, "a")
    assert lease is not None
    run = asyncio.create_task(worker.execute(lease))
    await started.wait()
    taker = await claim(state, "b", now=lease.expires_at + timedelta(seconds=1))
    assert taker is not None
    assert await asyncio.wait_for(run, timeout=30) == "lost"
    assert cancelled.is_set()
    row = await job_row(state, job_id)
    assert row.status == "running"
    assert row.lease_token == taker.token


# -- failures and retries ----------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap():
    assert [queue.backoff_seconds(n, base=2, cap=30) for n in range(1, 7)] == [2, 4, 8, 16, 30, 30]
    assert queue.backoff_seconds(10_000, base=2, cap=300) == 300
    with pytest.raises(ValueError):
        queue.backoff_seconds(0, base=2, cap=30)
    assert queue.decide_retry(attempt=1, max_attempts=3, retryable=True, base=2, cap=30).delay_seconds == 2
    assert not queue.decide_retry(attempt=3, max_attempts=3, retryable=True, base=2, cap=30).retry
    assert not queue.decide_retry(attempt=1, max_attempts=3, retryable=False, base=2, cap=30).retry


async def test_retryable_failures_are_retried_with_backoff_then_fail_for_good(state):
    [job_id] = await add_jobs(state, max_attempts=3)
    now = utcnow()
    for attempt, delay in ((1, 2.0), (2, 4.0)):
        lease = await claim(state, "a", now=now)
        assert lease is not None
        assert lease.attempt == attempt
        async with state.db.session() as session:
            status = await queue.fail(
                session,
                lease,
                ServiceUnavailable("down"),
                retryable=True,
                base_seconds=2,
                max_seconds=60,
                now=now,
            )
        assert status == "queued"
        row = await job_row(state, job_id)
        assert row.run_after == now + timedelta(seconds=delay)
        assert row.lease_token is None
        assert await claim(state, "a", now=now + timedelta(seconds=delay - 1)) is None  # not yet due
        now += timedelta(seconds=delay)
    lease = await claim(state, "a", now=now)
    assert lease is not None
    assert lease.attempt == 3
    async with state.db.session() as session:
        status = await queue.fail(
            session,
            lease,
            ServiceUnavailable("down"),
            retryable=True,
            base_seconds=2,
            max_seconds=60,
            now=now,
        )
    assert status == "failed"
    row = await job_row(state, job_id)
    assert row.status == "failed"
    assert row.attempts == 3
    assert row.finished_at is not None
    assert row.error is not None
    assert row.error["type"] == "urn:anvil:problem:service-unavailable"
    assert await claim(state, "a", now=now + timedelta(days=1)) is None


async def test_worker_retries_unexpected_errors_and_fails_unknown_kinds(state):
    [crash] = await add_jobs(state)
    [odd] = await add_jobs(state, kind="odd")

    async def boom(lease: queue.Lease, _state: Any) -> JobOutcome:
        raise RuntimeError("a bug")

    worker = Worker(state, worker_id="w", handlers={"test": boom})
    assert await worker.run_once()
    assert await worker.run_once()
    crashed, unknown = await job_row(state, crash), await job_row(state, odd)
    assert crashed.status == "queued"
    assert crashed.attempts == 1
    assert crashed.error is not None
    assert crashed.error["type"] == "urn:anvil:problem:internal-error"
    assert "a bug" not in crashed.error["detail"]  # the log has it, the API does not
    assert unknown.status == "failed"
    assert unknown.error is not None
    assert unknown.error["type"] == "urn:anvil:problem:unknown-job-kind"


async def test_job_failed_by_its_handler_records_the_problem(state):
    [job_id] = await add_jobs(state)

    async def refuse(lease: queue.Lease, _state: Any) -> JobOutcome:
        raise JobFailed(ServiceUnavailable("registry down"), retryable=False)

    assert await Worker(state, worker_id="w", handlers={"test": refuse}).run_once()
    row = await job_row(state, job_id)
    assert row.status == "failed"
    assert row.attempts == 1
    assert row.error is not None
    assert row.error["detail"] == "registry down"
    assert row.error["instance"] == f"/v1/jobs/{job_id}"


# -- idempotency keys --------------------------------------------------------------------------------


async def _enqueue_keyed(
    state: Any, key: str, request_hash: str, *, by: str = "operator:tester", kind: str = "test"
):
    async with state.db.session() as session:
        job, created = await queue.enqueue(
            session,
            kind=kind,
            organisation="acme",
            project=None,
            payload={},
            created_by=by,
            max_attempts=3,
            idempotency_key=key,
            request_hash=request_hash,
        )
        return job.id, created


async def test_idempotency_key_same_request_same_job_other_request_422(state):
    first = await _enqueue_keyed(state, "k", "sha256:a")
    assert first[1] is True
    assert await _enqueue_keyed(state, "k", "sha256:a") == (first[0], False)
    with pytest.raises(IdempotencyKeyReused):
        await _enqueue_keyed(state, "k", "sha256:b")
    # A key belongs to its caller and its kind of job.
    assert (await _enqueue_keyed(state, "k", "sha256:b", by="operator:other"))[1] is True
    assert (await _enqueue_keyed(state, "k", "sha256:b", kind="other"))[1] is True


async def test_concurrent_requests_with_one_idempotency_key_make_one_job(state, settings):
    states = [build_state(settings) for _ in range(4)]
    try:
        results = await asyncio.gather(*(_enqueue_keyed(s, "race", "sha256:a") for s in states))
    finally:
        for s in states:
            await close_state(s)
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
