"""Plumbing for the benchmarks: server processes, the load generator, request bytes, statistics."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import pickle
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
HOST = "127.0.0.1"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Server:
    """One server process started from bench/servers.py; stopped with SIGINT, then SIGKILL."""

    def __init__(self, kind: str, port: int, log_dir: Path, *args: str) -> None:
        self.kind, self.port = kind, port
        self.log_path = log_dir / f"{kind}-{port}.log"
        self._log = self.log_path.open("wb")
        command = [sys.executable, str(BENCH / "servers.py"), kind, "--port", str(port), *args]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def wait_ready(self, path: str | None = "/livez", timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited:\n{self.log_tail()}")
            if port_open(HOST, self.port, timeout=0.2):
                if path is None:
                    return
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(self.url + path, timeout=2.0).status_code == 200:
                        return
            time.sleep(0.1)
        raise RuntimeError(f"{self.kind} server not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@contextlib.contextmanager
def running(
    kind: str, port: int, log_dir: Path, *args: str, ready: str | None = "/livez"
) -> Iterator[Server]:
    server = Server(kind, port, log_dir, *args)
    try:
        server.wait_ready(ready)
        yield server
    finally:
        server.stop()


def loadgen(job: dict[str, Any]) -> dict[str, Any]:
    """Run one load-generator job in its own process and return its result."""
    timeout = 120 + job.get("warmup", 0) + (job.get("duration") or 0)
    done = subprocess.run(
        [sys.executable, str(BENCH / "loadgen.py")],
        input=pickle.dumps(job),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{done.stderr.decode(errors='replace')[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def http_request(
    method: str,
    port: int,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: Any = None,
) -> bytes:
    """The bytes of one HTTP/1.1 keep-alive request (JSON body when ``body`` is given)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}", "User-Agent: anvil-bench"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    payload = b""
    if body is not None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def raw_response(port: int, request: bytes) -> bytes:
    """One complete response, raw bytes (headers included), as the server sent it."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            body += sock.recv(65536)
        return head + b"\r\n\r\n" + body


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def machine_info(versions: dict[str, str]) -> dict[str, Any]:
    """CPUs, Python, platform, the server stack and the databases' versions."""
    import uvicorn

    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "uvicorn": uvicorn.__version__,
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "http": "httptools" if importlib.util.find_spec("httptools") else "h11",
        "databases": versions,
    }
