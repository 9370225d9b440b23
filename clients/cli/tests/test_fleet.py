"""``anvil fleet`` against a real push gateway (served by uvicorn on loopback, in a thread of
this process) following the module's real registry process, with the context's gateway URL."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from anvil_cli.commands import fleet as fleet_command
from anvil_common.testing import backend, drop_schema, free_port, postgres_url, serve
from anvil_push_gateway.app import create_app, migrate_database
from anvil_push_gateway.settings import GatewaySettings

ORG = "fleet"


@dataclass
class LiveGateway:
    url: str
    loop: asyncio.AbstractEventLoop
    app: Any
    token: str

    def flush(self) -> None:
        """Write the gateway's pending fleet changes now (they are written in batches)."""
        future = asyncio.run_coroutine_threadsafe(self.app.state.push_gateway.fleet.flush(), self.loop)
        future.result(timeout=30)

    def report(self, env: dict[str, Any], client_id: str, **changes: Any) -> None:
        body = {
            "client_id": client_id,
            "sdk": {"name": "anvil-js", "version": "0.9.1"},
            "labels": {"region": "eu"},
            "subscription": {
                "organisation": ORG,
                "project": "web",
                "environment": env["name"],
                "prompt_set": None,
            },
            "status": "ack",
            "environment_id": env["id"],
            "revision": 1,
            "manifest_digest": env["digest"],
        } | changes
        headers = {"Authorization": f"Bearer {self.token}"}
        r = httpx.post(f"{self.url}/v1/acks", json=body, headers=headers, timeout=30)
        assert r.status_code == 204, r.text
        self.flush()


def _database(workdir: Path) -> tuple[str, str | None]:
    if backend() == "sqlite":
        return f"sqlite+aiosqlite:///{workdir / 'gateway.db'}", None
    return postgres_url(), f"cli_gateway_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def gateway(registry, tmp_path_factory) -> Iterator[LiveGateway]:
    """The push gateway, its own migrated database, following the module's registry."""
    workdir = tmp_path_factory.mktemp("gateway")
    url, schema = _database(workdir)
    asyncio.run(migrate_database(url, schema))
    settings = GatewaySettings(
        database_url=url,
        database_schema=schema,
        data_dir=workdir / "data",
        registry_url=registry.url,
        registry_token=registry.admin_token,
        stream_port=0,
        replica="cli-replica",
        feed_wait_seconds=1.0,
        fleet_flush_seconds=0.05,
        log_json=False,
    )
    started = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        app = create_app(settings)
        stop = asyncio.Event()
        async with app.router.lifespan_context(app), serve(app) as base:
            box.update(url=base, app=app, loop=asyncio.get_running_loop(), stop=stop)
            started.set()
            await stop.wait()

    def thread_main() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # shown by the fixture, not lost in the thread
            box["error"] = exc
            started.set()

    thread = threading.Thread(target=thread_main, name="gateway", daemon=True)
    thread.start()
    try:
        assert started.wait(60), "the gateway did not start"
        if "error" in box:
            raise box["error"]
        for _ in range(600):
            if httpx.get(f"{box['url']}/readyz", timeout=5).status_code == 200:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the gateway never became ready")
        yield LiveGateway(box["url"], box["loop"], box["app"], registry.admin_token)
    finally:
        if "stop" in box:
            box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(30)
        if schema is not None:
            asyncio.run(drop_schema(url, schema))


@pytest.fixture(scope="module")
def envs(registry, gateway) -> dict[str, dict[str, Any]]:
    """Organisation ``fleet``, project web, environments prod (revision 1 published) and staging."""

    def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {registry.admin_token}", **kwargs.pop("headers", {})}
        r = httpx.request(
            method, f"{registry.url}/v1/orgs/{ORG}{path}", headers=headers, timeout=30, **kwargs
        )
        assert r.status_code < 300, r.text
        return r

    assert registry.api("POST", "/v1/orgs", json={"slug": ORG, "name": "Fleet"}).status_code == 201
    call("POST", "/projects", json={"slug": "web", "name": "Web"})
    for name in ("prod", "staging"):
        call("POST", "/projects/web/environments", json={"name": name})
    call("POST", "/projects/web/prompts", json={"name": "greeting"})
    call(
        "POST", "/projects/web/prompts/greeting/versions", json={"content": {"template": "Hi"}, "message": ""}
    )
    etag = call("GET", "/projects/web/environments/prod").headers["etag"]
    call(
        "POST",
        "/projects/web/environments/prod/revisions",
        json={"prompts": {"greeting": 1}},
        headers={"If-Match": etag},
    )
    found = {}
    for name in ("prod", "staging"):
        env = call("GET", f"/projects/web/environments/{name}").json()
        found[name] = {"name": name, "id": env["id"], "digest": "sha256:" + "d" * 64}
    config = httpx.get(
        f"{gateway.url}/v1/orgs/{ORG}/projects/web/environments/prod/config",
        headers={"Authorization": f"Bearer {registry.admin_token}"},
        timeout=30,
    )
    assert config.status_code == 200, config.text
    found["prod"]["digest"] = config.headers["anvil-manifest-digest"]
    return found


@pytest.fixture(scope="module")
def fleet_world(gateway, envs) -> dict[str, str]:
    """Three clients: two on revision 1 of prod, one that refused it on staging."""
    clients = {"first": str(uuid.uuid4()), "second": str(uuid.uuid4()), "refuser": str(uuid.uuid4())}
    gateway.report(envs["prod"], clients["first"], labels={"region": "eu", "tier": "gold"})
    gateway.report(envs["prod"], clients["second"], sdk={"name": "anvil-python", "version": "1.4.0"})
    gateway.report(
        envs["staging"],
        clients["refuser"],
        status="nack",
        reason={"code": "bad-signature", "detail": "kid not in the key set"},
    )
    return clients


@pytest.fixture
def cli(anvil, registry, gateway):
    """``anvil`` logged in to the registry with the gateway's URL in the context."""
    anvil.ok("login", "--url", registry.url, "--token", registry.admin_token, "--gateway-url", gateway.url)
    return anvil


def one_error_line(result, exit_code):
    assert result.exit_code == exit_code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


def test_fleet_prints_the_environments_and_the_clients_tables(cli, fleet_world):
    out = cli.ok("fleet", "--org", ORG).stdout
    assert "Environments" in out
    assert "Clients" in out
    assert "fleet/web/prod" in out
    assert "r1: 2" in out  # two clients hold revision 1 of prod
    assert "r1: 0, 1 nack" in out  # one refused revision 1 of staging
    for client_id in fleet_world.values():
        assert client_id in out
    assert "r1 bad-signature" in out
    assert "connected (http)" in out
    assert "region=eu,tier=gold" in out
    assert "anvil-python 1.4.0" in out


def test_fleet_json_has_the_summary_and_every_client_and_passes_the_filters(cli, fleet_world, envs):
    data = cli.json("fleet", "--org", ORG)
    assert [s["environment"]["name"] for s in data["summary"]] == ["prod", "staging"]
    prod = data["summary"][0]
    assert (prod["clients"], prod["revisions"]) == (
        2,
        [{"revision": 1, "clients": 2, "connected": 2, "nacks": 0}],
    )
    assert {c["client_id"] for c in data["clients"]} == set(fleet_world.values())

    only = cli.json("fleet", "--org", ORG, "--env", "staging")
    assert [c["client_id"] for c in only["clients"]] == [fleet_world["refuser"]]
    assert [s["environment"]["id"] for s in only["summary"]] == [envs["staging"]["id"]]
    assert len(cli.json("fleet", "--org", ORG, "--revision", "1")["clients"]) == 2
    assert cli.json("fleet", "--org", ORG, "--status", "disconnected")["clients"] == []
    assert len(cli.json("fleet", "--org", ORG, "--limit", "1")["clients"]) == 1
    assert cli.json("fleet", "--org", ORG, "--project", "nope") == {"summary": [], "clients": []}

    cli.ok("context", "set", "--org", ORG)  # the context's organisation is the default
    assert {c["client_id"] for c in cli.json("fleet")["clients"]} == set(fleet_world.values())


def test_fleet_watch_refreshes_in_place_until_ctrl_c(cli, fleet_world, gateway, envs, monkeypatch):
    late = str(uuid.uuid4())
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 1:
            gateway.report(envs["prod"], late)  # a client arrives between two refreshes
            return
        raise KeyboardInterrupt

    monkeypatch.setattr(fleet_command, "_sleep", pause)
    result = cli("fleet", "--org", ORG, "--watch", "--interval", "0.5")
    assert result.exit_code == 0, result.stderr
    assert pauses == [0.5, 0.5]
    assert late in result.stdout  # the view after the refresh
    assert "Ctrl-C to stop" in result.stdout


def test_watch_is_for_tables_only(cli):
    line = one_error_line(cli("fleet", "--watch", "-o", "json"), 2)
    assert "--watch" in line


def test_an_unreachable_gateway_exits_1_with_one_readable_line(cli):
    url = f"http://127.0.0.1:{free_port()}"
    line = one_error_line(cli("fleet", "--org", ORG, env={"ANVIL_GATEWAY_URL": url}), 1)
    assert f"cannot reach {url}" in line


def test_a_context_without_a_gateway_url_is_a_usage_error(anvil, registry):
    anvil.ok("login", "--url", registry.url, "--token", registry.admin_token)
    line = one_error_line(anvil("fleet"), 2)
    assert "--gateway-url" in line
    assert "ANVIL_GATEWAY_URL" in line


def test_the_gateways_refusal_is_one_line_with_its_problem_type(cli, gateway):
    line = one_error_line(cli("fleet", "--org", ORG, "--env", "Prod"), 1)
    assert "(422 urn:anvil:problem:validation-failed)" in line
    line = one_error_line(cli("fleet", "--org", ORG, env={"ANVIL_TOKEN": "not-a-jwt"}), 1)
    assert "(401 urn:anvil:problem:invalid-token)" in line
    result = cli("fleet", "--status", "online")  # refused by the command line itself
    assert result.exit_code == 2
    assert "'online' is not one of 'connected', 'stale', 'disconnected'" in result.stderr


def test_the_gateway_url_is_kept_per_context(anvil, registry, gateway):
    anvil.ok(
        "login", "--url", registry.url, "--token", registry.admin_token, "--gateway-url", gateway.url + "/"
    )
    assert anvil.json("context", "show")["gateway_url"] == gateway.url
    assert anvil.json("context", "list")[0]["gateway_url"] == gateway.url
    # Logging in again to the same registry keeps it; an empty value clears it.
    anvil.ok("login", "--url", registry.url, "--token", registry.admin_token)
    assert anvil.json("context", "show")["gateway_url"] == gateway.url
    anvil.ok("context", "set", "--gateway-url", "")
    assert anvil.json("context", "show")["gateway_url"] is None
    assert anvil.json("context", "show", env={"ANVIL_GATEWAY_URL": gateway.url})["gateway_url"] == gateway.url
    line = one_error_line(anvil("context", "set", "--gateway-url", "http://gateway.invalid"), 2)
    assert "refusing plain http" in line
    assert json.loads(anvil.config.read_text())["contexts"]["default"]["gateway_url"] is None


def test_an_organisation_token_defaults_to_its_organisation(anvil, registry, gateway, fleet_world):
    body = {"kind": "operator", "name": "fleet-reader", "org": ORG, "scopes": ["fleet:read"]}
    issued = registry.api("POST", "/v1/tokens", json=body)
    assert issued.status_code == 201, issued.text
    token = issued.json()["token"]
    anvil.ok("login", "--url", registry.url, "--token", token, "--gateway-url", gateway.url, "--no-verify")
    assert {c["client_id"] for c in anvil.json("fleet")["clients"]} >= set(fleet_world.values())
    line = one_error_line(anvil("fleet", "--org", "other"), 1)
    assert "(404 urn:anvil:problem:not-found)" in line
