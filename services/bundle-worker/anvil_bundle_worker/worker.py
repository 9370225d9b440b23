"""The job loop (``python -m anvil_bundle_worker work``): claim, run with a heartbeat, record.

Any number of loops, in one process or many, may share a database: claims never hand one job
to two loops (queue.py), and a loop that loses its lease (it stalled past the lease, and
another loop took the job) stops the job and writes nothing.

Idle loops look for jobs every ``poll_seconds``; on Postgres the ``work`` command also LISTENs
for the notice queue.enqueue sends (JobListener), which wakes them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Mapping

from prometheus_client import Counter

from anvil_common.listen import PostgresListener
from anvil_common.problems import Problem

from . import queue
from .jobs.runtime import Handler, JobFailed, JobOutcome, Persist
from .settings import WorkerSettings
from .state import WorkerState

__all__ = ["Worker", "JobListener", "default_handlers", "run_workers", "InternalJobError", "UnknownJobKind"]

log = logging.getLogger("anvil.bundle_worker.jobs")


class InternalJobError(Problem):
    code, title = "internal-error", "Internal server error"


class UnknownJobKind(Problem):
    code, title = "unknown-job-kind", "No handler for this kind of job"


class _LeaseLost(Exception):
    pass


def default_handlers() -> dict[str, Handler]:
    from .exports.service import run_export
    from .imports.service import run_import
    from .peers.jobs import run_pull, run_push

    return {"export": run_export, "import": run_import, "push": run_push, "pull": run_pull}


def _jobs_counter(state: WorkerState) -> Counter:
    # One counter per state: several loops share it, and registering it twice would fail.
    counter = state.extras.get("jobs_counter")
    if counter is None:
        counter = state.metrics.counter("anvil_bundle_jobs", "Job attempts by outcome", ["kind", "outcome"])
        state.extras["jobs_counter"] = counter
    assert isinstance(counter, Counter)
    return counter


class JobListener(PostgresListener):
    """LISTEN for queue.enqueue's notices and wake the loops that subscribed. Only a shortcut: a
    loop still polls, so a notice lost while the connection was down (it reconnects after
    ``retry_seconds``, and wakes every loop when it has) delays a job by one poll at most."""

    def __init__(
        self,
        url: str,
        *,
        schema: str | None,
        retry_seconds: float = 1.0,
        keepalive_seconds: float = 30.0,
    ) -> None:
        super().__init__(
            url,
            queue.CHANNEL,
            name="anvil-bundle-worker",
            log=log,
            retry_seconds=retry_seconds,
            keepalive_seconds=keepalive_seconds,
        )
        self.schema = schema
        self._wakeups: list[asyncio.Event] = []

    def subscribe(self) -> asyncio.Event:
        """An event set on every notice (the loop clears it before it looks for a job)."""
        event = asyncio.Event()
        self._wakeups.append(event)
        return event

    def wake(self) -> None:
        for event in self._wakeups:
            event.set()

    def on_notify(self, payload: str) -> None:
        if self.schema is None or payload == self.schema:
            self.wake()

    def on_listening(self) -> None:
        self.wake()  # whatever was queued while nobody listened


class Worker:
    """One job at a time; run several for parallelism."""

    def __init__(
        self,
        state: WorkerState,
        *,
        worker_id: str | None = None,
        handlers: Mapping[str, Handler] | None = None,
        wakeup: asyncio.Event | None = None,
    ) -> None:
        self.state = state
        self.settings: WorkerSettings = state.settings
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.handlers = dict(handlers) if handlers is not None else default_handlers()
        self.jobs = _jobs_counter(state)
        self.wakeup = wakeup  # set when a job may be waiting (JobListener); polling goes on anyway

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; a job under way is finished first (graceful stop)."""
        log.info("worker %s started", self.worker_id)
        while not stop.is_set():
            if self.wakeup is not None:
                self.wakeup.clear()  # before the look: a notice during it makes the next look immediate
            try:
                worked = await self.run_once()
            except Exception:
                log.exception("worker %s: claiming failed; will retry", self.worker_id)
                worked = False
            if not worked:
                await self._idle(stop)
        log.info("worker %s stopped", self.worker_id)

    async def _idle(self, stop: asyncio.Event) -> None:
        """Wait ``poll_seconds``, or less: until ``stop`` or a wake-up."""
        waits = [asyncio.ensure_future(stop.wait())]
        if self.wakeup is not None:
            waits.append(asyncio.ensure_future(self.wakeup.wait()))
        try:
            await asyncio.wait(waits, timeout=self.settings.poll_seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    async def run_once(self) -> bool:
        """Claim and run one job; False when there was none to claim."""
        async with self.state.db.session() as session:
            lease = await queue.claim_next_job(
                session, worker_id=self.worker_id, lease_seconds=self.settings.job_lease_seconds
            )
        if lease is None:
            return False
        outcome = await self.execute(lease)
        self.jobs.labels(lease.kind, outcome).inc()
        return True

    async def execute(self, lease: queue.Lease) -> str:
        """Run a claimed job: ``succeeded``, ``queued`` (retry), ``failed`` or ``lost``."""
        handler = self.handlers.get(lease.kind)
        if handler is None:
            return await self._fail(
                lease, UnknownJobKind(f"no handler for {lease.kind!r} jobs"), retryable=False
            )
        lost = asyncio.Event()
        work = asyncio.create_task(handler(lease, self.state), name=f"job-{lease.job_id}")
        beat = asyncio.create_task(self._heartbeat(lease, work, lost), name=f"heartbeat-{lease.job_id}")
        try:
            result = await work
        except asyncio.CancelledError:
            if not lost.is_set():
                raise
            log.warning("job %s: lease lost while running; another worker owns it now", lease.job_id)
            return "lost"
        except JobFailed as exc:
            return await self._fail(lease, exc.problem, retryable=exc.retryable, cleanup=exc.cleanup)
        except Exception:
            log.exception("job %s (%s) failed unexpectedly", lease.job_id, lease.kind)
            problem = InternalJobError("the job failed unexpectedly; the worker's log has the cause")
            return await self._fail(lease, problem, retryable=True)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        return await self._complete(lease, result)

    async def _complete(self, lease: queue.Lease, outcome: JobOutcome) -> str:
        try:
            # The job's writes and its success commit together, under the fence.
            async with self.state.db.session() as session:
                await outcome.persist(session)
                if not await queue.complete(session, lease, outcome.result):
                    raise _LeaseLost
        except _LeaseLost:
            log.warning("job %s: finished after losing its lease; its result was discarded", lease.job_id)
            return "lost"
        except Problem as refused:
            return await self._fail(lease, refused, retryable=False)
        except Exception:
            log.exception("job %s: recording the result failed", lease.job_id)
            problem = InternalJobError("recording the job's result failed; the worker's log has the cause")
            return await self._fail(lease, problem, retryable=True)
        return "succeeded"

    async def _fail(
        self, lease: queue.Lease, problem: Problem, *, retryable: bool, cleanup: Persist | None = None
    ) -> str:
        async with self.state.db.session() as session:
            status = await queue.fail(
                session,
                lease,
                problem,
                retryable=retryable,
                base_seconds=self.settings.retry_base_seconds,
                max_seconds=self.settings.retry_max_seconds,
            )
            if status == "failed" and cleanup is not None:
                await cleanup(session)
        if status is None:
            log.warning("job %s: failure after losing its lease was discarded", lease.job_id)
            return "lost"
        log.info("job %s attempt %d failed (%s): %s", lease.job_id, lease.attempt, status, problem.detail)
        return status

    async def _heartbeat(
        self, lease: queue.Lease, work: asyncio.Task[JobOutcome], lost: asyncio.Event
    ) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            try:
                async with self.state.db.session() as session:
                    held = await queue.heartbeat(
                        session, lease, lease_seconds=self.settings.job_lease_seconds
                    )
            except Exception:
                # A database hiccup: try again at the next beat (the lease outlives a few misses).
                log.warning("job %s: heartbeat failed; will retry", lease.job_id, exc_info=True)
                continue
            if not held:
                lost.set()
                work.cancel()
                return


async def run_workers(
    settings: WorkerSettings, *, concurrency: int = 1, stop: asyncio.Event | None = None
) -> None:
    """The ``work`` command: ``concurrency`` loops until SIGTERM or SIGINT (or ``stop``)."""
    from anvil_common.serving import settle_heap

    from .app import build_state, close_state
    from .maintenance import run_retention_loop

    state = build_state(settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    retention = asyncio.create_task(run_retention_loop(state), name="anvil-retention")
    listener = None
    if state.db.dialect == "postgresql":
        listener = JobListener(state.db.url, schema=state.db.schema)
        listener.start()
    workers = [
        Worker(state, wakeup=listener.subscribe() if listener is not None else None)
        for _ in range(concurrency)
    ]
    settle_heap()
    try:
        await asyncio.gather(*(worker.run(stop) for worker in workers))
    finally:
        if listener is not None:
            await listener.stop()
        retention.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await retention
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        await close_state(state)
