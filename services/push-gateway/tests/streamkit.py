"""Driving /v1/stream in tests: a real ``websockets`` client speaking docs/push-protocol.md."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from anvil_wire.push import (
    SUBPROTOCOL,
    Ack,
    Hello,
    Holds,
    Nack,
    Sdk,
    ServerMessage,
    Subscription,
    encode,
    parse_server_message,
)

__all__ = ["Client", "open_client", "hello", "handshake_refusal"]


def hello(
    environment: str = "prod",
    *,
    org: str = "acme",
    project: str = "web",
    prompt_set: str | None = None,
    holds: Holds | None = None,
    client_id: str | None = None,
    labels: dict[str, str] | None = None,
) -> Hello:
    return Hello(
        client_id=client_id or str(uuid.uuid4()),
        sdk=Sdk(name="anvil-tests", version="1.0"),
        subscription=Subscription(
            organisation=org, project=project, environment=environment, prompt_set=prompt_set
        ),
        holds=holds,
        labels=labels or {},
    )


class Client:
    """One connection: send messages, receive parsed server messages."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    async def send(self, message: Hello | Ack | Nack | Any) -> None:
        await self.connection.send(encode(message).decode())

    async def receive(self, timeout: float = 10.0) -> ServerMessage:
        async with asyncio.timeout(timeout):
            data = await self.connection.recv()
        message = parse_server_message(data)
        assert message is not None, data
        return message

    async def nothing_within(self, seconds: float) -> bool:
        """True if no message arrives within ``seconds``."""
        try:
            async with asyncio.timeout(seconds):
                await self.connection.recv()
        except TimeoutError:
            return True
        return False

    async def closed(self, timeout: float = 10.0) -> tuple[int | None, str]:
        """Wait for the gateway to close the connection; its close code and reason."""
        async with asyncio.timeout(timeout):
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await self.connection.recv()
        return self.connection.close_code, self.connection.close_reason or ""


@contextlib.asynccontextmanager
async def open_client(
    url: str, token: str | None, *, subprotocols: list[str] | None = None, **kwargs: Any
) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with connect(
        url,
        subprotocols=[SUBPROTOCOL] if subprotocols is None else subprotocols,  # type: ignore[list-item]
        additional_headers=headers,
        compression=None,
        max_size=64 * 1024 * 1024,
        open_timeout=10,
        **kwargs,
    ) as connection:
        yield Client(connection)


async def handshake_refusal(url: str, token: str | None, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """The HTTP status and problem body of a refused handshake (fails if it is accepted)."""
    import json

    try:
        async with open_client(url, token, **kwargs):
            pass
    except InvalidStatus as exc:
        response = exc.response
        assert response.headers["Content-Type"] == "application/problem+json"
        return response.status_code, json.loads(response.body)
    raise AssertionError("the handshake was accepted")
