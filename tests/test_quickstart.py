"""`make run`'s command, as a real process: migrate, seed the demo, print the admin token,
serve; the demo config verifies; Ctrl-C stops it cleanly. On SQLite (the embedded default)
or Postgres (ANVIL_TEST_DATABASE=postgres, in a schema of its own)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from anvil_common.db import create_engine
from anvil_common.testing import backend, postgres_url
from anvil_wire import public_keys_from_jwks, verify_revision


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def database_env() -> Iterator[dict[str, str]]:
    if backend() == "sqlite":
        yield {}
        return
    schema = f"quickstart_{uuid.uuid4().hex[:8]}"
    yield {"ANVIL_REGISTRY_DATABASE_URL": postgres_url(), "ANVIL_REGISTRY_DATABASE_SCHEMA": schema}

    async def drop() -> None:
        engine = create_engine(postgres_url())
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()

    asyncio.run(drop())


def test_run_seeds_demo_serves_signed_config_and_stops_on_ctrl_c(
    tmp_path: Path, database_env: dict[str, str]
):
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        **database_env,
        "ANVIL_REGISTRY_DATA_DIR": str(tmp_path / "data"),
        "ANVIL_REGISTRY_PORT": str(port),
        "ANVIL_REGISTRY_PUBLIC_URL": base,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "anvil_registry", "run", "--seed-demo"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("registry did not become ready")
        token = (tmp_path / "data" / "admin.token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        config = httpx.get(f"{base}/v1/orgs/demo/projects/support/environments/prod/config", headers=headers)
        assert config.status_code == 200
        jwks = httpx.get(f"{base}/.well-known/jwks.json").json()
        verified = verify_revision(config.json(), public_keys_from_jwks(jwks))
        rendered = verified.render("support/greeting", {"name": "Ada"})
        assert isinstance(rendered, list)
        assert "Never share internal ticket numbers." in rendered[0]["content"]
        assert rendered[1]["content"] == "Greet Ada and ask how you can help."
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode in (0, 130), proc.returncode
    assert token in out
    assert f"{base}/v1" in out
