"""A minimal HTTP/1.1 keep-alive load generator on raw asyncio streams.

Run as its own process (``python bench/loadgen.py``): it reads one pickled job from stdin and
prints one JSON result. Requests are precomputed bytes. Each connection sends a request and
reads the whole response before sending the next (no pipelining), so N connections behave
like N sequential keep-alive clients. Responses must carry Content-Length (or be 304/204).

Jobs:
* ``rate``: ``connections`` clients repeat one request; responses completed inside the
  measurement window (after ``warmup`` seconds, for ``duration`` seconds) are counted. The
  process's own CPU time over the window is reported too: a client near 100 % CPU is the
  bottleneck, whatever the server could do.
* ``sequence``: one connection sends ``requests`` in order; the first ``warmup`` are not
  recorded; per-request latency (write to last body byte) is recorded until ``duration``
  seconds have been measured or the requests run out.

With ``server_pid`` (Linux), both report the server process's CPU seconds (all its threads) per
measured request, a figure other processes competing for the cores disturb far less than
wall-clock rates, and ``others_cpu``: how many cores everything except the server and this
client kept busy meanwhile (other processes, the hypervisor's steal; also a Postgres backend).
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import re
import resource
import sys
import time
from collections import Counter
from typing import Any

_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:", re.IGNORECASE)


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one response; return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    match = _LENGTH.search(head)
    if match is not None:
        length = int(match.group(1))
        if length:
            await reader.readexactly(length)
    elif _CHUNKED.search(head) or status not in (204, 304):
        raise ValueError(f"response without Content-Length: {head[:200]!r}")
    return status


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _process_cpu(pid: int | None) -> float | None:
    """user + system CPU seconds of a process (every thread), or None where /proc is missing."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    # After the command name: state is field 3, utime 14 and stime 15 (proc(5)).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> float | None:
    """CPU seconds all cores spent busy (or stolen) since boot, or None where /proc is missing."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class _Window:
    """CPU readings at the start and end of a measurement window."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.start = self._read()

    def _read(self) -> tuple[float, float | None, float | None, float]:
        return (_cpu_seconds(), _process_cpu(self.server_pid), _machine_busy(), time.perf_counter())

    def close(self, count: int) -> dict[str, float | None]:
        client0, server0, busy0, time0 = self.start
        client1, server1, busy1, time1 = self._read()
        elapsed, client = time1 - time0, client1 - client0
        server = server1 - server0 if server0 is not None and server1 is not None else None
        others = None
        if busy0 is not None and busy1 is not None and server is not None:
            others = max(0.0, (busy1 - busy0 - client - server) / elapsed)
        return {
            "client_cpu": client / elapsed,
            "server_cpu_per_request": server / count if server is not None and count else None,
            "others_cpu": others,
        }


async def run_rate(job: dict[str, Any]) -> dict[str, Any]:
    request: bytes = job["request"]
    start = time.perf_counter()
    window_start = start + job["warmup"]
    window_end = window_start + job["duration"]
    statuses: Counter[int] = Counter()
    cpu: dict[str, float | None] = {}

    async def client() -> None:
        reader, writer = await asyncio.open_connection(job["host"], job["port"])
        try:
            while True:
                writer.write(request)
                status = await read_response(reader)
                now = time.perf_counter()
                if now >= window_end:
                    return
                if now >= window_start:
                    statuses[status] += 1
        finally:
            writer.close()

    async def cpu_probe() -> None:
        await asyncio.sleep(window_start - time.perf_counter())
        window = _Window(job.get("server_pid"))
        await asyncio.sleep(window_end - time.perf_counter())
        cpu.update(window.close(sum(statuses.values())))

    await asyncio.gather(cpu_probe(), *(client() for _ in range(job["connections"])))
    completed = sum(statuses.values())
    return {
        "completed": completed,
        "rate": completed / job["duration"],
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        **cpu,
    }


async def run_sequence(job: dict[str, Any]) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection(job["host"], job["port"])
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    measured_since: float | None = None
    window: _Window | None = None
    exhausted = True
    try:
        for index, request in enumerate(job["requests"]):
            sent = time.perf_counter()
            writer.write(request)
            status = await read_response(reader)
            done = time.perf_counter()
            if index < job["warmup"]:
                continue
            if measured_since is None:
                measured_since, window = sent, _Window(job.get("server_pid"))
            latencies.append(done - sent)
            statuses[status] += 1
            if job.get("duration") and done - measured_since >= job["duration"]:
                exhausted = False
                break
    finally:
        writer.close()
    # The window opens after the first measured response: count one request fewer.
    cpu = window.close(len(latencies) - 1) if window is not None else {}
    return {
        "latencies": latencies,
        **cpu,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "exhausted": exhausted and bool(job.get("duration")),
    }


def main() -> int:
    job = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 - written by our own parent process
    runner = run_rate if job["mode"] == "rate" else run_sequence
    result = asyncio.run(runner(job))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
