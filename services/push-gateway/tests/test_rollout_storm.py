"""Rollout safety end to end: TWO gateway replicas (uvicorn on loopback, one shared gateway
database) in front of a real registry, clients split across both. A bad revision is nacked by
every client; both replicas see the fleet-wide counts and decide to roll back, and the registry
ends up with exactly ONE rollback revision, which reaches every client — and no second one
however long the replicas keep checking."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from streamkit import Client, hello, open_client

from anvil_common.registry_http import RegistryProblem
from anvil_common.testing import TestDatabase, serve
from anvil_push_gateway.app import create_app
from anvil_push_gateway.models import RevisionHealth
from anvil_push_gateway.rollout.monitor import RolloutMonitor
from anvil_push_gateway.settings import GatewaySettings
from anvil_wire.push import Ack, Delta, Nack, Snapshot, Welcome

ENV = "/v1/orgs/acme/projects/web/environments/prod"
CLIENTS = 6


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"replica": "replica-a", "rollout_check_seconds": 0.05, "fleet_flush_seconds": 0.05}


@dataclass
class Replica:
    url: str
    app: FastAPI

    @property
    def stream_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/v1/stream"

    @property
    def monitor(self) -> RolloutMonitor:
        monitor: RolloutMonitor = self.app.state.push_gateway.extras["rollout"]
        return monitor

    def rollbacks(self, outcome: str) -> float:
        registry = self.app.state.push_gateway.metrics.registry
        return registry.get_sample_value("anvil_push_rollbacks_total", {"outcome": outcome}) or 0.0


@contextlib.asynccontextmanager
async def replica(settings: GatewaySettings) -> AsyncIterator[Replica]:
    """One more gateway replica, built like conftest's ``gateway``."""
    application = create_app(settings)
    state = application.state.push_gateway
    async with (
        application.router.lifespan_context(application),
        serve(application, ws=state.stream.protocol_factory) as url,
    ):
        await until(lambda: state.keys.loaded and state.feed.cursor is not None)
        yield Replica(url, application)


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - conditions on several objects, polled
            await asyncio.sleep(0.01)


async def until_async(condition: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():  # noqa: ASYNC110 - a table has no event to wait on
            await asyncio.sleep(0.02)


@pytest.fixture
async def replicas(
    gateway, settings: GatewaySettings, database: TestDatabase
) -> AsyncIterator[list[Replica]]:
    """conftest's gateway (replica-a) and a second replica (replica-b) on the same database."""
    async with replica(settings.model_copy(update={"replica": "replica-b"})) as b:
        yield [Replica(gateway.url, gateway.app), b]


def counting(monitor: RolloutMonitor) -> list[int]:
    """Count the monitor's checks from now on (its loop calls ``check`` each interval)."""
    calls = [0]
    check = monitor.check

    async def counted() -> Any:
        calls[0] += 1
        return await check()

    monitor.check = counted  # type: ignore[method-assign]
    return calls


async def revisions(seed: Any) -> list[dict[str, Any]]:
    r = await seed.http.get(f"{ENV}/revisions", headers=seed.headers)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def health(gateway: Any) -> dict[int, RevisionHealth]:
    async with gateway.state.db.session(write=False) as session:
        rows = (await session.scalars(select(RevisionHealth))).all()
    return {row.revision: row for row in rows}


async def receive_revision(client: Client) -> Snapshot | Delta:
    message = await client.receive()
    assert isinstance(message, Snapshot | Delta), message
    return message


async def test_a_nack_storm_across_two_replicas_makes_exactly_one_rollback(
    gateway, replicas, seed, make_token
):
    await seed.org("acme", "web")
    await seed.environment("acme", "web", "prod")
    await seed.version("acme", "web", "greeting", "Hello {{name}}")
    await seed.version("acme", "web", "greeting", "Hello {{name}}, {{undeclared}}")
    assert await seed.publish("acme", "web", "prod", {"greeting": 1}) == 1
    operator = make_token("operator")
    r = await gateway.client.put(
        f"{ENV}/rollout-policy",
        json={"max_nack_ratio": 0.5, "min_reports": 5},
        headers={"Authorization": f"Bearer {operator}"},
    )
    assert r.status_code == 201, r.text
    token = make_token("client", org="acme", project="web", environment="prod")

    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(open_client(replicas[i % 2].stream_url, token))
            for i in range(CLIENTS)
        ]
        # Every client applies revision 1, which the replicas record as healthy (6 acks).
        for client in clients:
            await client.send(hello())
            assert isinstance(await client.receive(), Welcome)
            first = await receive_revision(client)
            assert first.revision == 1
            await client.send(Ack.of(first))

        async def one_is_healthy() -> bool:
            row = (await health(gateway)).get(1)
            return row is not None and (row.acks, row.verdict) == (CLIENTS, "healthy")

        await until_async(one_is_healthy)

        # Revision 2 is bad: every client refuses it.
        assert await seed.publish("acme", "web", "prod", {"greeting": 2}) == 2
        for client in clients:
            bad = await receive_revision(client)
            assert bad.revision == 2
            await client.send(Nack.of(bad, "invalid-prompt", "undeclared variable 'undeclared'"))

        # Both replicas count 6 of 6 nacks; the environment is rolled back to revision 1, once.
        rollback_digest = None
        for client in clients:
            restored = await receive_revision(client)
            assert restored.revision == 3
            rollback_digest = rollback_digest or restored.manifest_digest
            assert restored.manifest_digest == rollback_digest
            await client.send(Ack.of(restored))

        history = await revisions(seed)
        assert [(r["number"], r["kind"], r["rollback_of"]) for r in history] == [
            (3, "rollback", 1),
            (2, "publish", None),
            (1, "publish", None),
        ]
        assert history[0]["manifest_digest"] == rollback_digest
        assert history[0]["message"] == "automatic rollback: revision 2 failed its rollout policy"
        assert history[0]["created_by"] == "service:push-gateway"

        # The replicas keep checking (and count revision 3 healthy): nothing more is rolled back.
        checks = [counting(r.monitor) for r in replicas]
        await until(lambda: all(c[0] >= 10 for c in checks))

        async def three_is_healthy() -> bool:
            row = (await health(gateway)).get(3)
            return row is not None and (row.acks, row.verdict) == (CLIENTS, "healthy")

        await until_async(three_is_healthy)
        assert [r["number"] for r in await revisions(seed)] == [3, 2, 1]
        recorded = await health(gateway)
        two = recorded[2]
        assert (two.nacks, two.verdict) == (CLIENTS, "failing")
        assert (two.rollback_to, two.rollback_revision, two.rollback_outcome) == (1, 3, "rolled-back")
        assert recorded[3].rollback_of == 1
        # One replica made the rollback; the other, if it asked at all, was answered with it.
        assert sum(r.rollbacks("rolled-back") for r in replicas) == 1
        assert sum(r.rollbacks("failed") for r in replicas) == 0
        for client in clients:
            assert await client.nothing_within(0.05)


async def test_replicas_asking_for_the_same_rollback_at_once_get_one_revision(replicas, seed):
    # The registry's half of "fires once": the same If-Match and Idempotency-Key from two
    # replicas racing make one revision; the loser is answered with it (or with 412).
    await seed.org("acme", "web")
    await seed.environment("acme", "web", "prod")
    await seed.version("acme", "web", "greeting", "Hello {{name}}")
    await seed.version("acme", "web", "greeting", "Hi {{name}}")
    await seed.publish("acme", "web", "prod", {"greeting": 1})
    await seed.publish("acme", "web", "prod", {"greeting": 2})

    async def ask(r: Replica, key: str, if_match: str = '"rev-2"') -> Any:
        return await r.app.state.push_gateway.registry.roll_back(
            "acme", "web", "prod", to_revision=1, if_match=if_match, idempotency_key=key, message="m"
        )

    answers = await asyncio.gather(*(ask(r, "rollout:test:2") for r in replicas))
    assert sorted((a.revision, a.rollback_of, a.replayed) for a in answers) == [(3, 1, False), (3, 1, True)]
    assert [r["number"] for r in await revisions(seed)] == [3, 2, 1]

    # Without the key (another token, say), the stale If-Match alone refuses a second rollback.
    with pytest.raises(RegistryProblem) as refused:
        await ask(replicas[1], "rollout:another:2")
    assert (refused.value.status, refused.value.code) == (412, "precondition-failed")
    assert [r["number"] for r in await revisions(seed)] == [3, 2, 1]
