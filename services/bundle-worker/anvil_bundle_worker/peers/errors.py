"""Peer problems (problem+json types)."""

from __future__ import annotations

from typing import Any

from anvil_common.problems import Conflict, NotFound, Problem, ServiceUnavailable, ValidationFailed

from ..jobs.errors import ForwardedProblem

__all__ = [
    "PeerNotFound",
    "PeerExists",
    "InsecurePeerUrl",
    "PeerJwksInvalid",
    "PeerNotConfigured",
    "PeerUnavailable",
    "PeerFailed",
    "PeerRefused",
]


class PeerNotFound(NotFound):
    code, title = "peer-not-found", "Peer not found"


class PeerExists(Conflict):
    """Another peer of the organisation has this name, or this issuer."""

    code, title = "peer-exists", "Peer already registered"


class InsecurePeerUrl(ValidationFailed):
    code, title = "insecure-peer-url", "Peer URLs must be https"


class PeerJwksInvalid(ValidationFailed):
    code, title = "peer-jwks-invalid", "The peer's keys cannot be used"


class PeerNotConfigured(ValidationFailed):
    """Pushing and pulling need the peer's worker URL and the token its registry issued to us."""

    code, title = "peer-not-configured", "The peer has no URL or no token"


class PeerUnavailable(ServiceUnavailable):
    """The peer could not be reached (retried in jobs)."""

    code, title = "peer-unavailable", "The peer could not be reached"


class PeerFailed(Problem):
    """The peer failed (a 5xx, a 429) or answered something unusable."""

    status, code, title = 502, "peer-error", "The peer failed"


class PeerRefused(ForwardedProblem):
    """A problem the peer answered (a 4xx, or its job's error), passed on with its type, status and
    title; the detail names the peer."""

    def __init__(self, peer: str, status: int, problem: dict[str, Any]) -> None:
        detail = problem.get("detail")
        said = detail if isinstance(detail, str) else problem.get("title") or "no detail"
        super().__init__(status, {**problem, "detail": f"peer {peer}: {said}", "peer": peer})
        # Not an Anvil problem (a proxy's page, say): the peer's, not the registry's.
        if not str(problem.get("type", "")).startswith("urn:anvil:problem:"):
            self.code = "peer-error"  # type: ignore[misc]
            self.title = "The peer refused"  # type: ignore[misc]
