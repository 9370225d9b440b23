"""The SDK's side of the golden messages (tests/contract/push): a real client, talking to a
loopback server that plays the golden gateway messages, writes the golden client messages byte
for byte and applies the golden revisions."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from anvil_runtime import AsyncAnvilClient, ClientState
from anvil_runtime._store import Store
from anvil_wire.push import SUBPROTOCOL, Subscription

GOLDEN = Path(__file__).resolve().parents[3] / "tests" / "contract" / "push"
CLIENT_ID = "eedd3430-78fa-41d1-ae03-c06dc4ce0df4"
LABELS = {"app": "checkout-web", "k8s.io/pod": "checkout-web-7f9c4d-x2kfp", "region": "eu-west-1"}


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


class GoldenGateway:
    """Answers the hello with the given golden frames, records every frame the client sends."""

    def __init__(self, *frames: str) -> None:
        self.frames = frames
        self.received: list[bytes] = []
        self.got = asyncio.Event()

    async def handler(self, connection: ServerConnection) -> None:
        self.received.append(_bytes(await connection.recv()))
        for name in self.frames:
            await connection.send(golden(name).decode())
        async for frame in connection:
            self.received.append(_bytes(frame))
            self.got.set()


def _bytes(frame: str | bytes) -> bytes:
    return frame.encode() if isinstance(frame, str) else frame


def _client(url: str, cache: Path, **options: Any) -> AsyncAnvilClient:
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "client_id").write_text(CLIENT_ID)
    return AsyncAnvilClient(
        url,
        token="unused-by-this-server",
        organisation="acme",
        project="web",
        environment="prod",
        public_keys=GOLDEN / "keys.jwks.json",
        cache_dir=cache,
        allow_insecure=True,
        **options,
    )


async def _until(condition: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - a client's state, polled
            await asyncio.sleep(0.01)


async def test_a_fresh_client_writes_hello_minimal_applies_the_snapshot_and_the_delta_and_writes_ack(
    tmp_path: Path,
) -> None:
    gateway = GoldenGateway("welcome.json", "snapshot.json", "delta.json")
    async with serve(gateway.handler, "127.0.0.1", 0, subprotocols=[Subprotocol(SUBPROTOCOL)]) as server:
        port = server.sockets[0].getsockname()[1]
        async with _client(f"http://127.0.0.1:{port}", tmp_path / "cache") as client:
            await _until(lambda: client.revision == 8 and len(gateway.received) >= 3)
            assert client.state is ClientState.LIVE
            assert client.get_prompt("onboarding/welcome").revision == 8
    assert gateway.received[0] == golden("hello-minimal.json")
    assert gateway.received[2] == golden("ack.json")  # after the ack of revision 7
    assert json.loads(gateway.received[1])["revision"] == 7


async def test_a_client_holding_the_prompt_set_snapshot_writes_the_golden_hello(tmp_path: Path) -> None:
    """A cache holding revision 7 narrowed to the set ``checkout`` makes the hello of hello.json."""
    snapshot = json.loads(golden("snapshot-prompt-set.json"))
    cache = tmp_path / "cache"
    Store(cache).save_lkg(
        Subscription("acme", "web", "prod", "checkout"),
        {
            "environment_id": snapshot["environment_id"],
            "revision": snapshot["revision"],
            "manifest_digest": snapshot["manifest_digest"],
            "prompt_set": snapshot["prompt_set"],
            "fetched_at": "2026-12-01T00:00:00.000000Z",
            "document": snapshot["document"],
        },
    )
    gateway = GoldenGateway()
    async with serve(gateway.handler, "127.0.0.1", 0, subprotocols=[Subprotocol(SUBPROTOCOL)]) as server:
        port = server.sockets[0].getsockname()[1]
        client = _client(f"http://127.0.0.1:{port}", cache, prompt_set="checkout", labels=LABELS)
        async with client:
            await _until(lambda: bool(gateway.received))
            assert (client.revision, client.get_prompt("greeting").source) == (7, "cache")
    assert gateway.received[0] == golden("hello.json")
