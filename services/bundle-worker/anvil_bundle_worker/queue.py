"""The job queue: a table claimed under leases, with fencing tokens and bounded retries.

Claiming. On Postgres, ``SELECT ... FOR UPDATE SKIP LOCKED`` lets concurrent workers each lock a
different row: a row another transaction holds is skipped, and a row it has just committed is
re-checked against the WHERE clause (so a job someone else started is never taken twice). On
SQLite every write session starts with ``BEGIN IMMEDIATE`` (anvil_common.db), which takes the
database's single writer lock before the SELECT runs: the select and the update that marks the
job running happen while no other writer can start, so two claims are serialised exactly as
the row locks serialise them on Postgres (readers still read, but a claim is a write).

Waking. On Postgres a new job also sends ``NOTIFY anvil_bundle_jobs`` (delivered when its
transaction commits; the payload is the worker's schema), so an idle loop that listens
(worker.JobListener) claims it at once instead of at its next poll. Nothing depends on the
notice: a lost one (no listener, a dropped connection) only means the job waits for the poll.

Leases and fencing. A claim sets ``lease_expires_at`` and a fresh ``lease_token``. A job whose
lease expired (its worker crashed or stalled) is claimable again, with a new token. Every
later write of the job (heartbeat, complete, fail) names the token it was given and changes
nothing when the token no longer matches, so a stalled worker that wakes up late cannot
overwrite the result of the worker that took its job over.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.db import utcnow
from anvil_common.problems import Problem

from .jobs.errors import IdempotencyKeyReused, LeaseExpired
from .models import Job

__all__ = [
    "CHANNEL",
    "Lease",
    "RetryDecision",
    "backoff_seconds",
    "decide_retry",
    "enqueue",
    "claim_next_job",
    "heartbeat",
    "complete",
    "fail",
]


CHANNEL = "anvil_bundle_jobs"


@dataclass(frozen=True)
class Lease:
    """A claimed job, as its worker sees it; ``token`` fences every later write."""

    job_id: uuid.UUID
    token: uuid.UUID
    kind: str
    organisation: str
    project: str | None
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    created_by: str
    expires_at: datetime


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    delay_seconds: float = 0.0


def backoff_seconds(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff after the ``attempt``-th failure: base, 2*base, 4*base, ... up to cap."""
    if attempt < 1:
        raise ValueError("attempts are counted from 1")
    # Bounded exponent: a large attempt count must not overflow the float.
    return float(min(cap, base * 2 ** min(attempt - 1, 62)))


def decide_retry(
    *, attempt: int, max_attempts: int, retryable: bool, base: float, cap: float
) -> RetryDecision:
    """Whether a failed attempt is tried again, and after how long."""
    if not retryable or attempt >= max_attempts:
        return RetryDecision(retry=False)
    return RetryDecision(retry=True, delay_seconds=backoff_seconds(attempt, base=base, cap=cap))


async def enqueue(
    session: AsyncSession,
    *,
    kind: str,
    organisation: str,
    project: str | None,
    payload: dict[str, Any],
    created_by: str,
    max_attempts: int,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> tuple[Job, bool]:
    """Queue a job; with an idempotency key, the same key and request give the same job.

    A key belongs to its organisation, the job kind and the caller (docs/api.md 4.3). Returns
    ``(job, created)``; the same key with another request is a 422 ``idempotency-key-reused``.
    """
    key = _Key(organisation, kind, created_by, idempotency_key) if idempotency_key is not None else None
    if key is not None:
        existing = await _job_for_key(session, key, request_hash)
        if existing is not None:
            return existing, False
    job = Job(
        kind=kind,
        organisation=organisation,
        project=project,
        payload=payload,
        created_by=created_by,
        max_attempts=max_attempts,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    if key is None:
        session.add(job)
        await session.flush()
        await _announce(session)
        return job, True
    try:
        # A concurrent request with the same key (Postgres: it waits on the unique index until
        # the other commits) loses here; the savepoint keeps the request's transaction usable.
        async with session.begin_nested():
            session.add(job)
    except IntegrityError:
        existing = await _job_for_key(session, key, request_hash)
        if existing is None:
            raise
        return existing, False
    await _announce(session)
    return job, True


async def _announce(session: AsyncSession) -> None:
    """Postgres: tell listening workers a job is waiting, when (and if) this transaction commits."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text(f"SELECT pg_notify('{CHANNEL}', current_schema())"))


@dataclass(frozen=True)
class _Key:
    organisation: str
    kind: str
    created_by: str
    value: str


async def _job_for_key(session: AsyncSession, key: _Key, request_hash: str | None) -> Job | None:
    job = await session.scalar(
        select(Job).where(
            Job.organisation == key.organisation,
            Job.kind == key.kind,
            Job.created_by == key.created_by,
            Job.idempotency_key == key.value,
        )
    )
    if job is not None and job.request_hash != request_hash:
        raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
    return job


async def claim_next_job(
    session: AsyncSession, *, worker_id: str, lease_seconds: float, now: datetime | None = None
) -> Lease | None:
    """Claim the next runnable job (queued and due, or running with an expired lease)."""
    now = now or utcnow()
    while True:
        stmt = (
            select(Job)
            .where(
                or_(
                    and_(Job.status == "queued", Job.run_after <= now),
                    and_(Job.status == "running", Job.lease_expires_at < now),
                )
            )
            .order_by(Job.run_after, Job.created_at, Job.id)
            .limit(1)
        )
        if session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        job = await session.scalar(stmt)
        if job is None:
            return None
        if job.status == "running" and job.attempts >= job.max_attempts:
            # Its last attempt's worker stopped answering: the job fails instead of looping.
            _finish(job, "failed", now=now, error=_problem_json(job, LeaseExpired(_lease_detail(job))))
            await session.flush()
            continue
        return await _take(session, job, worker_id=worker_id, lease_seconds=lease_seconds, now=now)


def _lease_detail(job: Job) -> str:
    return f"the worker running attempt {job.attempts} of {job.max_attempts} stopped renewing its lease"


async def _take(
    session: AsyncSession, job: Job, *, worker_id: str, lease_seconds: float, now: datetime
) -> Lease:
    job.status = "running"
    job.attempts += 1
    job.lease_owner = worker_id[:200]
    job.lease_token = uuid.uuid4()
    job.lease_expires_at = now + timedelta(seconds=lease_seconds)
    job.heartbeat_at = now
    job.updated_at = now
    await session.flush()
    return Lease(
        job_id=job.id,
        token=job.lease_token,
        kind=job.kind,
        organisation=job.organisation,
        project=job.project,
        payload=dict(job.payload),
        attempt=job.attempts,
        max_attempts=job.max_attempts,
        created_by=job.created_by,
        expires_at=job.lease_expires_at,
    )


def _fenced(lease: Lease) -> Any:
    return and_(Job.id == lease.job_id, Job.lease_token == lease.token, Job.status == "running")


async def heartbeat(
    session: AsyncSession, lease: Lease, *, lease_seconds: float, now: datetime | None = None
) -> bool:
    """Extend the lease; False when the job is no longer ours (its token was replaced)."""
    now = now or utcnow()
    row = await session.scalar(
        update(Job)
        .where(_fenced(lease))
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds), heartbeat_at=now, updated_at=now)
        .returning(Job.id)
    )
    return row is not None


async def complete(
    session: AsyncSession, lease: Lease, result: dict[str, Any], *, now: datetime | None = None
) -> bool:
    """Record success; False (nothing written) when the lease's token no longer holds the job."""
    now = now or utcnow()
    row = await session.scalar(
        update(Job)
        .where(_fenced(lease))
        .values(status="succeeded", result=result, error=None, finished_at=now, updated_at=now, **_released())
        .returning(Job.id)
    )
    return row is not None


async def fail(
    session: AsyncSession,
    lease: Lease,
    problem: Problem,
    *,
    retryable: bool,
    base_seconds: float,
    max_seconds: float,
    now: datetime | None = None,
) -> str | None:
    """Record a failed attempt: ``"queued"`` (tried again later) or ``"failed"`` (for good);
    None when the lease's token no longer holds the job (nothing written)."""
    now = now or utcnow()
    decision = decide_retry(
        attempt=lease.attempt,
        max_attempts=lease.max_attempts,
        retryable=retryable,
        base=base_seconds,
        cap=max_seconds,
    )
    error = problem.to_json(f"/v1/jobs/{lease.job_id}")
    values: dict[str, Any] = {"error": error, "updated_at": now, **_released()}
    if decision.retry:
        values.update(status="queued", run_after=now + timedelta(seconds=decision.delay_seconds))
    else:
        values.update(status="failed", finished_at=now)
    row = await session.scalar(update(Job).where(_fenced(lease)).values(**values).returning(Job.status))
    return row


def _released() -> dict[str, Any]:
    return {"lease_owner": None, "lease_token": None, "lease_expires_at": None}


def _finish(job: Job, status: str, *, now: datetime, error: dict[str, Any] | None = None) -> None:
    job.status = status
    job.error = error
    job.finished_at = now
    job.updated_at = now
    job.lease_owner = job.lease_token = job.lease_expires_at = None


def _problem_json(job: Job, problem: Problem) -> dict[str, Any]:
    return problem.to_json(f"/v1/jobs/{job.id}")
