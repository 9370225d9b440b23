"""CLI test fixtures: a real registry process on a loopback port (one per test module) over a
database migrated for the test (SQLite or Postgres, by ANVIL_TEST_DATABASE), and ``anvil``,
which runs the CLI in-process with its own config file and no inherited ANVIL_* variables.

For the bundle commands, ``instance`` starts a whole Anvil instance (registry + bundle-worker API
+ worker loop as processes, ``tests/anvil_instances.py``) once per session, and ``worker_cli`` is
``anvil`` logged in to it with an operator token the worker accepts and the worker's URL."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from anvil_instances import Instance
from typer.testing import CliRunner, Result

from anvil_cli.main import app
from anvil_common.testing import (
    TemplateDatabase,
    TestDatabase,
    free_port,
    migrated_template,
    snapshot_database,
)
from anvil_registry.app import migrate_database
from anvil_wire import KeySet

STARTUP_SECONDS = 60


@pytest.fixture(scope="session")
def cli_template_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemplateDatabase]:
    with migrated_template(migrate_database, tmp_path_factory.mktemp("cli-db"), prefix="cli") as t:
        yield t


@dataclass
class Registry:
    url: str
    admin_token: str
    database: TestDatabase
    log: Path

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table, read straight from the registry's database."""
        return asyncio.run(snapshot_database(self.database))

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A direct API call as the instance admin (to set up or check state)."""
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)


def _registry_env(database: TestDatabase, workdir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANVIL_")}
    keys = workdir / "keys" / "instance.json"
    KeySet.generate().save(keys)
    env.update(
        ANVIL_REGISTRY_DATABASE_URL=database.url,
        ANVIL_REGISTRY_KEYS_FILE=str(keys),
        ANVIL_REGISTRY_GENERATE_KEYS="false",
        ANVIL_REGISTRY_DATA_DIR=str(workdir / "data"),
        ANVIL_REGISTRY_HOST="127.0.0.1",
        ANVIL_REGISTRY_PORT=str(port),
        ANVIL_REGISTRY_PUBLIC_URL=f"http://127.0.0.1:{port}",
        ANVIL_REGISTRY_LOG_JSON="false",
    )
    if database.schema:
        env["ANVIL_REGISTRY_DATABASE_SCHEMA"] = database.schema
    return env


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"registry exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"registry not ready after {STARTUP_SECONDS}s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def registry(
    cli_template_db: TemplateDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    """``python -m anvil_registry serve`` in its own process, on a free loopback port."""
    database = asyncio.run(cli_template_db.fresh())
    workdir = tmp_path_factory.mktemp("registry")
    port = free_port()
    env = _registry_env(database, workdir, port)
    command = [sys.executable, "-m", "anvil_registry"]
    admin = subprocess.run([*command, "issue-admin-token"], env=env, capture_output=True, check=True)
    log = workdir / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen([*command, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log)
        yield Registry(url=url, admin_token=admin.stdout.decode().strip(), database=database, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Anvil:
    """Runs ``anvil`` in-process with a private config file and only the env a test gives."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.runner = CliRunner()

    def __call__(
        self, *args: str, env: dict[str, str | None] | None = None, input: str | IO[Any] | None = None
    ) -> Result:
        full_env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ANVIL_")}
        full_env.update(ANVIL_CONFIG=str(self.config), COLUMNS="200")
        full_env.update(env or {})
        return self.runner.invoke(app, list(args), env=full_env, input=input, catch_exceptions=False)

    def ok(self, *args: str, env: dict[str, str | None] | None = None) -> Result:
        result = self(*args, env=env)
        assert result.exit_code == 0, (
            f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        )
        return result

    def json(self, *args: str, env: dict[str, str | None] | None = None) -> Any:
        return json.loads(self.ok(*args, "-o", "json", env=env).stdout)


@pytest.fixture
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Anvil:
    # Outside tmp_path, so that a test's own files are all that tmp_path holds.
    return Anvil(tmp_path_factory.mktemp("anvil-config") / "anvil" / "config.json")


@pytest.fixture
def logged_in(anvil: Anvil, registry: Registry) -> Anvil:
    """``anvil`` logged in to the registry as the instance administrator."""
    anvil.ok("login", "--url", registry.url, "--token", registry.admin_token)
    return anvil


@pytest.fixture(scope="session")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    """One whole instance (registry, worker API, worker loop) for the bundle and peer tests."""
    with Instance.start(tmp_path_factory.mktemp("instance"), "cli") as started:
        yield started


@pytest.fixture(scope="session")
def operator_token(instance: Instance) -> str:
    """An instance-wide operator token; its default audiences include the bundle worker."""
    return instance.issue_token(kind="operator", name="cli-tests")


@pytest.fixture
def worker_cli(anvil: Anvil, instance: Instance, operator_token: str) -> Anvil:
    """``anvil`` logged in to the instance, with its bundle worker's URL in the context."""
    anvil.ok(
        "login",
        "--url",
        instance.registry_url,
        "--token",
        operator_token,
        "--worker-url",
        instance.worker_url,
    )
    return anvil
