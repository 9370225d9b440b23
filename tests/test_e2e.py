"""End to end, with real processes (registry, bundle worker, push gateways) on SQLite or Postgres,
one instance for the module (the tests are one story, in order): the CLI publishes, a runtime
client receives and acks, the fleet view shows it, a rollback arrives as a higher revision; a
gateway killed with SIGKILL and restarted under a connected client; two gateway replicas behind
a balancer, one killed while clients are connected, and every client ends on the latest revision."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from anvil_instances import Instance, free_port
from balancer import balancer

from anvil_runtime import AnvilClient, ClientState

pytestmark = pytest.mark.timeout(300)


def _until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not met within {timeout}s"
        time.sleep(0.05)


class Cli:
    """The `anvil` command as a process, with its own config file."""

    def __init__(self, config: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ANVIL_")}
        self.env["ANVIL_CONFIG"] = str(config)

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "anvil"), *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"anvil {' '.join(args)}: {result.stdout}\n{result.stderr}"
        return result.stdout

    def fleet(self) -> list[dict[str, Any]]:
        clients: list[dict[str, Any]] = json.loads(self("fleet", "-o", "json"))["clients"]
        return clients


def _client(url: str, instance: Instance, token: str, cache: Path, **options: Any) -> AnvilClient:
    return AnvilClient(
        url,
        token=token,
        public_keys=instance.jwks(),
        cache_dir=cache,
        allow_insecure=True,
        backoff_base=0.2,
        backoff_cap=2.0,
        **options,
    )


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    with Instance.start(tmp_path_factory.mktemp("e2e"), "e2e") as started:
        started.seed_acme("Hello {{name}} (1)")
        yield started


@pytest.fixture(scope="module")
def token(instance: Instance) -> str:
    return instance.issue_token(kind="client", name="app", org="acme", project="web", environment="prod")


def test_a_cli_publish_reaches_a_client_the_fleet_shows_it_and_a_rollback_arrives_higher(
    instance: Instance, token: str, tmp_path: Path
) -> None:
    _, gateway = instance.start_gateway("g1")
    anvil = Cli(tmp_path / "anvil.json")
    anvil(
        "login",
        "--url",
        instance.registry_url,
        "--gateway-url",
        gateway,
        "--token",
        "-",
        stdin=instance.admin_token,
    )
    anvil("context", "set", "--org", "acme", "--project", "web")
    with _client(gateway, instance, token, tmp_path / "cache", labels={"app": "e2e"}) as client:
        assert client.wait_until_ready(timeout=30) is ClientState.LIVE
        client_id = (tmp_path / "cache" / "client_id").read_text().strip()

        def held() -> int | None:
            for row in anvil.fleet():
                if row["client_id"] == client_id and row["revision"]:
                    return int(row["revision"]["number"])
            return None

        _until(lambda: held() == 1, what="the fleet shows revision 1")
        version = tmp_path / "greeting.yaml"
        version.write_text('template: "Hi {{name}} (2)"\nvariables:\n  name: {}\n')
        anvil("prompts", "push", "greeting", "--file", str(version), "-m", "friendlier")
        anvil("publish", "prod", "--prompt", "greeting=latest")
        _until(lambda: client.revision == 2, what="the client on revision 2")
        assert client.get_prompt("greeting").render(name="Ada") == "Hi Ada (2)"
        _until(lambda: held() == 2, what="the fleet shows revision 2")

        anvil("rollback", "prod", "--to", "1", "-m", "back")
        _until(lambda: client.revision == 3, what="the rollback reaching the client")
        assert client.get_prompt("greeting").render(name="Ada") == "Hello Ada (1)"
        assert client.state is ClientState.LIVE
        _until(lambda: held() == 3, what="the fleet shows revision 3")


CLIENTS = 6


def test_a_client_keeps_serving_through_its_gateway_killed_and_restarted_and_logs_each_once(
    instance: Instance, token: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="anvil_runtime")
    port = free_port()
    gateway, url = instance.start_gateway("restarted", port=port)
    with _client(url, instance, token, tmp_path / "cache") as client:
        assert client.wait_until_ready(timeout=30) is ClientState.LIVE
        before = client.revision
        gateway.kill()
        _until(lambda: client.state is ClientState.STALE, what="the client stale")
        assert client.get_prompt("greeting").render(name="Ada") == "Hello Ada (1)"
        latest = instance.publish_greeting("Hello {{name}} (restarted)")
        assert latest == (before or 0) + 1
        time.sleep(1.0)  # several reconnect attempts fail meanwhile: logged once, not each
        instance.start_gateway("restarted", port=port)
        _until(lambda: client.revision == latest and client.state is ClientState.LIVE, what="live again")
        assert client.get_prompt("greeting").render(name="Ada") == "Hello Ada (restarted)"
    messages = [r.getMessage() for r in caplog.records if r.name == "anvil_runtime"]
    assert len([m for m in messages if m.startswith("no connection to")]) == 1, messages
    assert len([m for m in messages if m.startswith("connected to")]) == 1, messages


def test_clients_of_a_replica_killed_with_sigkill_move_to_the_other_and_end_on_the_latest_revision(
    instance: Instance, token: str, tmp_path: Path
) -> None:
    g1, url1 = instance.start_gateway("r1")
    _, url2 = instance.start_gateway("r2")
    ports = [int(url1.rsplit(":", 1)[1]), int(url2.rsplit(":", 1)[1])]
    with balancer(ports) as lb:
        clients = [
            _client(f"http://127.0.0.1:{lb.port}", instance, token, tmp_path / f"cache-{i}")
            for i in range(CLIENTS)
        ]
        try:
            for client in clients:
                assert client.wait_until_ready(timeout=30) is ClientState.LIVE
            assert set(lb.connections) == set(ports)  # both replicas hold clients
            g1.kill()
            latest = instance.publish_greeting("Hello {{name}} (2)")
            for client in clients:
                _until(
                    lambda c=client: c.revision == latest and c.state is ClientState.LIVE,
                    what="every client on the latest revision",
                )
                assert client.get_prompt("greeting").render(name="Ada") == "Hello Ada (2)"
            assert lb.connections[-1] == ports[1]
        finally:
            for client in clients:
                client.close(timeout=5)
