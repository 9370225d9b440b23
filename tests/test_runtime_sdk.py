"""The runtime SDK against a whole instance of real processes: the registry, and a push gateway
killed with SIGKILL while the client is connected, then started again at the same address."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from anvil_instances import Instance, free_port
from test_push_replicas import _publish, _seed

from anvil_runtime import AnvilClient, ClientState

pytestmark = pytest.mark.timeout(240)


def _until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_a_client_keeps_serving_through_a_gateway_killed_and_restarted_and_logs_it_once_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="anvil_runtime")
    with Instance.start(tmp_path / "a", "a") as instance:
        _seed(instance)
        token = instance.issue_token(kind="client", name="app", org="acme", project="web", environment="prod")
        jwks = httpx.get(f"{instance.registry_url}/.well-known/jwks.json", timeout=10).json()
        port = free_port()
        gateway, url = instance.start_gateway("g1", port=port)
        with AnvilClient(
            url,
            token=token,
            public_keys=jwks,
            cache_dir=tmp_path / "cache",
            allow_insecure=True,
            backoff_base=0.1,
            backoff_cap=1.0,
        ) as client:
            assert client.wait_until_ready(timeout=30) is ClientState.LIVE
            assert client.get_prompt("greeting").render(name="Ada") == "Hello Ada (1)"

            gateway.kill()
            _until(lambda: client.state is ClientState.STALE)
            assert client.get_prompt("greeting").render(name="Ada") == "Hello Ada (1)"
            assert _publish(instance, "Hello {{name}} (2)") == 2
            time.sleep(1.0)  # several reconnect attempts fail meanwhile: logged once, not each

            instance.start_gateway("g1", port=port)
            _until(lambda: client.revision == 2 and client.state is ClientState.LIVE)
            assert client.get_prompt("greeting").render(name="Ada") == "Hello Ada (2)"
    messages = [r.getMessage() for r in caplog.records if r.name == "anvil_runtime"]
    assert len([m for m in messages if m.startswith("no connection to")]) == 1, messages
    assert len([m for m in messages if m.startswith("connected to")]) == 1, messages
