"""Registry benchmark (``make bench-registry``): a measurement, not a test; it exits 0 when a goal is missed.

On the embedded SQLite default and, when 127.0.0.1:5432 answers, on Postgres (a schema of its
own, dropped afterwards), it measures against baselines taken in the same run:

1. creating one prompt version through the API vs a bare FastAPI endpoint inserting the same
   ``prompt_versions`` row with one INSERT (per-item latency, goal <= 2x);
2. publishing a revision of 100 prompts (p50/p99), every publish a real change;
3. GET of an environment's current config (100 prompts) vs a bare endpoint serving the same
   bytes (req/s, goal >= 0.8x);
4. a conditional GET answered 304 vs a bare 304 endpoint (req/s, goal >= 0.8x).

The load generator's ceiling is measured first against a raw server answering the same bytes;
a ratio whose faster side comes within 70 % of that ceiling is reported as not meaningful.
Prints a markdown table and writes the same figures to ``.bench/registry.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from harness import HOST, free_port, log, machine_info, port_open, running
from report import annotate, markdown
from scenarios import (
    CONFIG_PATH,
    ENVIRONMENT,
    ORG,
    PROJECT,
    PROJECT_PATH,
    PUBLISH_PATH,
    Bench,
    create_version_pair,
    prompt_content,
    publish_latency,
    rate_pair,
)

from anvil_common.db import create_engine
from anvil_common.jwt import TokenIssuer
from anvil_registry.app import migrate_database
from anvil_registry.auth import KIND_SCOPES
from anvil_wire import KeySet

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
PROMPTS = 100


async def _migrate(url: str, schema: str | None) -> str:
    """Migrate to head (as ``python -m anvil_registry migrate`` does); return the server's version."""
    await migrate_database(url, schema)
    if not url.startswith("postgresql"):
        return f"SQLite {sqlite3.sqlite_version}"
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            version = await conn.exec_driver_sql("SHOW server_version")
            return f"PostgreSQL {version.scalar_one()}"
    finally:
        await engine.dispose()


async def _drop_schema(url: str, schema: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await engine.dispose()


def _check(response: httpx.Response, *expected: int) -> httpx.Response:
    if response.status_code not in expected:
        raise RuntimeError(
            f"{response.request.method} {response.request.url}: {response.status_code} {response.text}"
        )
    return response


def seed(base_url: str, admin: str, operator: str, client: str) -> dict[str, Any]:
    """Through the API: organisation, project, environment, 100 prompts x 2 versions, revision 1."""
    names = [f"app/prompt-{i:03d}" for i in range(PROMPTS)]
    with httpx.Client(base_url=base_url, timeout=60) as http:
        as_admin = {"Authorization": f"Bearer {admin}"}
        as_operator = {"Authorization": f"Bearer {operator}"}
        _check(http.post("/v1/orgs", json={"slug": ORG, "name": "Bench"}, headers=as_admin), 201)
        _check(
            http.post(f"/v1/orgs/{ORG}/projects", json={"slug": PROJECT, "name": "App"}, headers=as_admin),
            201,
        )
        _check(
            http.post(f"{PROJECT_PATH}/environments", json={"name": ENVIRONMENT}, headers=as_operator), 201
        )
        for name in names:
            for number in (1, 2):
                body = {"content": prompt_content(f"{name} v{number}"), "message": ""}
                _check(
                    http.post(f"{PROJECT_PATH}/prompts/{name}/versions", json=body, headers=as_operator), 201
                )
        bare = _check(
            http.post(f"{PROJECT_PATH}/prompts", json={"name": "bench/bare-insert"}, headers=as_operator), 201
        )
        publish = {"prompts": dict.fromkeys(names, 1), "replace": True}
        headers = {**as_operator, "If-Match": '"rev-0"'}
        _check(http.post(PUBLISH_PATH, json=publish, headers=headers), 201)
        config = _check(http.get(CONFIG_PATH, headers={"Authorization": f"Bearer {client}"}), 200)
    return {
        "names": names,
        "bare_prompt_id": bare.json()["id"],
        "config": config.content,
        "etag": config.headers["etag"],
    }


def _tokens(keyset: KeySet, issuer: str) -> tuple[str, str, str]:
    """Instance admin, operator of the org, client of the environment: signed with the instance key
    the registry loads, exactly what ``POST /v1/tokens`` hands out (verification needs no row)."""
    tokens = TokenIssuer(keyset.active, issuer=issuer)
    common = {"audience": "anvil-registry", "ttl_seconds": 4 * 3600}
    admin, _ = tokens.issue(subject="bench-admin", kind="operator", scopes=KIND_SCOPES["operator"], **common)
    operator, _ = tokens.issue(
        subject="bench-operator",
        kind="operator",
        scopes=KIND_SCOPES["operator"] - {"orgs:admin"},
        org=ORG,
        **common,
    )
    client, _ = tokens.issue(
        subject="bench-client",
        kind="client",
        scopes=["config:read"],
        org=ORG,
        project=PROJECT,
        environment=ENVIRONMENT,
        **common,
    )
    return admin, operator, client


def measure(url: str, schema: str | None, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Start the registry and the bare server on one migrated database, seed, run the four pairs."""
    keyset = KeySet.generate()
    keys_file = tmp / "keys" / "instance.json"
    keyset.save(keys_file)
    registry_port = free_port()
    public_url = f"http://{HOST}:{registry_port}"
    admin, operator, client = _tokens(keyset, public_url)
    db_args = ["--database-url", url, *(["--schema", schema] if schema else [])]
    registry_args = [*db_args, "--keys-file", str(keys_file), "--data-dir", str(tmp / "data")]
    with running("registry", registry_port, tmp, *registry_args, "--public-url", public_url) as registry:
        log("seeding 100 prompts x 2 versions and revision 1 through the API")
        seeded = seed(registry.url, admin, operator, client)
        config_file = tmp / "config.json"
        config_file.write_bytes(seeded["config"])
        bare_args = [*db_args, "--prompt-id", seeded["bare_prompt_id"], "--config-file", str(config_file)]
        with running("bare", free_port(), tmp, *bare_args, "--etag", seeded["etag"]) as bare:
            bench = Bench(
                registry=registry,
                bare=bare,
                operator_token=operator,
                prompt_names=seeded["names"],
                revision=1,
                log_dir=tmp,
                duration=args.duration,
                warmup=args.warmup,
                repeats=args.repeats,
                connections=args.connections,
                publishes=args.publishes,
            )
            as_client = {"Authorization": f"Bearer {client}"}
            results: dict[str, Any] = {}
            log("GET config: client ceiling, then baseline/registry x repeats")
            results["config_get"] = rate_pair(bench, headers=as_client, expect=200)
            log("conditional GET (304): client ceiling, then baseline/registry x repeats")
            conditional = {**as_client, "If-None-Match": seeded["etag"]}
            results["config_304"] = rate_pair(bench, headers=conditional, expect=304)
            log("create prompt version: baseline/registry x repeats")
            results["create_version"] = create_version_pair(bench)
            log(f"publish: {args.publishes} full-body publishes, then {args.publishes} one-prompt deltas")
            results["publish_full"] = publish_latency(bench, full=True)
            results["publish_delta"] = publish_latency(bench, full=False)
            results["notes"] = []
            results["config_bytes"] = len(seeded["config"])
    return results


def run_database(kind: str, args: argparse.Namespace, versions: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="anvil-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if kind == "sqlite":
            url, schema = f"sqlite+aiosqlite:///{(tmp / 'registry.db').as_posix()}", None
        else:
            url, schema = args.postgres_url, f"bench_registry_{secrets.token_hex(4)}"
        try:
            versions[kind] = asyncio.run(_migrate(url, schema))
            log(f"{kind}: migrated ({versions[kind]}{', schema ' + schema if schema else ''})")
            results = measure(url, schema, tmp, args)
            return results
        finally:
            if schema is not None:
                asyncio.run(_drop_schema(url, schema))
                log(f"{kind}: dropped schema {schema}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--database",
        choices=["auto", "sqlite", "postgres", "both"],
        default="auto",
        help="auto: SQLite, plus Postgres when 127.0.0.1:5432 answers",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "ANVIL_BENCH_POSTGRES_URL", os.environ.get("ANVIL_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
        ),
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds of warm-up before each req/s measurement"
    )
    parser.add_argument("--repeats", type=int, default=3, help="interleaved baseline/registry pairs")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections for req/s")
    parser.add_argument("--publishes", type=int, default=40, help="measured publishes per variant")
    parser.add_argument("--json", type=Path, default=ROOT / ".bench" / "registry.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    databases = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    if args.database == "auto":
        databases = ["sqlite"] + (["postgres"] if port_open("127.0.0.1", 5432) else [])
        if "postgres" not in databases:
            log("127.0.0.1:5432 does not answer: measuring SQLite only")
    started = time.monotonic()
    versions: dict[str, str] = {}
    results = {kind: run_database(kind, args, versions) for kind in databases}
    report = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(versions),
        "parameters": {
            "duration": args.duration,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "connections": args.connections,
            "publishes": args.publishes,
            "prompts": PROMPTS,
        },
        "elapsed_seconds": round(time.monotonic() - started, 1),
        "databases": results,
    }
    annotate(report)
    print(markdown(report))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    log(f"done in {report['elapsed_seconds']:.0f} s; JSON in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
