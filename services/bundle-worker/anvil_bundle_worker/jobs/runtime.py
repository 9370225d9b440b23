"""What a job handler is: it reads (the registry, the store), computes, and hands back what to
write; the worker writes it in the same transaction that records the job's success, under the
job's lease token, so a worker that lost its lease writes nothing at all."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.problems import Problem

if TYPE_CHECKING:
    from ..queue import Lease
    from ..state import WorkerState

__all__ = ["JobOutcome", "JobFailed", "Handler", "Persist"]

Persist = Callable[[AsyncSession], Awaitable[None]]


async def _nothing(session: AsyncSession) -> None:
    return None


@dataclass(frozen=True)
class JobOutcome:
    result: dict[str, Any]
    persist: Persist = field(default=_nothing)


class JobFailed(Exception):
    """Raised by a handler: ``problem`` becomes the job's error; a ``retryable`` failure (the
    registry unreachable, a 5xx) is tried again with backoff, any other fails the job.

    ``cleanup`` runs in the transaction that records the failure, only when the job failed for
    good and only under the job's lease (an import removes the upload it could not read).
    """

    def __init__(self, problem: Problem, *, retryable: bool = False, cleanup: Persist | None = None) -> None:
        super().__init__(problem.detail)
        self.problem = problem
        self.retryable = retryable
        self.cleanup = cleanup


Handler = Callable[["Lease", "WorkerState"], Coroutine[Any, Any, JobOutcome]]
