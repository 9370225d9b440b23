"""Registry outages for gateway tests: the live registry's app served on a second loopback port
that can be stopped and started again on the SAME port, while the app itself (its database, its
event feed) keeps running behind the first port.

The gateway is pointed at the stoppable port, so stopping it is, for the gateway, the registry
going away (connections refused, the long-poll in flight ended); the seeder keeps publishing
through the other port meanwhile, as a registry replica the gateway cannot reach would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from live_registry import LiveRegistry, start_live_registry
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from anvil_common.testing import TemplateDatabase

__all__ = ["Faults", "RestartableServer", "OutageRegistry", "registry_with_outages"]


class Faults:
    """``app``, except that a request whose path starts with one of ``failing`` gets a 503."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.failing: set[str] = set()
        self.refused = 0  # requests answered 503 so far

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and any(scope["path"].startswith(p) for p in self.failing):
            self.refused += 1
            body = {"type": "urn:anvil:problem:service-unavailable", "status": 503, "detail": "injected"}
            response = Response(json.dumps(body), status_code=503, media_type="application/problem+json")
            await response(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class RestartableServer:
    """``app`` served by uvicorn on one loopback port, stopped and started again on that port."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.port = 0  # chosen by the first start, kept by every later one
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen again (on the same port after the first time)."""
        assert self._server is None, "already running"
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT of the last run
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(self.app, lifespan="off", log_config=None, ws="none"))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        self._server, self._task, self._sock = server, task, sock
        while not server.started:  # uvicorn exposes only a flag
            if task.done():
                await self.stop()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop listening and end every connection (uvicorn's graceful shutdown)."""
        server, task, sock = self._server, self._task, self._sock
        self._server = self._task = self._sock = None
        if server is not None and task is not None:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if sock is not None:
            sock.close()


@dataclass
class OutageRegistry(LiveRegistry):
    """A live registry whose ``url`` (the gateway's) is ``front``: stop it for an outage."""

    front: RestartableServer | None = None
    faults: Faults | None = None

    async def go_away(self) -> None:
        assert self.front is not None
        await self.front.stop()

    async def come_back(self) -> None:
        assert self.front is not None
        await self.front.start()


@contextlib.asynccontextmanager
async def registry_with_outages(
    template: TemplateDatabase, keyset_file: Path, data_dir: Path, *, issuer: str
) -> AsyncIterator[OutageRegistry]:
    """``start_live_registry``'s registry, its ``url`` a stoppable port (with ``faults``), its
    client on the other."""
    async with start_live_registry(template, keyset_file, data_dir, issuer=issuer) as registry:
        faults = Faults(registry.app)
        front = RestartableServer(faults)
        await front.start()
        try:
            yield OutageRegistry(front.url, registry.app, registry.client, registry.snapshot, front, faults)
        finally:
            await front.stop()
