"""WebSocket clients for the push benchmark (bench/push_bench.py): one process holds N connections.

``python bench/push_clients.py '<json config>'``, then line commands on stdin, answers on stdout:

- ``target K`` → ``ok``; later ``done <t_first> <t_last> <t_recv_first> <bytes> <nacks> <reads>``
  once every open connection reached K (wall-clock ``time.time()``, comparable across processes;
  ``reads``: socket reads since the target was set);
- ``stats`` → one JSON line; ``quit``.

Two kinds of client, both over raw asyncio sockets (a hand-written RFC 6455 client reading into
one shared buffer: it costs far less CPU per connection than a full client library, so the
clients measure the server, not themselves):

- ``light``: counts data frames without decoding them (payloads are skipped, never copied).
  K is a message count; t is when a connection's K-th message was complete.
- ``full``: the real apply path of docs/push-protocol.md section 3.3: parse the message
  (``anvil_wire.push.parse_server_message``), verify it with the registry's keys
  (``verify_message``: signature, environment, digests; deltas rebuilt on what is held), check
  the anti-rollback floor, apply (swap what is held), then send ``ack`` (``nack`` and ``resync``
  on refusal). K is a revision; t is when the ack was written.

Every connection sends ``hello`` right after the handshake. Connections come from 127.0.0.1 …
127.0.0.<sources> so that 10,000 of them do not run out of ephemeral ports.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import os
import resource
import sys
import time
import uuid
from collections.abc import Mapping
from typing import Any

from anvil_wire import public_keys_from_jwks
from anvil_wire.push import (
    SUBPROTOCOL,
    Ack,
    Delta,
    Hello,
    Nack,
    ProtocolError,
    PushRefused,
    Resync,
    Sdk,
    Snapshot,
    Subscription,
    encode,
    parse_server_message,
    verify_message,
)

OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 1, 8, 9, 10


def frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (masked, as RFC 6455 requires; the all-zero key leaves the bytes as they are)."""
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | opcode, 0x80 | size])
    elif size < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + size.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


class Fleet:
    """Every connection of this process and the current target."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.full = config["mode"] == "full"
        self.keys = public_keys_from_jwks(config["jwks"]) if self.full else {}
        self.conns: list[Connection] = []
        self.open = 0
        self.codes: collections.Counter[int] = collections.Counter()
        self.nacks: collections.Counter[str] = collections.Counter()
        self.applied: collections.Counter[str] = collections.Counter()  # per message type
        self.apply_seconds: dict[str, float] = collections.defaultdict(float)  # parse + verify + ack
        self.target: int | None = None
        self.reached = 0
        self.first = self.last = self.recv_first = 0.0
        self.size = 0
        self.reads = 0  # data_received calls: how finely the server's bytes arrive

    def hello(self) -> bytes:
        sub = self.config["subscription"]
        message = Hello(
            client_id=str(uuid.uuid4()),
            sdk=Sdk(name="anvil-push-bench", version="1.0"),
            subscription=Subscription(sub["organisation"], sub["project"], sub["environment"], None),
            labels={"bench": self.config["mode"]},
        )
        return encode(message)

    def set_target(self, target: int) -> None:
        self.target, self.reached, self.reads = target, 0, 0
        self.first = self.last = self.recv_first = 0.0
        for conn in self.conns:
            if not conn.closed and conn.progress >= target:
                self.reach(conn.done_at, conn.recv_at, conn.size)
        out("ok")
        self.check()

    def reach(self, at: float, received: float, size: int) -> None:
        self.reached += 1
        self.first = at if not self.first else min(self.first, at)
        self.recv_first = received if not self.recv_first else min(self.recv_first, received)
        self.last, self.size = max(self.last, at), size

    def progressed(self, conn: Connection, before: int) -> None:
        if self.target is not None and before < self.target <= conn.progress:
            self.reach(conn.done_at, conn.recv_at, conn.size)
            self.check()

    def check(self) -> None:
        if self.target is not None and self.reached >= self.open:
            times = f"{self.first:.6f} {self.last:.6f} {self.recv_first:.6f}"
            out(f"done {times} {self.size} {sum(self.nacks.values())} {self.reads}")
            self.target = None

    def stats(self) -> dict[str, Any]:
        progress = [c.progress for c in self.conns if not c.closed]
        return {
            "open": self.open,
            "codes": dict(self.codes),
            "nacks": dict(self.nacks),
            "progress_min": min(progress, default=None),
            "progress_max": max(progress, default=None),
            "applied": dict(self.applied),
            "apply_ms_each": {k: round(v * 1000 / self.applied[k], 3) for k, v in self.apply_seconds.items()},
        }


# Every connection reads into this one buffer (asyncio.BufferedProtocol: recv_into, no bytes
# object per read) and is done with it before the loop reads again: a 100 KiB frame read in one
# piece otherwise costs the client far more than the server (a fresh 256 KiB allocation a read).
READ_BUFFER = memoryview(bytearray(256 * 1024))


class Connection(asyncio.BufferedProtocol):
    """One WebSocket connection: handshake, frame loop, pings answered, messages counted or applied."""

    def __init__(self, fleet: Fleet, opened: asyncio.Future[str]) -> None:
        self.fleet, self.opened = fleet, opened
        self.transport: asyncio.Transport | None = None
        self.handshaking, self.closed = True, False
        self.pending = b""  # an incomplete frame header (or control frame)
        self.remaining, self.final = 0, True  # payload bytes of the current data frame still to come
        self.payload = bytearray()
        self.size = 0
        self.progress = 0  # light: messages received; full: the revision applied
        self.done_at = self.recv_at = 0.0
        self.held: tuple[int, Mapping[str, Any]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame(opcode, payload))

    def get_buffer(self, sizehint: int) -> memoryview:
        return READ_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        self.fleet.reads += 1
        data: bytes | memoryview = READ_BUFFER[:nbytes]
        if self.pending:
            data, self.pending = self.pending + data, b""
        if self.handshaking:
            head, sep, rest = bytes(data).partition(b"\r\n\r\n")
            if not sep:
                self.pending = head
                return
            self._handshake(head.decode("latin-1"))
            data = rest
        self._frames(data)

    def _handshake(self, head: str) -> None:
        status = head.split("\r\n", 1)[0]
        if (
            not status.startswith("HTTP/1.1 101")
            or f"sec-websocket-protocol: {SUBPROTOCOL}" not in head.lower()
        ):
            self.opened.set_result(status)
            assert self.transport is not None
            self.transport.close()
            return
        self.handshaking = False
        self.fleet.open += 1
        self.send(OP_TEXT, self.fleet.hello())
        self.opened.set_result("")

    def _frames(self, data: bytes | memoryview) -> None:
        view, pos, end = memoryview(data), 0, len(data)
        while pos < end:
            if self.remaining:
                take = min(self.remaining, end - pos)
                if self.fleet.full:
                    self.payload += view[pos : pos + take]
                self.remaining -= take
                self.size += take
                pos += take
                if not self.remaining and self.final:
                    self._message()
                continue
            after = self._header(view, pos, end)
            if after < 0:
                self.pending = bytes(view[pos:])
                return
            pos = after

    def _header(self, view: memoryview, pos: int, end: int) -> int:
        """Read one frame header at ``pos`` (a control frame whole); where it ends, -1 if incomplete."""
        if end - pos < 2:
            return -1
        b0, b1 = view[pos], view[pos + 1]
        opcode, length, start = b0 & 0x0F, b1 & 0x7F, pos + 2
        if length >= 126:
            width = 2 if length == 126 else 8
            if end - start < width:
                return -1
            length, start = int.from_bytes(view[start : start + width], "big"), start + width
        if opcode >= 8:
            if end - start < length:
                return -1
            self._control(opcode, bytes(view[start : start + length]))
            return start + length
        if opcode:  # a new message (0 continues the current one)
            self.size = 0
        self.final, self.remaining = bool(b0 & 0x80), length
        if not length and self.final:
            self._message()
        return start

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self.send(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.fleet.codes[code] += 1
            self.send(OP_CLOSE, payload[:2])
            assert self.transport is not None
            self.transport.close()

    def _message(self) -> None:
        before, now = self.progress, time.time()
        if not self.fleet.full:
            self.progress += 1
            self.done_at = self.recv_at = now
        else:
            text = self.payload.decode()
            self.payload = bytearray()
            self._apply(text, now)
        self.fleet.progressed(self, before)

    def _apply(self, text: str, received: float) -> None:
        fleet, started = self.fleet, time.perf_counter()
        try:
            message = parse_server_message(text)
        except ProtocolError as exc:
            fleet.nacks[f"unparsable: {exc}"[:60]] += 1
            return
        if not isinstance(message, Snapshot | Delta):
            return  # welcome
        try:
            verified = verify_message(
                message, fleet.keys, environment_id=fleet.config["environment_id"], held=self.held
            )
            if message.revision <= self.progress:
                raise PushRefused("rollback", f"revision {message.revision} is at or below the floor")
        except PushRefused as exc:
            fleet.nacks[exc.code] += 1
            self.send(OP_TEXT, encode(Nack.of(message, exc.code, exc.detail)))
            if exc.code in ("base-mismatch", "digest-mismatch"):
                self.send(OP_TEXT, encode(Resync()))
            return
        self.held = (message.revision, verified.contents)  # applied: one swap
        self.send(OP_TEXT, encode(Ack.of(message)))
        self.progress, self.recv_at, self.done_at = message.revision, received, time.time()
        fleet.applied[message.type] += 1
        fleet.apply_seconds[message.type] += time.perf_counter() - started

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_result(f"lost: {exc}")
        if not self.handshaking and not self.closed:
            self.fleet.open -= 1
            self.closed = True
            self.fleet.check()


async def connect_one(fleet: Fleet, index: int) -> str:
    """Open connection ``index``; '' when the handshake succeeded, else why not."""
    config = fleet.config
    loop = asyncio.get_running_loop()
    opened: asyncio.Future[str] = loop.create_future()
    source = f"127.0.0.{1 + index % config['sources']}"
    transport, conn = await loop.create_connection(
        lambda: Connection(fleet, opened), config["host"], config["port"], local_addr=(source, 0)
    )
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {config['path']} HTTP/1.1",
        f"Host: {config['host']}:{config['port']}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        f"Sec-WebSocket-Protocol: {SUBPROTOCOL}",
    ]
    if config.get("token"):
        lines.append(f"Authorization: Bearer {config['token']}")
    transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    failure = await opened
    if not failure:
        fleet.conns.append(conn)
    return failure


async def connect_all(fleet: Fleet) -> None:
    started = time.monotonic()
    gate = asyncio.Semaphore(fleet.config.get("concurrency", 200))
    failures: collections.Counter[str] = collections.Counter()

    async def one(index: int) -> None:
        async with gate:
            try:
                failure = await asyncio.wait_for(connect_one(fleet, index), 60)
            except (OSError, TimeoutError) as exc:
                failure = repr(exc)[:80]
            if failure:
                failures[failure] += 1

    await asyncio.gather(*(one(i) for i in range(fleet.config["n"])))
    out(f"connected {len(fleet.conns)} {time.monotonic() - started:.2f} {json.dumps(dict(failures))}")


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main() -> None:
    config = json.loads(sys.argv[1])
    fleet = Fleet(config)
    await connect_all(fleet)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = line.decode().split()
        if not command:
            continue
        if command[0] == "target":
            fleet.set_target(int(command[1]))
        elif command[0] == "stats":
            out(json.dumps(fleet.stats()))
        elif command[0] == "quit":
            break
    for conn in fleet.conns:
        if conn.transport is not None:
            conn.transport.abort()


if __name__ == "__main__":
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main())
