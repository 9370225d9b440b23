"""The real commands: ``python -m anvil_bundle_worker work`` picks up a job queued through the
API and stops cleanly on SIGTERM; ``migrate`` brings an empty database to the head."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from anvil_bundle_worker.app import worker_alembic_config
from anvil_common.db import create_engine
from anvil_common.migrations import is_at_head
from anvil_common.testing import backend, postgres_url


@pytest.fixture
def registry_url(live_registry: Any) -> str:
    return str(live_registry.url)


def worker_env(settings: Any, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANVIL_")}
    values = {
        "DATABASE_URL": settings.resolved_database_url(),
        "DATA_DIR": str(settings.data_dir),
        "KEYS_FILE": str(settings.keys_file),
        "REGISTRY_URL": settings.registry_url,
        "REGISTRY_PUBLIC_URL": settings.issuer,
        "POLL_SECONDS": "0.1",
        "LOG_JSON": "false",
        **extra,
    }
    if settings.database_schema:
        values["DATABASE_SCHEMA"] = settings.database_schema
    env.update({f"ANVIL_BUNDLE_WORKER_{k}": v for k, v in values.items()})
    return env


async def test_work_command_picks_up_a_queued_job_and_stops_on_sigterm(
    client, acme_headers, seed, settings, tmp_path
):
    await seed.org("acme", "web")
    await seed.version("acme", "web", "greeting", "Hello")
    body = {"organisation": "acme", "selection": {"kind": "project", "project": "web"}}
    r = await client.post("/v1/exports", json=body, headers=acme_headers)
    assert r.status_code == 202
    job_url = f"/v1/jobs/{r.json()['id']}"

    log = (tmp_path / "worker.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "anvil_bundle_worker",
        "work",
        "--concurrency",
        "2",
        env=worker_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        job: dict[str, Any] = {}
        for _ in range(600):  # a deadline for a hung worker, not a speed assertion
            job = (await client.get(job_url, headers=acme_headers)).json()
            if job["status"] in ("succeeded", "failed"):
                break
            await asyncio.sleep(0.1)
        assert job["status"] == "succeeded", (job, (tmp_path / "worker.log").read_text())
        assert job["result"]["bundle"].startswith("sha256:")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()
    download = await client.get(f"/v1/bundles/{job['result']['bundle']}", headers=acme_headers)
    assert download.status_code == 200


async def test_migrate_command_brings_an_empty_database_to_head(settings, tmp_path):
    if backend() == "sqlite":
        url, schema = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}", None
    else:
        url, schema = postgres_url(), f"bundle_worker_cli_{uuid.uuid4().hex[:10]}"
    env = worker_env(settings, DATABASE_URL=url)
    env.pop("ANVIL_BUNDLE_WORKER_DATABASE_SCHEMA", None)
    if schema:
        env["ANVIL_BUNDLE_WORKER_DATABASE_SCHEMA"] = schema
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "anvil_bundle_worker", "migrate"],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"migrations applied" in done.stderr
    engine = create_engine(url, schema=schema)
    try:
        assert await is_at_head(engine, worker_alembic_config())
    finally:
        await engine.dispose()
        if schema:
            admin = create_engine(url)
            try:
                async with admin.begin() as conn:
                    await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            finally:
                await admin.dispose()


def test_unknown_command_and_bad_settings_exit_nonzero(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANVIL_")}
    bad = subprocess.run(
        [sys.executable, "-m", "anvil_bundle_worker", "work", "--concurrency", "0"],
        env={**env, "ANVIL_BUNDLE_WORKER_DATA_DIR": str(tmp_path)},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode != 0
    assert b"concurrency" in bad.stderr
