"""Helper processes of the push benchmark (bench/push_bench.py), driven by line commands on stdin.

``python bench/push_servers.py bare --port P`` — the baseline: a bare ``websockets`` server
(``websockets.asyncio.server.serve``, no compression, subprotocol ``anvil.push.v1``, the
library's default keepalive as the gateway's) whose handler only reads what clients send.
Commands: ``load PATH`` (the frame to send, read once) → ``ok``; ``bcast`` →
``<t0> <t1>``: ``time.time()`` just before ``websockets.broadcast(server.connections, frame)``
and after it returned; ``count`` → open connections.

``python bench/push_servers.py proxy --port P --upstream U`` — a TCP relay in front of the
registry for the gateway, which notes when the answer to each ``GET …/revisions/N/document``
was last written to the gateway: the moment the gateway has revision N (its fan-out starts
there: parse, verify, encode, send). Commands: ``doc N`` → that time, or ``none``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import resource
import sys
import time
from pathlib import Path

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

SUBPROTOCOL = "anvil.push.v1"
DOCUMENT = re.compile(rb"^GET \S*/revisions/(\d+)/document[ ?]")


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def commands() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def _reader(connection: ServerConnection) -> None:
    with contextlib.suppress(ConnectionClosed):  # clients leave by dropping their sockets
        async for _ in connection:  # hello, acks: read and dropped
            pass


async def bare(port: int) -> None:
    frame = ""
    async with serve(
        _reader,
        "127.0.0.1",
        port,
        compression=None,
        subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        server_header=None,
        backlog=2048,
    ) as server:
        out("ready")
        reader = await commands()
        while line := await reader.readline():
            command = line.decode().split()
            if command[0] == "load":
                frame = await asyncio.to_thread(Path(command[1]).read_text)
                out("ok")
            elif command[0] == "bcast":
                started = time.time()
                broadcast(server.connections, frame)
                out(f"{started:.6f} {time.time():.6f}")
            elif command[0] == "count":
                out(str(len(server.connections)))


class Relay:
    """Forwards the gateway's connections to the registry, timing revision documents."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.documents: dict[int, float] = {}

    async def handle(self, down_reader: asyncio.StreamReader, down_writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        current: list[int | None] = [None]  # the revision whose document this connection asked for last

        async def requests() -> None:
            while data := await down_reader.read(65536):
                match = DOCUMENT.match(data)
                current[0] = int(match.group(1)) if match else None
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def answers() -> None:
            while data := await up_reader.read(262144):
                down_writer.write(data)
                if current[0] is not None:
                    self.documents[current[0]] = time.time()
                await down_writer.drain()
            down_writer.close()

        await asyncio.gather(requests(), answers(), return_exceptions=True)


async def proxy(port: int, upstream: str) -> None:
    host, _, upstream_port = upstream.rpartition(":")
    relay = Relay((host, int(upstream_port)))
    server = await asyncio.start_server(relay.handle, "127.0.0.1", port)
    async with server:
        out("ready")
        reader = await commands()
        while line := await reader.readline():
            command = line.decode().split()
            if command[0] == "doc":
                at = relay.documents.get(int(command[1]))
                out("none" if at is None else f"{at:.6f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=("bare", "proxy"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", help="host:port of the registry (proxy)")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(bare(args.port) if args.kind == "bare" else proxy(args.port, args.upstream))


if __name__ == "__main__":
    main()
