"""Rollout safety at run time: every ``rollout_check_seconds`` each replica checks the current
revision of every environment that has a rollout policy and that it serves (its channel is
loaded), and rolls a failing one back through the registry.

The counts are fleet-wide: every replica writes the same fleet tables (in batches, every
``fleet_flush_seconds``), so every replica reaches the same decision. The rollback still fires
once: it is asked with ``If-Match: "rev-N"`` of the failing revision N and the
``Idempotency-Key`` ``rollout:<environment id>:<N>``, so a second replica's request is replayed
(same token) or refused with 412 (the environment moved on); either way no second revision is
made. The first answer is recorded on the revision's ``revision_health`` row, and a recorded
answer stops every replica from asking again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from anvil_common.db import Database, utcnow
from anvil_common.registry_http import RegistryError, RegistryProblem

from ..channels import Channel
from ..fleet.repository import revision_counts
from ..metrics import GatewayMetrics
from ..models import RevisionHealth, RolloutPolicy
from ..registry_client import RegistryClient
from . import repository
from .decision import Decision, Policy, RevisionCounts, decide

__all__ = ["RolloutMonitor", "idempotency_key", "policy_of"]

log = logging.getLogger("anvil.push_gateway.rollout")


class Channels(Protocol):
    """What the monitor reads of the hub: the loaded environments by id."""

    by_id: dict[str, Channel]


def idempotency_key(environment_id: str | uuid.UUID, revision: int) -> str:
    """The rollback of revision N of an environment: the same key on every replica."""
    return f"rollout:{environment_id}:{revision}"


def policy_of(row: RolloutPolicy) -> Policy:
    return Policy(
        max_nack_ratio=row.max_nack_ratio, min_reports=row.min_reports, auto_rollback=row.auto_rollback
    )


def _counts(row: RevisionHealth) -> RevisionCounts:
    return RevisionCounts(row.revision, row.rollback_of, row.acks, row.nacks)


class RolloutMonitor:
    def __init__(
        self,
        db: Database,
        hub: Channels,
        registry: RegistryClient,
        metrics: GatewayMetrics,
        *,
        interval: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.hub = hub
        self.registry = registry
        self.metrics = metrics
        self.interval = interval
        self.clock = clock
        # Per environment, the (revision, why) last logged: a standing condition is told once.
        self._told: dict[str, tuple[int, str]] = {}

    async def run(self) -> None:
        """Check every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            await self.check()

    async def check(self) -> dict[str, Decision]:
        """Check every environment with a policy that this replica serves; the decisions by
        environment id."""
        try:
            async with self.db.session(write=False) as session:
                policies = list(await repository.list_policies(session))
        except Exception:
            log.exception("could not read the rollout policies")
            return {}
        decisions: dict[str, Decision] = {}
        for policy in policies:
            channel = self.hub.by_id.get(str(policy.environment_id))
            if channel is None or channel.archived or channel.current is None:
                continue
            try:
                decisions[channel.environment_id] = await self.check_environment(policy, channel)
            except Exception:  # one environment's trouble must not stop the others' checks
                log.exception("rollout check of %s failed", "/".join(channel.key))
        return decisions

    async def check_environment(self, policy: RolloutPolicy, channel: Channel) -> Decision:
        """Count, record and decide the channel's current revision; roll it back if it fails."""
        current = channel.current
        assert current is not None
        environment_id = policy.environment_id
        async with self.db.session(write=False) as session:
            acks, nacks = await revision_counts(session, environment_id, current.number)
            history = list(await repository.list_health(session, environment_id))
        stored = {row.revision: row for row in history}
        mine = stored.get(current.number)
        candidate = RevisionCounts(current.number, current.manifest.rollback_of, acks, nacks)
        latest = max([current.number, *stored])
        decision = decide(
            policy_of(policy),
            candidate,
            [_counts(row) for row in history],
            latest=latest,
            handled=mine is not None and mine.rollback_outcome is not None,
        )
        if latest == current.number and (
            mine is None or (mine.acks, mine.nacks, mine.verdict) != (acks, nacks, decision.verdict)
        ):
            async with self.db.session() as session:
                await repository.record_counts(
                    session,
                    environment_id=environment_id,
                    revision=current.number,
                    rollback_of=current.manifest.rollback_of,
                    acks=acks,
                    nacks=nacks,
                    verdict=decision.verdict,
                    at=self.clock(),
                )
        if decision.action == "rollback":
            await self._roll_back(channel, current.number, decision)
        elif decision.verdict == "failing" and decision.why not in ("stale", "handled"):
            self._tell(channel, current.number, decision)
        return decision

    def _tell(self, channel: Channel, number: int, decision: Decision) -> None:
        """Log a failing revision that is not rolled back, once per revision and reason."""
        if self._told.get(channel.environment_id) == (number, decision.why):
            return
        self._told[channel.environment_id] = (number, decision.why)
        if decision.why == "no-good-revision":
            self.metrics.rollbacks.labels(outcome="no-target").inc()
        log.warning("%s: %s", "/".join(channel.key), decision.reason)

    async def _roll_back(self, channel: Channel, number: int, decision: Decision) -> None:
        assert decision.to_revision is not None
        where = "/".join(channel.key)
        made: int | None = None
        try:
            answer = await self.registry.roll_back(
                *channel.key,
                to_revision=decision.to_revision,
                if_match=f'"rev-{number}"',
                idempotency_key=idempotency_key(channel.environment_id, number),
                # The same body on every replica (no counts in it), or the key's replay would
                # be refused as another request.
                message=f"automatic rollback: revision {number} failed its rollout policy",
            )
        except RegistryProblem as exc:
            if exc.status != 412 and exc.code != "idempotency-key-reused":
                self._failed(where, number, decision, exc)
                return
            outcome, label = "superseded", "superseded"
            log.info("%s: revision %d was not rolled back, the environment moved on: %s", where, number, exc)
        except RegistryError as exc:
            self._failed(where, number, decision, exc)
            return
        else:
            made, outcome = answer.revision, "rolled-back"
            label = "replayed" if answer.replayed else "rolled-back"
            if answer.replayed:
                log.info("%s: revision %d was rolled back already, as revision %d", where, number, made)
            else:
                log.warning("%s: %s; the registry made revision %d", where, decision.reason, made)
        self.metrics.rollbacks.labels(outcome=label).inc()
        async with self.db.session() as session:
            await repository.record_rollback(
                session,
                environment_id=uuid.UUID(channel.environment_id),
                revision=number,
                to_revision=decision.to_revision,
                made=made,
                outcome=outcome,
                at=self.clock(),
            )

    def _failed(self, where: str, number: int, decision: Decision, exc: RegistryError) -> None:
        self.metrics.rollbacks.labels(outcome="failed").inc()
        log.warning(
            "%s: %s, but the registry refused or failed (retrying in %.3g s): %s",
            where,
            decision.reason,
            self.interval,
            exc,
        )
