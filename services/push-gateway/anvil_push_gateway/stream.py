"""``/v1/stream``: the WebSocket endpoint of docs/push-protocol.md, served on the API's port
by the ``websockets`` library directly (transport.py: no ASGI layer per connection, so idle
memory and fan-out cost stay those of a bare ``websockets`` server).

The handshake is checked before any frame (section 4.1): subprotocol, Origin, token, scope,
connections per token, draining; a refusal is an HTTP problem+json answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Coroutine
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from anvil_common.auth import accept_claims
from anvil_common.jwt import Claims, TokenExpired, TokenInvalid
from anvil_wire.push import BEARER_PREFIX, SUBPROTOCOL, CloseCode

from .feed import Revocations
from .fleet.recorder import FleetWriter
from .hub import Hub
from .keys import RegistryKeys
from .metrics import GatewayMetrics
from .sessions import Session
from .settings import GatewaySettings
from .transport import WebSocketEndpoint

__all__ = ["StreamServer", "STREAM_PATH"]

log = logging.getLogger("anvil.push_gateway.stream")
STREAM_PATH = "/v1/stream"
SWEEP_SECONDS = 1.0


def _problem(status: int, code: str, detail: str, **extra: Any) -> Response:
    phrase = HTTPStatus(status).phrase
    body = {"type": f"urn:anvil:problem:{code}", "title": phrase, "status": status, "detail": detail, **extra}
    headers = Headers([("Content-Type", "application/problem+json"), ("Connection", "close")])
    return Response(status, phrase, headers, json.dumps(body).encode())


def _offered(request: Request) -> list[str]:
    return [
        p.strip() for value in request.headers.get_all("Sec-WebSocket-Protocol") for p in value.split(",")
    ]


def _token(request: Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None
    for offered in _offered(request):
        if offered.startswith(BEARER_PREFIX):
            return offered.removeprefix(BEARER_PREFIX)
    return None


class StreamServer:
    def __init__(
        self,
        settings: GatewaySettings,
        hub: Hub,
        keys: RegistryKeys,
        revocations: Revocations,
        fleet: FleetWriter,
        metrics: GatewayMetrics,
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.keys = keys
        self.revocations = revocations
        self.fleet = fleet
        self.metrics = metrics
        self.draining = False
        self._claims: dict[ServerConnection, Claims] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.endpoint = WebSocketEndpoint(
            self._handler,
            process_request=self._process_request,
            subprotocols=[SUBPROTOCOL],
            on_shutdown=self.drain,
            max_size=settings.max_message_bytes,
            ping_interval=settings.heartbeat_seconds,
            ping_timeout=settings.heartbeat_seconds,
        )

    @property
    def protocol_factory(self) -> Any:
        """uvicorn's ``Config(ws=...)``: upgrades on the API's port come here (transport.py)."""
        return self.endpoint.protocol_factory

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def start(self) -> None:
        """Start the slow-reader sweep (the endpoint itself is uvicorn's)."""
        self.spawn(self._sweep())

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        refusal = await self._admit(connection, request)
        if refusal is not None:
            self.metrics.refused.labels(status=str(refusal.status_code)).inc()
        return refusal

    async def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.partition("?")[0] != STREAM_PATH:
            return _problem(404, "not-found", f"no WebSocket endpoint at {request.path.partition('?')[0]}")
        if self.draining:
            return _problem(503, "draining", "this gateway is shutting down; connect to another replica")
        if SUBPROTOCOL not in _offered(request):
            return _problem(400, "unsupported-subprotocol", f"offer the subprotocol {SUBPROTOCOL!r}")
        origin = request.headers.get("Origin")
        allowed = self.settings.allowed_origins
        if origin is not None and "*" not in allowed and origin not in allowed:
            return _problem(403, "origin-not-allowed", f"origin {origin!r} is not allowed")
        token = _token(request)
        if token is None:
            return _problem(401, "invalid-token", "no bearer token (Authorization header or anvil.bearer.*)")
        try:
            claims = await self.keys.verify_token(token)
            accept_claims(claims, revoked=claims.jti in self.revocations)
        except TokenExpired as exc:
            return _problem(401, "token-expired", str(exc.detail))
        except TokenInvalid as exc:
            return _problem(401, "invalid-token", str(exc.detail))
        if not claims.has("config:read"):
            return _problem(
                403, "forbidden", "token lacks the 'config:read' scope", required_scope="config:read"
            )
        if self.hub.connections_of(claims.jti) >= self.settings.max_connections_per_token:
            limit = self.settings.max_connections_per_token
            return _problem(429, "too-many-connections", f"this token holds {limit} connections already")
        self._claims[connection] = claims
        return None

    async def _handler(self, connection: ServerConnection) -> None:
        claims = self._claims.pop(connection)
        await Session(self, connection, claims).run()

    async def _sweep(self) -> None:
        """Close connections that have not taken their data for send_timeout_seconds."""
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            limit = time.monotonic() - self.settings.send_timeout_seconds
            for subscriber in self.hub.all_subscribers():
                since = getattr(subscriber, "unsent_since", None)
                if since is not None and since < limit:
                    subscriber.after_send()  # re-measures: drained meanwhile clears it
                    if getattr(subscriber, "unsent_since", None) is not None:
                        subscriber.close(CloseCode.TOO_SLOW, "the client does not read fast enough")

    async def drain(self) -> None:
        """Refuse new connections and close the open ones with 1012, spread over drain_seconds."""
        self.draining = True
        sessions = self.hub.all_subscribers()
        random.shuffle(sessions)
        spacing = self.settings.drain_seconds / max(1, len(sessions))
        for index, session in enumerate(sessions):
            session.close(CloseCode.SERVICE_RESTART, "gateway restarting; reconnect to another replica")
            if spacing and index + 1 < len(sessions):
                await asyncio.sleep(spacing)

    async def aclose(self) -> None:
        """Close what is still open (1001: stopped without draining) and the background work."""
        for session in self.hub.all_subscribers():
            session.close(CloseCode.GOING_AWAY, "gateway stopped")
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
