"""`make run`: the whole Anvil stack on one machine, as separate processes, until Ctrl-C.

Starts the registry (migrated, demo seeded), the bundle worker (API and job loop), the push
gateway and a demo app embedding the runtime SDK, each a process of its own with its log in
``<data_dir>/logs/``; prints the URLs and tokens; shows what the demo client receives. Ctrl-C
(SIGINT or SIGTERM) stops everything, the client first and the registry last. On the embedded
SQLite default in ``.anvil``; with ``ANVIL_DATABASE_URL=postgresql+asyncpg://...`` on Postgres
(a schema per service).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx

ROOT = Path(__file__).resolve().parent.parent
READY_SECONDS = 90.0
STOP_SECONDS = 15.0
DEMO = {"org": "demo", "project": "support", "environment": "prod", "prompt": "support/greeting"}


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


class Stack:
    """The processes of the stack, started in order and stopped in reverse."""

    def __init__(self) -> None:
        self.data = Path(os.environ.get("ANVIL_DATA_DIR", ".anvil")).resolve()
        self.logs = self.data / "logs"
        self.children: list[Child] = []
        self.ports = {
            "registry": int(os.environ.get("ANVIL_REGISTRY_PORT", "8000")),
            "worker": int(os.environ.get("ANVIL_BUNDLE_WORKER_PORT", "8010")),
            "gateway": int(os.environ.get("ANVIL_PUSH_GATEWAY_PORT", "8020")),
        }
        self.urls = {name: f"http://127.0.0.1:{port}" for name, port in self.ports.items()}

    def env(self) -> dict[str, str]:
        registry = os.environ.get("ANVIL_REGISTRY_PUBLIC_URL", self.urls["registry"])
        return {
            **os.environ,
            "ANVIL_DATA_DIR": str(self.data),
            "ANVIL_LOG_JSON": os.environ.get("ANVIL_LOG_JSON", "false"),
            "ANVIL_REGISTRY_PORT": str(self.ports["registry"]),
            "ANVIL_REGISTRY_PUBLIC_URL": registry,
            "ANVIL_BUNDLE_WORKER_PORT": str(self.ports["worker"]),
            "ANVIL_BUNDLE_WORKER_PUBLIC_URL": self.urls["worker"],
            "ANVIL_BUNDLE_WORKER_REGISTRY_URL": self.urls["registry"],
            "ANVIL_BUNDLE_WORKER_ALLOW_INSECURE_PEERS": "true",
            "ANVIL_PUSH_GATEWAY_PORT": str(self.ports["gateway"]),
            "ANVIL_PUSH_GATEWAY_REGISTRY_URL": self.urls["registry"],
            "ANVIL_PUSH_GATEWAY_REGISTRY_PUBLIC_URL": registry,
            "ANVIL_PUSH_GATEWAY_REGISTRY_TOKEN_FILE": str(self.data / "admin.token"),
            "ANVIL_PUSH_GATEWAY_DRAIN_SECONDS": os.environ.get("ANVIL_PUSH_GATEWAY_DRAIN_SECONDS", "1"),
        }

    # -- processes -----------------------------------------------------------------------------

    def command(self, name: str, *args: str) -> None:
        """Run a one-shot command (a migration) to its end; exit with its log if it fails."""
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            code = subprocess.call([sys.executable, *args], env=self.env(), stdout=out, stderr=out)
        if code != 0:
            tail = log.read_text(errors="replace")[-2000:]
            sys.exit(f"make run: {name} failed (exit {code}); see {log}:\n{tail}")

    def spawn(self, name: str, *args: str, show: bool = False) -> Child:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            # A session of its own: the terminal's Ctrl-C reaches this script, which stops the
            # children in order, rather than every process at once.
            popen = subprocess.Popen(
                [sys.executable, *args],
                env=self.env(),
                stdout=None if show else out,
                stderr=out,
                start_new_session=True,
            )
        child = Child(name, popen, log)
        self.children.append(child)
        (self.data / "stack.pids").write_text("".join(f"{c.popen.pid}\n" for c in self.children))
        return child

    def wait_ready(self, child: Child, url: str) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if child.popen.poll() is not None:
                self.fail(f"{child.name} exited (code {child.popen.returncode}):\n{child.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        self.fail(f"{child.name} not ready after {READY_SECONDS:.0f} s:\n{child.tail()}")

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.popen.poll() is None:
                child.popen.terminate()
                try:
                    child.popen.wait(timeout=STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    child.popen.kill()
                    child.popen.wait()
        with contextlib.suppress(OSError):
            (self.data / "stack.pids").unlink()

    def fail(self, message: str) -> None:
        self.stop()
        sys.exit(f"make run: {message}")

    # -- the stack -----------------------------------------------------------------------------

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        registry = self.spawn("registry", "-m", "anvil_registry", "run", "--seed-demo")
        self.wait_ready(registry, self.urls["registry"])
        self.command("bundle-worker-migrate", "-m", "anvil_bundle_worker", "migrate")
        worker = self.spawn("bundle-worker-api", "-m", "anvil_bundle_worker", "api")
        self.spawn("bundle-worker", "-m", "anvil_bundle_worker", "work")
        self.command("push-gateway-migrate", "-m", "anvil_push_gateway", "migrate")
        gateway = self.spawn("push-gateway", "-m", "anvil_push_gateway", "serve")
        self.wait_ready(worker, self.urls["worker"])
        self.wait_ready(gateway, self.urls["gateway"])
        client_token = self.client_token()
        self.print_banner(client_token)
        self.spawn(
            "demo-client",
            str(ROOT / "scripts" / "demo_client.py"),
            self.urls["gateway"],
            self.urls["registry"],
            str(client_token),
            str(self.data / "demo-client"),
            show=True,
        )

    def client_token(self) -> Path:
        """A client token of the demo environment, issued once and kept in the data directory."""
        path = self.data / "demo-client.token"
        admin = (self.data / "admin.token").read_text().strip()
        response = httpx.post(
            f"{self.urls['registry']}/v1/tokens",
            headers={"Authorization": f"Bearer {admin}"},
            json={
                "kind": "client",
                "name": "demo-app",
                "org": DEMO["org"],
                "project": DEMO["project"],
                "environment": DEMO["environment"],
            },
            timeout=10,
        )
        if response.status_code != 201:
            self.fail(f"cannot issue the demo client's token: {response.status_code} {response.text}")
        path.write_text(response.json()["token"] + "\n")
        path.chmod(0o600)
        return path

    def print_banner(self, client_token: Path) -> None:
        database = os.environ.get("ANVIL_DATABASE_URL") or f"SQLite in {self.data}"
        if "@" in database:  # never print a password
            scheme, _, rest = database.partition("://")
            database = f"{scheme}://…@{rest.rpartition('@')[2]}"
        gateway = self.urls["gateway"]
        where = f"{DEMO['org']}/{DEMO['project']}/{DEMO['environment']}"
        print(
            "\n".join(
                [
                    "",
                    f"Anvil is running ({database}); Ctrl-C stops everything.",
                    f"  registry       {self.urls['registry']}   (API docs {self.urls['registry']}/docs)",
                    f"  bundle worker  {self.urls['worker']}   (and its job loop)",
                    f"  push gateway   {gateway}   (WebSocket {gateway.replace('http', 'ws')}/v1/stream)",
                    f"  admin token    {self.data / 'admin.token'}",
                    f"  demo client    subscribed to {where}, token {client_token}",
                    f"  logs           {self.logs}/",
                    "",
                    "In another terminal (README, 'A tour'):",
                    '  export PATH="$PWD/.venv/bin:$PATH"',
                    f"  anvil login --url {self.urls['registry']} --worker-url {self.urls['worker']} "
                    f"--gateway-url {gateway} "
                    f"--token - < {self.data / 'admin.token'}",
                    f"  anvil context set --org {DEMO['org']} --project {DEMO['project']}",
                    "  anvil fleet --watch",
                    "",
                ]
            ),
            flush=True,
        )

    def watch(self) -> None:
        """Until a signal: a child that dies takes the stack down with its log."""
        while True:
            for child in self.children:
                if child.popen.poll() is not None:
                    self.fail(f"{child.name} stopped (code {child.popen.returncode}):\n{child.tail()}")
            time.sleep(0.5)


def main() -> int:
    stack = Stack()

    def stop(signum: int, frame: FrameType | None) -> None:
        print("\nmake run: stopping (client, gateway, bundle worker, registry)…", flush=True)
        stack.stop()
        print("make run: stopped.", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        stack.start()
        stack.watch()
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
