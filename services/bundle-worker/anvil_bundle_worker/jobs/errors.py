"""Job problems (problem+json types)."""

from __future__ import annotations

from typing import Any

from anvil_common.problems import NotFound, Problem, ServiceUnavailable, ValidationFailed

from ..registry_client import RegistryError, RegistryProblem

_PREFIX = "urn:anvil:problem:"

__all__ = [
    "JobNotFound",
    "IdempotencyKeyReused",
    "LeaseExpired",
    "RegistryUnreachable",
    "RegistryFailed",
    "ForwardedProblem",
    "registry_problem",
]


class JobNotFound(NotFound):
    code, title = "job-not-found", "Job not found"


class IdempotencyKeyReused(ValidationFailed):
    code, title = "idempotency-key-reused", "Idempotency-Key reused with a different request"


class LeaseExpired(Problem):
    status, code, title = 500, "job-lease-expired", "The worker running this job stopped"


class RegistryUnreachable(ServiceUnavailable):
    code, title = "registry-unavailable", "The registry could not be reached"


class RegistryFailed(Problem):
    status, code, title = 502, "registry-error", "The registry failed"


class ForwardedProblem(Problem):
    """A problem the registry answered, passed on with its type, status, title and detail."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        kind, title, detail = problem.get("type"), problem.get("title"), problem.get("detail")
        code = kind.removeprefix(_PREFIX) if isinstance(kind, str) and kind.startswith(_PREFIX) else ""
        self.status = status  # type: ignore[misc]
        self.code = code or "registry-error"  # type: ignore[misc]
        self.title = title if isinstance(title, str) else "Registry error"  # type: ignore[misc]
        extra = {
            k: v for k, v in problem.items() if k not in ("type", "title", "status", "detail", "instance")
        }
        super().__init__(detail if isinstance(detail, str) else None, **extra)


def registry_problem(exc: RegistryError) -> Problem:
    """The problem to record or answer for a failed registry call."""
    if isinstance(exc, RegistryProblem):
        if exc.status >= 500:
            # The registry's own failure is not the caller's request: a 502, with its detail.
            detail = exc.problem.get("detail")
            return RegistryFailed(f"the registry answered {exc.status}: {detail or exc.problem.get('title')}")
        return ForwardedProblem(exc.status, exc.problem)
    return RegistryUnreachable(str(exc))
