"""Processes of the push benchmark: line-driven helper processes (servers, relay, clients), CPU
pinning and what /proc says of a process or of the machine."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness import BENCH

TWO_CPUS = (os.cpu_count() or 1) >= 2
SERVER_CPU, CLIENT_CPU = {0}, {1}  # servers measured on CPU 0; clients, registry, bench on CPU 1


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of a process to ``cpus`` (threads it starts later inherit it)."""
    if TWO_CPUS:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):  # a thread that just ended
                os.sched_setaffinity(int(task.name), cpus)


def sched_seconds(pid: int) -> tuple[float, float]:
    """Time every thread of a process has spent on a CPU, and runnable waiting for one, so far
    (schedstat: nanoseconds, not clock ticks)."""
    running = waiting = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that just ended
            fields = (task / "schedstat").read_text().split()
            running, waiting = running + int(fields[0]), waiting + int(fields[1])
    return running / 1e9, waiting / 1e9


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of a process so far."""
    return sched_seconds(pid)[0]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def settle(pid: int, *, idle: float = 0.02, window: float = 0.5, limit: float = 30.0) -> None:
    """Wait until the process used less than ``idle`` CPU seconds in each of two ``window``s."""
    deadline, quiet = time.monotonic() + limit, 0
    while time.monotonic() < deadline and quiet < 2:
        before = cpu_seconds(pid)
        time.sleep(window)
        quiet = quiet + 1 if cpu_seconds(pid) - before < idle else 0


def _busy_jiffies() -> tuple[int, int]:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def quiet(limit: float = 1.0, window: float = 0.1, busy: float = 0.15) -> float:
    """Wait (at most ``limit`` seconds) for a ``window`` in which the machine's CPUs were less than
    ``busy`` busy, so that a round does not start in the middle of someone else's burst; the wait."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        used, total = _busy_jiffies()
        time.sleep(window)
        used_after, total_after = _busy_jiffies()
        if used_after - used <= busy * max(1, total_after - total):
            break
    return time.monotonic() - started


class Child:
    """A helper process driven by line commands on stdin, answering lines on stdout."""

    def __init__(self, name: str, args: list[str], cpus: set[int], log_dir: Path) -> None:
        self.name = name
        self._stderr = (log_dir / f"{name}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        pin(self.process.pid, cpus)
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def line(self, timeout: float = 120.0) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"{self.name}: no answer within {timeout:.0f} s") from None
        if line is None:
            raise RuntimeError(f"{self.name} exited ({self.process.wait()}); see its log")
        return line

    def ask(self, command: str, timeout: float = 120.0) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.line(timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                assert self.process.stdin is not None
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stderr.close()


class Clients(Child):
    """A push_clients.py process: N connections to one server."""

    def __init__(self, name: str, config: dict[str, Any], log_dir: Path) -> None:
        super().__init__(name, [str(BENCH / "push_clients.py"), json.dumps(config)], CLIENT_CPU, log_dir)
        _, self.connected, seconds, failures = self.line(300).split(" ", 3)
        self.connect_seconds = float(seconds)
        if int(self.connected) != config["n"]:
            raise RuntimeError(f"{name}: {self.connected}/{config['n']} connected; failures {failures}")

    def reach(self, target: int, timeout: float = 120.0) -> dict[str, float]:
        """Set the target and wait for every connection to reach it (to time something, ``arm``,
        start it, then ``wait``)."""
        self.arm(target)
        return self.wait(timeout)

    def arm(self, target: int) -> None:
        if self.ask(f"target {target}") != "ok":
            raise RuntimeError(f"{self.name}: target refused")

    def wait(self, timeout: float = 120.0) -> dict[str, float]:
        try:
            words = self.line(timeout).split()
        except TimeoutError:
            raise TimeoutError(f"{self.name}: target not reached; {self.ask('stats')}") from None
        first, last, received, size, nacks, reads = (float(w) for w in words[1:])
        return {
            "first": first,
            "last": last,
            "received": received,
            "bytes": size,
            "nacks": nacks,
            "reads": reads,
        }
