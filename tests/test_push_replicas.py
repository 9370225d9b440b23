"""Several push-gateway replicas as real processes, following one registry (real processes, real
WebSocket clients): a client on either replica gets every revision; a replica killed with
SIGKILL loses no revision for the clients that move to the other; SIGTERM drains with 1012; the
fleet view shows the clients of both replicas."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from anvil_instances import Instance
from streamkit import Client, hello, open_client

from anvil_wire import public_keys_from_jwks
from anvil_wire.push import Ack, CloseCode, Delta, Holds, Snapshot, Welcome, verify_message

pytestmark = pytest.mark.timeout(240)


class Follower:
    """A client that verifies and acks every revision it gets, recording their numbers."""

    def __init__(self, client: Client, keys: Any) -> None:
        self.client = client
        self.keys = keys
        self.environment_id = ""
        self.held: tuple[int, dict[str, Any]] | None = None
        self.manifest_digest = ""
        self.revisions: list[int] = []

    async def start(self, holds: Holds | None = None) -> None:
        await self.client.send(hello(holds=holds))
        welcome = await self.client.receive()
        assert isinstance(welcome, Welcome)
        self.environment_id = welcome.environment_id

    async def next(self) -> int:
        message = await self.client.receive(timeout=30)
        assert isinstance(message, Snapshot | Delta), message
        verified = verify_message(message, self.keys, environment_id=self.environment_id, held=self.held)
        self.held = (message.revision, dict(verified.contents))
        self.manifest_digest = message.manifest_digest
        self.revisions.append(message.revision)
        await self.client.send(Ack.of(message))
        return message.revision

    def holds(self) -> Holds:
        assert self.held is not None
        return Holds(self.environment_id, self.held[0], self.manifest_digest)


def _ws(url: str) -> str:
    return url.replace("http://", "ws://") + "/v1/stream"


def test_clients_on_two_replicas_get_every_revision_and_survive_a_replica_killed(tmp_path: Path):
    # Instance.start is synchronous (it creates a Postgres database with asyncio.run), the
    # clients are not: the test body runs in a loop of its own.
    with Instance.start(tmp_path / "a", "a") as instance:
        asyncio.run(_two_replicas(instance))


async def _two_replicas(instance: Instance) -> None:
    instance.seed_acme()
    g1, url1 = instance.start_gateway("g1")
    _g2, url2 = instance.start_gateway("g2")
    token = instance.issue_token(kind="client", name="app", org="acme", project="web", environment="prod")
    async with httpx.AsyncClient() as http:
        keys = public_keys_from_jwks(
            (await http.get(f"{instance.registry_url}/.well-known/jwks.json")).json()
        )
    async with open_client(_ws(url1), token) as c1, open_client(_ws(url2), token) as c2:
        one, two = Follower(c1, keys), Follower(c2, keys)
        await one.start()
        await two.start()
        assert await one.next() == await two.next() == 1
        for n in range(2, 6):
            published = await asyncio.to_thread(instance.publish_greeting, f"Hello {{{{name}}}} ({n})")
            assert published == n
            assert await one.next() == await two.next() == n
        assert one.revisions == two.revisions == [1, 2, 3, 4, 5]
        async with httpx.AsyncClient() as http:
            fleet = await http.get(
                f"{url2}/v1/fleet",
                params={"organisation": "acme"},
                headers={"Authorization": f"Bearer {instance.admin_token}"},
            )
        assert fleet.status_code == 200, fleet.text
        assert {item["replica"] for item in fleet.json()["items"]} <= {"g1", "g2"}
        await asyncio.to_thread(g1.kill)
        with pytest.raises(Exception):  # noqa: B017 - the connection dies with the process
            await one.client.receive(timeout=10)
    # The client of the killed replica moves to the survivor, resuming from what it holds.
    async with open_client(_ws(url2), token) as c1:
        moved = Follower(c1, keys)
        moved.environment_id, moved.held, moved.manifest_digest = (
            one.environment_id,
            one.held,
            one.manifest_digest,
        )
        await moved.start(holds=one.holds())
        assert await c1.nothing_within(0.5)  # current: nothing to send
        published = await asyncio.to_thread(instance.publish_greeting, "Hello {{name}} (6)")
        assert await moved.next() == published == 6


def test_sigterm_drains_a_replica_with_1012(tmp_path: Path):
    with Instance.start(tmp_path / "a", "a") as instance:
        asyncio.run(_drain(instance))


async def _drain(instance: Instance) -> None:
    instance.seed_acme()
    gateway, url = instance.start_gateway("g1")
    token = instance.issue_token(kind="client", name="app", org="acme", project="web", environment="prod")
    async with open_client(_ws(url), token) as client:
        await client.send(hello())
        await client.receive()
        await client.receive()
        await asyncio.to_thread(gateway.stop)
        assert (await client.closed())[0] == CloseCode.SERVICE_RESTART
    # uvicorn re-raises the signal once it has shut down cleanly.
    assert gateway.popen.returncode == -signal.SIGTERM
    assert "Application shutdown complete" in gateway.log.read_text()
