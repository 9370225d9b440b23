"""Rollout decisions, without I/O: is an environment's current revision healthy, and if it is
failing, to which earlier revision should the gateway roll the environment back?

A revision's **reports** are the clients that acked or nacked it (fleet/repository.py
``revision_counts``: clients whose last ack is that revision, and clients whose last nack is that
revision and who did not ack it since). It **met the policy** when it had at least
``min_reports`` reports and its nack ratio (nacks / reports) was at most ``max_nack_ratio``;
a ratio exactly at the threshold passes. It **fails** when it had ``min_reports`` reports and a
higher ratio; with fewer reports it is **pending** and the decision waits.

A failing revision is rolled back to the newest earlier revision that met the policy, as the
history recorded it while that revision was current. A rollback revision restores another
revision's content: when the newest good revision is one, the target is the revision whose
content it restores (so the registry's history names the original). Nothing is rolled back:

- when the candidate is no longer the environment's newest revision (a stale decision);
- when a rollback of the candidate was already asked for and answered (``handled``);
- when the candidate is itself a rollback: its content was good before (or an operator chose
  it), so a failure means the fleet changed, not the content, and rolling back again could
  loop (rollback to K fails, roll back to K again, ...); a person decides;
- when automatic rollback is off for the environment;
- when no earlier revision met the policy: the gateway never rolls back blindly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Action",
    "Verdict",
    "Why",
    "Policy",
    "RevisionCounts",
    "Decision",
    "verdict_of",
    "last_good",
    "decide",
]

Action = Literal["none", "wait", "rollback"]
Verdict = Literal["pending", "healthy", "failing"]
# Why a decision is what it is (stable, for logs, metrics and tests; ``reason`` is for people).
Why = Literal[
    "stale",
    "too-few-reports",
    "healthy",
    "handled",
    "is-rollback",
    "auto-rollback-off",
    "no-good-revision",
    "failing",
]


@dataclass(frozen=True)
class Policy:
    """An environment's rollout policy (the ``rollout_policies`` row)."""

    max_nack_ratio: float
    min_reports: int
    auto_rollback: bool = True


@dataclass(frozen=True)
class RevisionCounts:
    """What the fleet reported of one revision: acks and standing nacks."""

    revision: int
    rollback_of: int | None
    acks: int
    nacks: int

    @property
    def reports(self) -> int:
        return self.acks + self.nacks


@dataclass(frozen=True)
class Decision:
    action: Action
    verdict: Verdict  # the candidate's, under the policy
    why: Why
    reason: str
    to_revision: int | None = None


def verdict_of(policy: Policy, counts: RevisionCounts) -> Verdict:
    """Pending below ``min_reports``; failing when the nack ratio passes ``max_nack_ratio``."""
    if counts.reports < policy.min_reports:
        return "pending"
    # A division, not nacks > ratio * reports: 3 / 10 is the same double as 0.3, so a ratio
    # exactly at the threshold passes, where the product could round either way.
    return "failing" if counts.nacks / counts.reports > policy.max_nack_ratio else "healthy"


def last_good(policy: Policy, history: Iterable[RevisionCounts], *, before: int) -> int | None:
    """The revision whose content the newest revision before ``before`` that met the policy
    serves (a rollback revision resolves to what it restores); None if none met it."""
    known = {h.revision: h for h in history if h.revision < before}
    good = [n for n, h in known.items() if verdict_of(policy, h) == "healthy"]
    if not good:
        return None
    target = max(good)
    while (record := known.get(target)) is not None and record.rollback_of is not None:
        if record.rollback_of >= target:  # never in a signed manifest; ends the walk regardless
            break
        target = record.rollback_of
    return target


def _ratio(counts: RevisionCounts) -> str:
    return f"{counts.nacks} of {counts.reports} clients nacked revision {counts.revision}"


def decide(
    policy: Policy,
    candidate: RevisionCounts,
    history: Iterable[RevisionCounts],
    *,
    latest: int,
    handled: bool = False,
) -> Decision:
    """What to do about ``candidate``, the environment's current revision as this replica
    knows it; ``latest`` is the newest revision number known anywhere (the history included),
    ``handled`` whether a rollback of the candidate was already asked for and answered."""
    verdict = verdict_of(policy, candidate)
    number = candidate.revision
    if latest > number:
        return Decision("none", verdict, "stale", f"revision {number} is no longer current ({latest} is)")
    if verdict == "pending":
        return Decision(
            "wait",
            verdict,
            "too-few-reports",
            f"{candidate.reports} of {policy.min_reports} reports needed for revision {number}",
        )
    if verdict == "healthy":
        return Decision("none", verdict, "healthy", f"{_ratio(candidate)}: within the policy")
    if handled:
        return Decision("none", verdict, "handled", f"revision {number} was rolled back already")
    if candidate.rollback_of is not None:
        return Decision(
            "none",
            verdict,
            "is-rollback",
            f"{_ratio(candidate)}, but it is a rollback to revision {candidate.rollback_of}: "
            "a failing rollback is not rolled back automatically",
        )
    if not policy.auto_rollback:
        return Decision(
            "none", verdict, "auto-rollback-off", f"{_ratio(candidate)}; automatic rollback is off"
        )
    target = last_good(policy, history, before=number)
    if target is None:
        return Decision(
            "none",
            verdict,
            "no-good-revision",
            f"{_ratio(candidate)}, and no earlier revision met the policy: nothing to roll back to",
        )
    reason = f"{_ratio(candidate)}: rolling back to revision {target}"
    return Decision("rollback", verdict, "failing", reason, target)
