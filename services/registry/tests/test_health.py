"""Probes, metrics, request ids, JSON logs and the published key set."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from anvil_common.db import create_engine
from anvil_common.jwt import TokenVerifier
from anvil_common.observability import JsonFormatter
from anvil_common.testing import backend, postgres_url
from anvil_registry.app import VERSION_TABLE
from anvil_registry.auth import AUDIENCE
from anvil_wire import public_keys_from_jwks

PROBLEM = "application/problem+json"


async def wait_until_ready(state) -> None:
    """On Postgres /readyz also waits for the event listener, which connects in the background."""
    listener = state.extras.get("listener")
    if listener is not None:
        await asyncio.wait_for(listener.connected.wait(), timeout=30)


async def set_version(database, version: str) -> str:
    engine = create_engine(database.url, schema=database.schema)
    try:
        async with engine.begin() as conn:
            before = (await conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))).scalar_one()  # noqa: S608 - constant
            await conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = :v"), {"v": version})  # noqa: S608 - constant
        return str(before)
    finally:
        await engine.dispose()


# -- probes -----------------------------------------------------------------------------------------


async def test_livez_answers_200(client):
    r = await client.get("/livez")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_readyz_answers_200_on_a_migrated_database(client, state):
    await wait_until_ready(state)
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready"}


async def test_readyz_answers_503_problem_when_the_schema_is_behind_the_code(client, state, database):
    await wait_until_ready(state)
    base = ScriptDirectory.from_config(state.alembic).get_base()
    head = await set_version(database, base)
    try:
        r = await client.get("/readyz")
        assert r.status_code == 503
        assert r.headers["content-type"] == PROBLEM
        body = r.json()
        assert body["type"] == "urn:anvil:problem:service-unavailable"
        assert "migrations" in body["detail"]
        # Liveness does not depend on the database.
        assert (await client.get("/livez")).status_code == 200
    finally:
        assert await set_version(database, head) == base
    assert (await client.get("/readyz")).status_code == 200


async def test_readyz_stays_ready_on_a_schema_migrated_by_a_later_release(client, state, database):
    """Expand/contract: during a rolling upgrade the previous release serves the new schema."""
    await wait_until_ready(state)
    head = await set_version(database, "ffffffffffff")  # a revision this code does not know
    try:
        assert (await client.get("/readyz")).status_code == 200
    finally:
        await set_version(database, head)


async def test_readyz_answers_503_problem_when_the_database_is_unreachable(client, state, tmp_path):
    await wait_until_ready(state)
    if backend() == "sqlite":
        unreachable = create_engine(f"sqlite+aiosqlite:///{tmp_path}")  # a directory, not a database
    else:
        unreachable = create_engine(postgres_url().rsplit("/", 1)[0] + "/anvil_no_such_database")
    original = state.db.engine
    state.db.engine = unreachable
    try:
        r = await client.get("/readyz")
    finally:
        state.db.engine = original
        await unreachable.dispose()
    assert r.status_code == 503
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["detail"].startswith("readiness check failed")
    assert (await client.get("/livez")).status_code == 200


# -- metrics --------------------------------------------------------------------------------------------


def _sample(metrics: str, name: str, **labels: str) -> float | None:
    for line in metrics.splitlines():
        match = re.fullmatch(rf"{name}\{{(?P<labels>.*)\}} (?P<value>\S+)", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match["value"])
    return None


async def test_metrics_count_requests_by_route_template(client, admin_headers, acme):
    await client.get("/livez")
    await client.get("/livez")
    await client.get("/v1/orgs/acme", headers=admin_headers)
    await client.get("/v1/orgs/nobody", headers=admin_headers)
    await client.get("/no/such/route")
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    metrics = r.text
    assert "# TYPE anvil_http_requests_total counter" in metrics
    assert _sample(metrics, "anvil_http_requests_total", route="/livez", method="GET", status="200") == 2
    assert _sample(metrics, "anvil_http_requests_total", route="/v1/orgs/{org}", status="200") == 1
    assert _sample(metrics, "anvil_http_requests_total", route="/v1/orgs/{org}", status="404") == 1
    assert _sample(metrics, "anvil_http_requests_total", route="unmatched", status="404") == 1
    # Raw paths never become labels (one series per organisation would be unbounded).
    assert 'route="/v1/orgs/acme"' not in metrics
    assert 'service="registry"' in metrics
    assert "anvil_http_request_duration_seconds_bucket" in metrics
    assert all(
        line.startswith(("anvil_", "# HELP anvil_", "# TYPE anvil_"))
        for line in metrics.splitlines()
        if line and not line.startswith("# HELP python") and not line.startswith("# TYPE python")
    )


# -- request ids and logs ---------------------------------------------------------------------------------


async def test_a_valid_request_id_is_echoed(client):
    for request_id in ("req-123", "a.b_c-D", "x" * 128):
        r = await client.get("/livez", headers={"X-Request-ID": request_id})
        assert r.headers["x-request-id"] == request_id


async def test_a_request_id_is_generated_when_absent(client):
    first = (await client.get("/livez")).headers["x-request-id"]
    second = (await client.get("/livez")).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon", "new\\nline", "", "<script>"])
async def test_an_invalid_request_id_is_replaced(client, bad):
    r = await client.get("/livez", headers={"X-Request-ID": bad})
    assert r.headers["x-request-id"] != bad
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])


async def test_problem_responses_carry_the_request_id_too(client):
    r = await client.get("/v1/orgs", headers={"X-Request-ID": "req-problem"})
    assert r.status_code == 401
    assert r.headers["x-request-id"] == "req-problem"


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Capture the registry's log lines as the JSON formatter writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("registry"))
    logger = logging.getLogger("anvil")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


async def test_json_log_lines_carry_the_request_id(client, json_log):
    await client.get("/livez", headers={"X-Request-ID": "req-log-1"})
    r = await client.get("/no/such/route")
    generated = r.headers["x-request-id"]
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "anvil.access"]
    by_id = {line.get("request_id"): line for line in access}
    assert by_id["req-log-1"]["status"] == 200
    assert by_id["req-log-1"]["route"] == "/livez"
    assert by_id["req-log-1"]["service"] == "registry"
    assert by_id["req-log-1"]["level"] == "INFO"
    assert isinstance(by_id["req-log-1"]["duration_ms"], float | int)
    assert by_id[generated]["status"] == 404


# -- keys ------------------------------------------------------------------------------------------------


async def test_jwks_lists_the_active_key_without_private_members(client, state, make_token):
    r = await client.get("/.well-known/jwks.json")
    assert r.status_code == 200
    assert "max-age" in r.headers["cache-control"]
    jwks = r.json()
    keys = {k["kid"]: k for k in jwks["keys"]}
    active = keys[state.keyset.active.kid]
    assert active["alg"] == "ES256"
    assert (active["kty"], active["crv"], active["use"]) == ("EC", "P-256", "sig")
    for key in jwks["keys"]:
        assert "d" not in key
        assert not any(name.startswith("anvil_") for name in key)
    assert set(public_keys_from_jwks(jwks)) == set(keys)
    # What is published is enough to verify the registry's tokens.
    verifier = TokenVerifier(jwks, issuer=state.settings.issuer, audience=AUDIENCE)
    assert verifier.verify(make_token(kind="operator")).kind == "operator"
