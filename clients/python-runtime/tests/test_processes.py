"""The SDK in processes of its own, against the live gateway of this test: a client whose
clock is days off, and a client used in a child after ``os.fork()``."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(120)

CLIENT = """
import json, logging, os, sys, time

skew = float(sys.argv[2])
if skew:
    real_time = time.time
    time.time = lambda: real_time() + skew  # everything reading the wall clock is off by skew

from anvil_runtime import AnvilClient

config = json.loads(sys.argv[1])
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
client = AnvilClient(config.pop("url"), allow_insecure=True, backoff_base=0.05, backoff_cap=0.5, **config)
state = client.wait_until_ready(timeout=20)
result = {"state": state.value, "revision": client.revision,
          "text": client.get_prompt("greeting").render(name="Ada")}
"""


async def _run(script: str, config: dict[str, Any], skew: float = 0.0) -> tuple[dict[str, Any], str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        json.dumps(config),
        str(skew),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1]), err.decode()


def _config(gateway: Any, client_token: str, keyset: Any, cache: Path) -> dict[str, Any]:
    return {
        "url": gateway.url,
        "token": client_token,
        "public_keys": keyset.public_jwks(),
        "cache_dir": str(cache),
    }


@pytest.mark.parametrize("skew", [-2 * 86400.0, 3 * 86400.0])
async def test_a_client_whose_clock_is_days_off_still_verifies_applies_and_acks(
    acme, gateway, client_token, keyset, tmp_path, skew
):
    """Nothing the SDK accepts depends on its wall clock: the token's exp is the gateway's to
    judge (it is long past or far ahead by this clock), backoff and key refreshes use the
    monotonic clock, and revisions carry no freshness the client compares with its time."""
    script = CLIENT + "print(json.dumps(result)); client.close(timeout=5)\n"
    result, _ = await _run(script, _config(gateway, client_token, keyset, tmp_path / "cache"), skew)
    assert result == {"state": "live", "revision": 1, "text": "Hello Ada"}


FORK = CLIENT + textwrap.dedent(
    """
    pid = os.fork()
    if pid == 0:
        # The child inherits the served revision and re-initialises its connection on first use.
        text = client.get_prompt("greeting").render(name="Ada")
        state = client.wait_until_ready(timeout=20)
        deadline = time.monotonic() + 20
        while client.state.value != "live" and time.monotonic() < deadline:
            time.sleep(0.02)
        print(json.dumps({"child": True, "state": client.state.value, "text": text}), flush=True)
        client.close(timeout=5)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    result["child_status"] = status
    print(json.dumps(result), flush=True)
    client.close(timeout=5)
    """
)


async def test_a_client_used_in_a_forked_child_reinitialises_with_a_warning(
    acme, gateway, client_token, keyset, tmp_path
):
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        FORK,
        json.dumps(_config(gateway, client_token, keyset, tmp_path / "cache")),
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().split("\n") if line.strip()]
    child = next(line for line in lines if line.get("child"))
    parent = next(line for line in lines if not line.get("child"))
    assert child == {"child": True, "state": "live", "text": "Hello Ada"}
    assert (parent["state"], parent["child_status"]) == ("live", 0)
    assert err.decode().count("forked child") == 1, err.decode()
