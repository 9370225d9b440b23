"""The rollout monitor (anvil_push_gateway.rollout.monitor) against a migrated database (SQLite or
Postgres) and a registry faked at its HTTP edge: it counts the current revision fleet-wide,
records it, and asks for one rollback of a failing revision — with If-Match and an
Idempotency-Key — whatever the registry answers and however many replicas check."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from anvil_common.db import Database
from anvil_common.testing import TestDatabase
from anvil_push_gateway.fleet.recorder import FleetWriter
from anvil_push_gateway.metrics import GatewayMetrics
from anvil_push_gateway.models import RevisionHealth
from anvil_push_gateway.registry_client import RegistryClient, TokenSource
from anvil_push_gateway.rollout import repository
from anvil_push_gateway.rollout.monitor import RolloutMonitor
from anvil_push_gateway.settings import GatewaySettings
from anvil_wire.push import Ack, Hello, Nack, Sdk, Subscription

ENV = "7d3c1c52-63f8-4c1e-9a55-3f1f0b9b3a01"
DIGEST = "sha256:" + "a" * 64
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ROLLBACKS = "/v1/orgs/acme/projects/web/environments/prod/rollbacks"
Answer = Callable[[httpx.Request], httpx.Response]


class Clock:
    """Moves one second per reading: every report is later than the one before."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@dataclass
class FakeRegistry:
    """The registry's rollback endpoint: answers in turn (the last one again), keeps requests."""

    answers: list[Answer] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        return answer(request)


def created(number: int, rollback_of: int, *, replayed: bool = False) -> Answer:
    headers = {"ETag": f'"rev-{number}"'} | ({"Idempotent-Replayed": "true"} if replayed else {})
    body = {"number": number, "rollback_of": rollback_of, "kind": "rollback", "environment_id": ENV}
    return lambda request: httpx.Response(201, json=body, headers=headers)


def problem(status: int, code: str) -> Answer:
    body = {"type": f"urn:anvil:problem:{code}", "title": code, "status": status, "detail": code}
    return lambda request: httpx.Response(
        status, json=body, headers={"Content-Type": "application/problem+json"}
    )


def unreachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@dataclass
class World:
    db: Database
    writer: FleetWriter
    registry: FakeRegistry
    channel: Any
    hub: Any
    monitors: list[RolloutMonitor] = field(default_factory=list)

    def monitor(self) -> RolloutMonitor:
        """A replica's monitor (each with its own registry client and metrics)."""
        client = RegistryClient(
            "http://registry.test",
            token=TokenSource("gateway-token"),
            timeout=5,
            transport=httpx.MockTransport(self.registry.handle),
        )
        monitor = RolloutMonitor(self.db, self.hub, client, GatewayMetrics(), interval=0.5, clock=Clock())
        self.monitors.append(monitor)
        return monitor

    def current(self, number: int, rollback_of: int | None = None) -> None:
        self.channel.current = SimpleNamespace(
            number=number, manifest=SimpleNamespace(rollback_of=rollback_of)
        )

    async def report(self, clients: list[str], revision: int, *, nack: bool = False) -> None:
        for client_id in clients:
            hello = Hello(client_id, Sdk("anvil-python", "1.0"), Subscription("acme", "web", "prod"))
            message = (
                Nack(ENV, revision, DIGEST, "invalid-prompt", "undeclared variable")
                if nack
                else Ack(ENV, revision, DIGEST)
            )
            self.writer.reported(hello, message)
        await self.writer.flush()

    async def policy(self, **changes: Any) -> None:
        values = {
            "environment_id": uuid.UUID(ENV),
            "organisation": "acme",
            "project": "web",
            "environment": "prod",
            "max_nack_ratio": 0.5,
            "min_reports": 5,
            "auto_rollback": True,
            "updated_at": T0,
            "updated_by": "operator:test",
        }
        async with self.db.session() as session:
            await repository.put_policy(session, values | changes)

    async def health(self) -> dict[int, RevisionHealth]:
        async with self.db.session(write=False) as session:
            rows = (await session.scalars(select(RevisionHealth))).all()
        return {row.revision: row for row in rows}


@pytest.fixture
async def world(database: TestDatabase) -> AsyncIterator[World]:
    db = Database(database.url, schema=database.schema)
    settings = GatewaySettings(fleet_flush_seconds=1.0, database_url=database.url)
    writer = FleetWriter(db, replica="gw-a", settings=settings, clock=Clock())
    channel = SimpleNamespace(key=("acme", "web", "prod"), environment_id=ENV, archived=False, current=None)
    world = World(db, writer, FakeRegistry(), channel, SimpleNamespace(by_id={ENV: channel}))
    yield world
    for monitor in world.monitors:
        await monitor.registry.aclose()
    await db.dispose()


def clients(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


def sample(monitor: RolloutMonitor, outcome: str) -> float:
    value = monitor.metrics.registry.get_sample_value("anvil_push_rollbacks_total", {"outcome": outcome})
    return value or 0.0


async def good_then_bad(world: World, fleet: list[str], *, nacks: int) -> None:
    """Revision 1 acked by the whole fleet and recorded healthy; then revision 2 current,
    nacked by ``nacks`` clients and acked by the rest."""
    await world.policy()
    world.current(1)
    await world.report(fleet, 1)
    assert (await world.monitor().check())[ENV].why == "healthy"
    world.current(2)
    await world.report(fleet[:nacks], 2, nack=True)
    await world.report(fleet[nacks:], 2)


# -- counting ----------------------------------------------------------------------------------


async def test_the_current_revisions_counts_and_verdict_are_recorded_as_reports_come(world):
    await world.policy()
    world.current(1)
    monitor = world.monitor()
    fleet = clients(6)
    await world.report(fleet[:3], 1)
    assert (await monitor.check())[ENV].why == "too-few-reports"
    row = (await world.health())[1]
    assert (row.acks, row.nacks, row.verdict, row.rollback_of) == (3, 0, "pending", None)
    await world.report(fleet[3:], 1)
    assert (await monitor.check())[ENV].why == "healthy"
    row = (await world.health())[1]
    assert (row.acks, row.nacks, row.verdict, row.rollback_outcome) == (6, 0, "healthy", None)
    assert world.registry.requests == []


async def test_nacks_of_other_revisions_do_not_count_against_the_current_one(world):
    await world.policy()
    world.current(2)
    await world.report(clients(6), 2)
    await world.report(clients(6), 1, nack=True)  # clients that refused revision 1 long ago
    await world.report(clients(6), 3, nack=True)  # and a revision this replica has not loaded
    decision = (await world.monitor().check())[ENV]
    assert (decision.action, decision.reason) == (
        "none",
        "0 of 6 clients nacked revision 2: within the policy",
    )
    assert world.registry.requests == []


async def test_environments_without_a_policy_or_not_served_here_are_not_checked(world):
    world.current(1)
    await world.report(clients(6), 1)
    monitor = world.monitor()
    assert await monitor.check() == {}  # no policy
    await world.policy()
    world.hub.by_id.clear()  # this replica does not serve it
    assert await monitor.check() == {}
    world.hub.by_id[ENV] = world.channel
    world.channel.archived = True
    assert await monitor.check() == {}
    assert await world.health() == {}


# -- rolling back --------------------------------------------------------------------------------


async def test_a_failing_revision_is_rolled_back_once_with_if_match_and_an_idempotency_key(world):
    world.registry.answers = [created(3, 1)]
    await good_then_bad(world, clients(6), nacks=4)
    monitor = world.monitor()
    decision = (await monitor.check())[ENV]
    assert (decision.action, decision.to_revision) == ("rollback", 1)
    [request] = world.registry.requests
    assert (request.method, request.url.path) == ("POST", ROLLBACKS)
    assert request.headers["if-match"] == '"rev-2"'
    assert request.headers["idempotency-key"] == f"rollout:{ENV}:2"
    assert request.headers["authorization"] == "Bearer gateway-token"
    assert json.loads(request.content) == {
        "to_revision": 1,
        "message": "automatic rollback: revision 2 failed its rollout policy",
    }
    row = (await world.health())[2]
    assert (row.acks, row.nacks, row.verdict) == (2, 4, "failing")
    assert (row.rollback_to, row.rollback_revision, row.rollback_outcome) == (1, 3, "rolled-back")
    assert row.decided_at is not None
    assert sample(monitor, "rolled-back") == 1

    # Until the feed brings revision 3, revision 2 is still current here: nothing is asked again.
    assert (await monitor.check())[ENV].why == "handled"
    assert len(world.registry.requests) == 1


async def test_a_second_replica_sees_the_recorded_rollback_and_asks_nothing(world):
    world.registry.answers = [created(3, 1)]
    await good_then_bad(world, clients(6), nacks=6)
    first, second = world.monitor(), world.monitor()
    await first.check()
    assert (await second.check())[ENV].why == "handled"
    assert len(world.registry.requests) == 1
    assert sample(second, "rolled-back") + sample(second, "replayed") == 0


async def test_a_replayed_answer_is_recorded_as_the_rollback_another_replica_made(world):
    world.registry.answers = [created(3, 1, replayed=True)]
    await good_then_bad(world, clients(6), nacks=6)
    monitor = world.monitor()
    await monitor.check()
    row = (await world.health())[2]
    assert (row.rollback_to, row.rollback_revision, row.rollback_outcome) == (1, 3, "rolled-back")
    assert (sample(monitor, "replayed"), sample(monitor, "rolled-back")) == (1, 0)
    await monitor.check()
    assert len(world.registry.requests) == 1


@pytest.mark.parametrize(
    "answer", [problem(412, "precondition-failed"), problem(422, "idempotency-key-reused")]
)
async def test_an_environment_that_moved_on_is_recorded_as_superseded_and_not_asked_again(world, answer):
    world.registry.answers = [answer]
    await good_then_bad(world, clients(6), nacks=6)
    monitor = world.monitor()
    await monitor.check()
    row = (await world.health())[2]
    assert (row.rollback_to, row.rollback_revision, row.rollback_outcome) == (1, None, "superseded")
    assert sample(monitor, "superseded") == 1
    assert (await monitor.check())[ENV].why == "handled"
    assert len(world.registry.requests) == 1


async def test_a_failed_rollback_is_retried_at_the_next_check_and_recorded_only_once_made(world):
    world.registry.answers = [
        problem(503, "service-unavailable"),
        unreachable,
        problem(403, "forbidden"),  # a registry token without revisions:publish
        created(3, 1),
    ]
    await good_then_bad(world, clients(6), nacks=6)
    monitor = world.monitor()
    for attempt in range(1, 4):
        assert (await monitor.check())[ENV].action == "rollback"
        assert len(world.registry.requests) == attempt
        assert (await world.health())[2].rollback_outcome is None
    assert sample(monitor, "failed") == 3
    await monitor.check()
    assert (await world.health())[2].rollback_outcome == "rolled-back"
    assert {r.headers["idempotency-key"] for r in world.registry.requests} == {f"rollout:{ENV}:2"}


async def test_nothing_is_rolled_back_without_a_revision_that_met_the_policy(world, caplog):
    await world.policy()
    world.current(1)
    await world.report(clients(3), 1)  # revision 1 never had min_reports
    monitor = world.monitor()
    await monitor.check()
    world.current(2)
    await world.report(clients(6), 2, nack=True)
    with caplog.at_level(logging.WARNING, logger="anvil.push_gateway.rollout"):
        for _ in range(3):
            assert (await monitor.check())[ENV].why == "no-good-revision"
    assert world.registry.requests == []
    assert sample(monitor, "no-target") == 1  # told once, not at every check
    [record] = [r for r in caplog.records if "no earlier revision" in r.getMessage()]
    assert record.getMessage().startswith("acme/web/prod: 6 of 6 clients nacked revision 2, and no earlier")
    assert (await world.health())[2].verdict == "failing"


async def test_a_failing_revision_is_counted_but_not_rolled_back_with_auto_rollback_off(world):
    await good_then_bad(world, clients(6), nacks=6)
    await world.policy(auto_rollback=False)
    assert (await world.monitor().check())[ENV].why == "auto-rollback-off"
    assert world.registry.requests == []
    assert (await world.health())[2].verdict == "failing"


async def test_a_failing_rollback_revision_is_not_rolled_back(world):
    await good_then_bad(world, clients(6), nacks=0)
    world.current(3, rollback_of=1)
    await world.report(clients(6), 3, nack=True)
    assert (await world.monitor().check())[ENV].why == "is-rollback"
    assert world.registry.requests == []


async def test_a_lagging_replica_neither_decides_nor_overwrites_an_older_revisions_counts(world):
    world.registry.answers = [created(3, 1)]
    fleet = clients(6)
    await good_then_bad(world, fleet, nacks=0)
    await world.monitor().check()  # revision 2 recorded healthy by an up-to-date replica
    before = await world.health()
    world.current(1)  # this replica's feed is behind: it still serves revision 1
    decision = (await world.monitor().check())[ENV]
    assert (decision.action, decision.why) == ("none", "stale")
    after = await world.health()
    assert {n: (r.acks, r.nacks, r.verdict) for n, r in after.items()} == {
        n: (r.acks, r.nacks, r.verdict) for n, r in before.items()
    }
    assert (after[1].acks, after[1].verdict) == (6, "healthy")
    assert world.registry.requests == []


async def test_counts_of_a_revision_older_than_a_recorded_one_are_never_written(world):
    # The guard is in the upsert itself: a replica that decided before another recorded a newer
    # revision still cannot overwrite the older revision's counts with their decay.
    env = uuid.UUID(ENV)

    async def record(revision: int, acks: int) -> None:
        async with world.db.session() as session:
            await repository.record_counts(
                session,
                environment_id=env,
                revision=revision,
                rollback_of=None,
                acks=acks,
                nacks=0,
                verdict="healthy",
                at=T0,
            )

    await record(1, 6)
    await record(1, 7)  # newest revision so far: updated
    await record(2, 6)
    await record(1, 0)  # revision 2 is recorded: refused
    await record(0, 6)  # not recorded yet, and older than 2: not inserted either
    assert {n: r.acks for n, r in (await world.health()).items()} == {1: 7, 2: 6}
