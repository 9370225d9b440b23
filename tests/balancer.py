"""A TCP load balancer on loopback for cross-service tests: what a Kubernetes Service is to the
gateway replicas. Each new connection goes to the next backend in turn that accepts it; bytes
are copied both ways until either side closes. It runs its own event loop on a thread, so
blocking tests and threaded clients can use it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Iterator

__all__ = ["Balancer", "balancer"]


class Balancer:
    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self._turn = itertools.count()
        self.port = 0
        self.connections: list[int] = []  # the backend port of each connection, in order
        self._writers: set[asyncio.StreamWriter] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = next(self._turn)
        for i in range(len(self.backends)):
            port = self.backends[(first + i) % len(self.backends)]
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            self.connections.append(port)
            self._writers |= {writer, up_writer}
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
            return
        writer.close()  # no backend accepts: the client sees the connection refused-ish

    async def _serve(self, ready: threading.Event, stop: asyncio.Event) -> None:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        async with server:
            await stop.wait()
            for writer in self._writers:
                with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                    writer.close()
            await asyncio.sleep(0.1)  # let the pipes see the close and end


@contextlib.contextmanager
def balancer(backends: list[int]) -> Iterator[Balancer]:
    """A running balancer over the loopback ``backends`` ports; stopped on exit."""
    lb = Balancer(backends)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(lb._serve(ready, stop),), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield lb
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
