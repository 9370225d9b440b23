"""One client connection after the handshake (docs/push-protocol.md section 4.2): hello →
welcome → the current revision as a delta or snapshot (or nothing) → every new revision, with
acks and nacks recorded for the fleet view."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from anvil_common.jwt import Claims
from anvil_common.problems import Problem
from anvil_common.registry_http import RegistryError
from anvil_wire.push import (
    Ack,
    CloseCode,
    Current,
    Hello,
    Nack,
    ProtocolError,
    Resync,
    Welcome,
    encode,
    parse_client_message,
)

from .channels import Channel
from .hub import EnvironmentArchived, NoSuchEnvironment

if TYPE_CHECKING:
    from .stream import StreamServer

__all__ = ["Session"]

log = logging.getLogger("anvil.push_gateway.sessions")


class Session:
    """A subscribed client: what it holds, what it was sent, and its connection."""

    channel: Channel
    prompt_set: str | None = None
    hello: Hello

    def __init__(self, server: StreamServer, connection: ServerConnection, claims: Claims) -> None:
        self.server = server
        self.connection = connection
        self.claims = claims
        self.jti = claims.jti
        self.id = str(uuid.uuid4())
        self.base: int | None = None
        self.sent = 0
        self.delivered: set[int] = set()
        self.unsent_since: float | None = None
        self.closing = False

    async def run(self) -> None:
        """Serve the connection until it closes."""
        try:
            hello = await self._hello()
            if hello is None:
                return
            if not await self._subscribe(hello):
                return
            expiry = asyncio.get_running_loop().call_at(
                asyncio.get_running_loop().time() + max(0.0, self.claims.expires_at - time.time()),
                self.close,
                CloseCode.TOKEN_EXPIRED,
                "token expired",
            )
            try:
                await self._listen()
            finally:
                expiry.cancel()
                self.server.hub.detach(self)
                self.server.fleet.disconnected(self)
        except ConnectionClosed:
            pass

    async def _hello(self) -> Hello | None:
        try:
            async with asyncio.timeout(self.server.settings.hello_timeout_seconds):
                data = await self.connection.recv()
        except TimeoutError:
            await self._close_now(CloseCode.HELLO_TIMEOUT, "no hello in time")
            return None
        try:
            message = self._parse(data)
        except ProtocolError as exc:
            await self._close_now(CloseCode.PROTOCOL_ERROR, str(exc))
            return None
        if not isinstance(message, Hello):
            await self._close_now(
                CloseCode.PROTOCOL_ERROR, f"expected hello, got {type(message).__name__.lower()}"
            )
            return None
        return message

    @staticmethod
    def _parse(data: str | bytes) -> object:
        """The client message in ``data``; ProtocolError for anything else (section 6, 4000)."""
        if isinstance(data, bytes):
            raise ProtocolError("binary frames are not part of the protocol")
        return parse_client_message(data)

    def _within_limits(self, hello: Hello) -> str | None:
        sub, claims = hello.subscription, self.claims
        for what, limit, value in (
            ("organisation", claims.org, sub.organisation),
            ("project", claims.project, sub.project),
            ("environment", claims.environment, sub.environment),
        ):
            if limit is not None and limit != value:
                return f"this token is limited to {what} {limit!r}"
        return None

    async def _subscribe(self, hello: Hello) -> bool:
        refused = self._within_limits(hello)
        if refused is not None:
            await self._close_now(CloseCode.FORBIDDEN, refused)
            return False
        sub = hello.subscription
        try:
            channel = await self.server.hub.channel((sub.organisation, sub.project, sub.environment))
            if sub.prompt_set is not None:
                await self.server.hub.prompt_set(channel, sub.prompt_set)
        except NoSuchEnvironment as exc:
            await self._close_now(CloseCode.NOT_FOUND, str(exc.detail))
            return False
        except EnvironmentArchived as exc:
            await self._close_now(CloseCode.ENVIRONMENT_ARCHIVED, str(exc.detail))
            return False
        except (RegistryError, Problem) as exc:
            log.warning("could not load %s/%s/%s: %s", sub.organisation, sub.project, sub.environment, exc)
            await self._close_now(CloseCode.INTERNAL_ERROR, "the registry is unavailable; retry later")
            return False
        self.hello, self.channel, self.prompt_set = hello, channel, sub.prompt_set
        self._start(hello)
        return True

    def _start(self, hello: Hello) -> None:
        channel, holds = self.channel, hello.holds
        current = channel.current
        if holds is not None and holds.environment_id == channel.environment_id:
            if channel.knows(holds.revision, holds.manifest_digest):
                self.base = holds.revision
            # Never send below what the client holds (it could only refuse it).
            self.sent = holds.revision
        welcome = Welcome(
            session=self.id,
            environment_id=channel.environment_id,
            environment_name=channel.key[2],
            current=None if current is None else Current(current.number, current.manifest_digest),
            heartbeat_seconds=self.server.settings.heartbeat_seconds,
            max_message_bytes=self.server.settings.max_message_bytes,
        )
        self.server.hub.deliver([self], encode(welcome).decode())
        self.server.hub.attach(self)
        self.server.fleet.connected(self)
        self.server.hub.fanout(channel, [self])

    async def _listen(self) -> None:
        async for data in self.connection:
            try:
                message = self._parse(data)
            except ProtocolError as exc:
                await self._close_now(CloseCode.PROTOCOL_ERROR, str(exc))
                return
            if isinstance(message, Ack):
                self._ack(message)
            elif isinstance(message, Nack):
                self._nack(message)
            elif isinstance(message, Resync):
                self.base = None
                self.server.hub.resync(self)
            else:
                await self._close_now(CloseCode.PROTOCOL_ERROR, "hello was already sent")
                return

    def _was_sent(self, environment_id: str, revision: int, manifest_digest: str) -> bool:
        """Whether this connection was sent that revision (acks and nacks of others are ignored,
        section 4.2); forgets what the channel no longer keeps."""
        self.delivered &= set(self.channel.revisions)
        return (
            environment_id == self.channel.environment_id
            and revision in self.delivered
            and self.channel.knows(revision, manifest_digest)
        )

    def _ack(self, ack: Ack) -> None:
        if not self._was_sent(ack.environment_id, ack.revision, ack.manifest_digest):
            return
        self.base = max(self.base or 0, ack.revision)
        self.server.metrics.acks.inc()
        self.server.fleet.acked(self, ack)

    def _nack(self, nack: Nack) -> None:
        if not self._was_sent(nack.environment_id, nack.revision, nack.manifest_digest):
            return
        self.server.metrics.nacks.labels(reason=nack.code).inc()
        self.server.fleet.nacked(self, nack)

    def after_send(self) -> None:
        """Close a connection that no longer reads (section 5, slow readers)."""
        transport = self.connection.transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        if buffered == 0:
            self.unsent_since = None
        elif buffered > self.server.settings.max_buffer_bytes:
            self.close(CloseCode.TOO_SLOW, "the client does not read fast enough")
        elif self.unsent_since is None:
            self.unsent_since = time.monotonic()

    def close(self, code: int, reason: str) -> None:
        """Close the connection with ``code`` (in the background; idempotent)."""
        if self.closing or self.connection.state is not State.OPEN:
            return
        self.closing = True
        self.server.metrics.closes.labels(code=str(code)).inc()
        self.server.spawn(self.connection.close(code, reason[:123]))

    async def _close_now(self, code: int, reason: str) -> None:
        self.server.metrics.closes.labels(code=str(code)).inc()
        self.closing = True
        with contextlib.suppress(ConnectionClosed):
            await self.connection.close(code, reason[:123])
