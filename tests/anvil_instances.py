"""Whole Anvil instances for cross-service tests: a registry, a bundle-worker API and a worker
loop, each a real process on its own loopback port, with the instance's own database (a SQLite
data directory, or a Postgres database created for it and dropped afterwards) and its own
signing keys; push-gateway replicas on demand (``instance.start_gateway("g1")``), sharing the
instance's gateway database.

    with Instance.start(tmp_path / "a", "a") as a, Instance.start(tmp_path / "b", "b") as b:
        a.registry.post("/v1/orgs", json=...)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from anvil_common.testing import backend, postgres_url

__all__ = ["Instance", "database_url", "free_port", "scratch_database"]

STARTUP_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _admin_sql(statement: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(postgres_url()))
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def database_url(name: str) -> str:
    """The SQLAlchemy URL of database ``name`` on the test Postgres server."""
    base, _, _ = postgres_url().rpartition("/")
    return f"{base}/{name}"


@contextlib.contextmanager
def scratch_database(prefix: str) -> Iterator[str | None]:
    """On Postgres, a database made for the test (its name), dropped afterwards; None on SQLite."""
    if backend() != "postgres":
        yield None
        return
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    _admin_sql(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def kill(self) -> None:
        """SIGKILL: a crash, nothing cleaned up."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


@dataclass
class Instance:
    """One Anvil instance: registry + bundle-worker API + one worker loop, as real processes."""

    name: str
    root: Path
    registry_port: int = field(default_factory=free_port)
    worker_port: int = field(default_factory=free_port)
    database: str | None = None  # the Postgres database made for this instance
    admin_token: str = ""  # the registry's bootstrap token: instance-wide, every service
    processes: list[_Process] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def registry_url(self) -> str:
        return f"http://127.0.0.1:{self.registry_port}"

    @property
    def worker_url(self) -> str:
        return f"http://127.0.0.1:{self.worker_port}"

    @property
    def keys_file(self) -> Path:
        return self.root / "registry" / "keys" / "instance.json"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANVIL_")}
        env.update(
            {
                "ANVIL_REGISTRY_DATA_DIR": str(self.root / "registry"),
                "ANVIL_REGISTRY_PORT": str(self.registry_port),
                "ANVIL_REGISTRY_PUBLIC_URL": self.registry_url,
                "ANVIL_BUNDLE_WORKER_DATA_DIR": str(self.root / "worker"),
                "ANVIL_BUNDLE_WORKER_PORT": str(self.worker_port),
                "ANVIL_BUNDLE_WORKER_PUBLIC_URL": self.worker_url,
                "ANVIL_BUNDLE_WORKER_REGISTRY_URL": self.registry_url,
                "ANVIL_BUNDLE_WORKER_KEYS_FILE": str(self.keys_file),
                "ANVIL_BUNDLE_WORKER_POLL_SECONDS": "0.1",
                "ANVIL_BUNDLE_WORKER_ALLOW_INSECURE_PEERS": "true",
                "ANVIL_LOG_JSON": "false",
            }
        )
        if self.database is not None:
            env["ANVIL_DATABASE_URL"] = database_url(self.database)
        env.update(self.extra_env)
        return env

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def start(cls, root: Path, name: str, **extra_env: str) -> Iterator[Instance]:
        instance = cls(name=name, root=root, extra_env=extra_env)
        root.mkdir(parents=True, exist_ok=True)
        with scratch_database(f"anvil_{name}") as database:
            instance.database = database
            try:
                instance._boot()
                yield instance
            finally:
                for process in reversed(instance.processes):
                    process.stop()

    def _command(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            [sys.executable, *args],
            env=self.env() | (env or {}),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{self.name}: {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> _Process:
        """Another process of this instance (``python *args``, this instance's environment)."""
        return self._spawn(name, *args, env=env)

    def _spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> _Process:
        log = self.root / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, *args], env=self.env() | (env or {}), stdout=out, stderr=subprocess.STDOUT
            )
        process = _Process(name, popen, log)
        self.processes.append(process)
        return process

    def _wait_ready(self, process: _Process, url: str, probe: str = "/readyz") -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                raise RuntimeError(f"{self.name}/{process.name} exited:\n{process.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}{probe}", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(
            f"{self.name}/{process.name} not ready after {STARTUP_SECONDS}s:\n{process.tail()}"
        )

    def _boot(self) -> None:
        self._command("-m", "anvil_registry", "migrate")
        self.admin_token = self._command("-m", "anvil_registry", "issue-admin-token").strip().splitlines()[-1]
        registry = self._spawn("registry", "-m", "anvil_registry", "serve")
        self._command("-m", "anvil_bundle_worker", "migrate")
        worker_api = self._spawn("worker-api", "-m", "anvil_bundle_worker", "api")
        self._spawn("worker", "-m", "anvil_bundle_worker", "work")
        self._wait_ready(registry, self.registry_url)
        self._wait_ready(worker_api, self.worker_url)

    # -- clients -----------------------------------------------------------------------------

    def start_gateway(
        self, replica: str, *, port: int | None = None, probe: str = "/readyz", **extra_env: str
    ) -> tuple[_Process, str]:
        """A push-gateway replica (its process and URL), following this instance's registry
        with the bootstrap token; every replica shares the instance's gateway database.

        ``port`` is where it listens: a free loopback port when None. Passing the port of a
        replica that has exited (``kill()`` or ``stop()`` wait for that) starts it again at the
        same URL, as a restart after a crash would. ``probe`` is the path that must answer 200
        before it counts as started."""
        port = free_port() if port is None else port
        env = {
            "ANVIL_PUSH_GATEWAY_DATA_DIR": str(self.root / "gateway"),
            "ANVIL_PUSH_GATEWAY_PORT": str(port),
            "ANVIL_PUSH_GATEWAY_REGISTRY_URL": self.registry_url,
            "ANVIL_PUSH_GATEWAY_REGISTRY_TOKEN": self.admin_token,
            "ANVIL_PUSH_GATEWAY_REPLICA": replica,
            "ANVIL_PUSH_GATEWAY_FEED_WAIT_SECONDS": "5",
            "ANVIL_PUSH_GATEWAY_FLEET_FLUSH_SECONDS": "0.1",
            "ANVIL_PUSH_GATEWAY_DRAIN_SECONDS": "1",
            **extra_env,
        }
        if not any(p.name.startswith("gateway") for p in self.processes):
            self._command("-m", "anvil_push_gateway", "migrate", env=env)
        process = self._spawn(f"gateway-{replica}", "-m", "anvil_push_gateway", "serve", env=env)
        url = f"http://127.0.0.1:{port}"
        self._wait_ready(process, url, probe)
        return process, url

    def client(self, service: str, token: str | None = None) -> httpx.Client:
        base = self.registry_url if service == "registry" else self.worker_url
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.Client(base_url=base, headers=headers, timeout=60)

    def seed_acme(self, template: str = "Hello {{name}} (1)") -> None:
        """acme/web with the prompt greeting and environment prod serving ``template`` (revision 1)."""
        with self.client("registry") as registry:
            for path, body in (
                ("/v1/orgs", {"slug": "acme", "name": "Acme"}),
                ("/v1/orgs/acme/projects", {"slug": "web", "name": "Web"}),
                ("/v1/orgs/acme/projects/web/environments", {"name": "prod"}),
                ("/v1/orgs/acme/projects/web/prompts", {"name": "greeting"}),
            ):
                response = registry.post(path, json=body)
                assert response.status_code == 201, response.text
        self.publish_greeting(template)

    def publish_greeting(self, template: str) -> int:
        """A new version of acme/web's greeting, published to prod; the new revision's number."""
        with self.client("registry") as registry:
            base = "/v1/orgs/acme/projects/web"
            body = {"content": {"template": template, "variables": {"name": {}}}}
            version = registry.post(f"{base}/prompts/greeting/versions", json=body)
            assert version.status_code == 201, version.text
            etag = registry.get(f"{base}/environments/prod").headers["etag"]
            revision = registry.post(
                f"{base}/environments/prod/revisions",
                json={"prompts": {"greeting": version.json()["number"]}},
                headers={"If-Match": etag},
            )
            assert revision.status_code == 201, revision.text
            return int(revision.json()["number"])

    def jwks(self) -> Any:
        """The registry's public key set."""
        return httpx.get(f"{self.registry_url}/.well-known/jwks.json", timeout=10).json()

    def issue_token(self, **body: Any) -> str:
        with self.client("registry") as registry:
            response = registry.post("/v1/tokens", json=body)
            response.raise_for_status()
            return str(response.json()["token"])
