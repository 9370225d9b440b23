"""``/v1/stream`` on uvicorn's own port, served by the ``websockets`` library without ASGI.

Why: FastAPI's WebSocket route (ASGI under uvicorn) holds ~31 KiB per idle connection on this
machine against ~16 KiB for a bare ``websockets`` server (measured at 2,000 and 5,000
connections); this seam keeps the bare figure while clients use one URL for the stream and
the HTTP fallback.

How: uvicorn's HTTP protocol (h11 or httptools), on ``Upgrade: websocket``, calls
``config.ws_protocol_class(config=, server_state=, app_state=)``, feeds it the request head
(``connection_made`` then ``data_received``) and hands it the transport
(``transport.set_protocol``). :meth:`WebSocketEndpoint.protocol_factory` returns a
``websockets`` ``ServerConnection`` (an ``asyncio.Protocol``), so after the upgrade the socket
talks to ``websockets`` directly: handshake, subprotocol, keepalive pings, close handshake and
``broadcast()`` are the library's. Every upgrade reaches this endpoint (the FastAPI app has no
WebSocket routes).

Shutdown: on SIGTERM uvicorn closes its listener and calls ``shutdown()`` on every connection
it tracks (ours register in ``server_state.connections``), then waits for them to go, at most
``timeout_graceful_shutdown``; the first ``shutdown()`` starts ``on_shutdown`` (the staggered
1012 drain).

Internals relied on (pinned in constraints.txt; tests/test_transport.py drives each one
through a real uvicorn): uvicorn — a callable accepted as ``Config(ws=...)``, the call
signature above, ``ServerState.connections`` / ``.tasks`` and the ``shutdown()`` duck type;
websockets — ``ServerConnection(protocol, server, ...)``, ``ServerProtocol``,
``ServerConnection.handshake()`` / ``.start_keepalive()``, and ``Server(create_server, handler,
logger)`` with ``.server``, ``.handler_tasks``, ``.all_connections`` (what
``websockets.asyncio.server.serve`` itself does per connection).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from websockets.asyncio.server import Server, ServerConnection
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

__all__ = ["WebSocketEndpoint"]

Handler = Callable[[ServerConnection], Awaitable[None]]
ProcessRequest = Callable[[ServerConnection, Request], Awaitable[Response | None]]

log = logging.getLogger("anvil.push_gateway.transport")
# websockets logs every connection's opening and closing at INFO: a reconnect storm of 10,000
# clients would write 20,000 lines. Set this logger's level to INFO to see them.
connections_log = logging.getLogger("anvil.push_gateway.connections")
connections_log.setLevel(logging.WARNING)


class _Listener:
    """Stands in for the ``asyncio.Server`` a websockets ``Server`` owns (uvicorn owns ours):
    websockets asks it only whether it is serving (503 to a handshake during shutdown)."""

    sockets: tuple[Any, ...] = ()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._serving = True

    def is_serving(self) -> bool:
        return self._serving

    def close(self) -> None:
        self._serving = False

    async def wait_closed(self) -> None:
        return None

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop


class _NoState:
    def __init__(self) -> None:
        self.connections: set[Any] = set()
        self.tasks: set[Any] = set()


class _Connection(ServerConnection):
    """A ServerConnection that uvicorn also tracks (so that its shutdown waits for it)."""

    uvicorn_state: Any
    endpoint: WebSocketEndpoint

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # schedules the handler task
        self.uvicorn_state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.uvicorn_state.connections.discard(self)
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """Called by uvicorn on every tracked connection when it begins to shut down."""
        self.endpoint.begin_shutdown()


class WebSocketEndpoint:
    def __init__(
        self,
        handler: Handler,
        *,
        process_request: ProcessRequest,
        subprotocols: Sequence[str],
        on_shutdown: Callable[[], Awaitable[None]],
        max_size: int,
        ping_interval: float,
        ping_timeout: float,
        open_timeout: float = 10,
        close_timeout: float = 5,
    ) -> None:
        self.handler = handler
        self.process_request = process_request
        self.subprotocols = [Subprotocol(p) for p in subprotocols]
        self.on_shutdown = on_shutdown
        self.max_size = max_size
        self.open_timeout = open_timeout
        self.options: dict[str, Any] = {
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "close_timeout": close_timeout,
        }
        self._server: Server | None = None
        self._shutdown: asyncio.Task[None] | None = None

    @property
    def server(self) -> Server:
        """The websockets ``Server`` of the running loop (one per loop: tests start several)."""
        loop = asyncio.get_running_loop()
        if self._server is None or self._server.server.get_loop() is not loop:

            async def _uvicorn_listens() -> asyncio.Server:
                raise RuntimeError("uvicorn owns the listening socket")  # never called

            server = Server(_uvicorn_listens, self._handle, connections_log)
            server.server = _Listener(loop)  # type: ignore[assignment]
            self._server = server
        return self._server

    @property
    def connections(self) -> set[ServerConnection]:
        """The open connections."""
        return self._server.connections if self._server is not None else set()

    def protocol_factory(
        self, config: Any = None, server_state: Any = None, app_state: Any = None, **_: Any
    ) -> asyncio.Protocol:
        """What uvicorn's ``Config(ws=...)`` calls for each upgrade request."""
        protocol = ServerProtocol(
            extensions=None,  # no permessage-deflate: one encoding per revision, sent as is
            subprotocols=self.subprotocols,
            max_size=self.max_size,
            logger=connections_log,
        )
        connection = _Connection(protocol, self.server, **self.options)
        connection.uvicorn_state = server_state if server_state is not None else _NoState()
        connection.endpoint = self
        return connection

    def begin_shutdown(self) -> None:
        """Refuse new handshakes (503) and start ``on_shutdown`` once."""
        if self._shutdown is None:
            self.server.server.close()
            self._shutdown = asyncio.ensure_future(self.on_shutdown())

    async def _handle(self, connection: ServerConnection) -> None:
        # uvicorn waits for (and after timeout_graceful_shutdown cancels) the tasks it tracks.
        task = asyncio.current_task()
        tracked: set[Any] = getattr(connection, "uvicorn_state", _NoState()).tasks
        tracked.add(task)
        if task is not None:
            task.add_done_callback(tracked.discard)
        server = self.server
        try:
            async with asyncio.timeout(self.open_timeout):
                await connection.handshake(self.process_request, None, None)
            if connection.protocol.state is not State.OPEN:
                connection.transport.abort()  # refused with an HTTP answer: drop the socket
                return
            server.all_connections.add(connection)
            connection.start_keepalive()
            try:
                async with connection:  # 1000 when the handler returns, 1011 if it raises
                    await self.handler(connection)
            except Exception:
                log.exception("stream handler failed")
            finally:
                server.all_connections.discard(connection)
        except Exception:
            connection.transport.abort()
        finally:
            server.handler_tasks.discard(asyncio.current_task())
