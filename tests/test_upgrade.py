"""Old code on the new schema (issue: rolling upgrades). For each service, the code as it was
just before its newest migration (the previous release, from git history) runs against a
database migrated by the current code, and still serves: the registry publishes and serves
signed config, the push gateway streams it to a runtime client and records it in its fleet
view. This is what expand/contract buys during a rolling deploy (deploy/README.md)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path

import httpx
import pytest
from anvil_instances import Instance

from anvil_runtime import AnvilClient, ClientState

ROOT = Path(__file__).resolve().parent.parent
MEMBERS = ("libs/anvil_wire", "libs/anvil_common", "services/registry", "services/push-gateway")
pytestmark = pytest.mark.timeout(300)


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


def _previous_release(service: str, package: str, into: Path) -> str:
    """PYTHONPATH of the workspace as it was before ``service``'s newest migration."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("old code comes from git history, which this checkout lacks")
        pytest.skip("no git history in this checkout: the previous release cannot be rebuilt")
    versions = f"services/{service}/{package}/migrations/versions"
    newest = _git("log", "-1", "--format=%H", "--", versions)
    parent = _git("rev-parse", f"{newest}^")
    listing = _git("ls-tree", "-r", "--name-only", parent, "--", versions)
    if not listing:
        pytest.skip(f"{service}'s first migrations came with the service: no previous release to run")
    members = [m for m in MEMBERS if _git("ls-tree", "--name-only", parent, "--", m)]  # as they were
    archive = subprocess.run(
        ["git", "archive", parent, *members], cwd=ROOT, capture_output=True, check=True, timeout=60
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return os.pathsep.join(str(into / member) for member in members)


def _until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    """One instance for the module, migrated by the current code (the tests run in order)."""
    with Instance.start(tmp_path_factory.mktemp("upgrade"), "upgrade") as started:
        started.seed_acme()
        yield started


def test_the_previous_push_gateway_runs_on_the_new_schema(instance: Instance, tmp_path: Path) -> None:
    old = _previous_release("push-gateway", "anvil_push_gateway", tmp_path / "old")
    instance.start_gateway("new")  # migrates the gateway's schema with the current code
    # A replica of the previous release on that schema, as during a rolling deploy. Its
    # /readyz may predate readiness on a newer schema: it counts as started once alive.
    _, url = instance.start_gateway("old", probe="/livez", PYTHONPATH=old)
    token = instance.issue_token(kind="client", name="app", org="acme", project="web", environment="prod")
    with AnvilClient(
        url, token=token, public_keys=instance.jwks(), cache_dir=tmp_path / "cache", allow_insecure=True
    ) as client:
        assert client.wait_until_ready(timeout=30) is ClientState.LIVE
        latest = instance.publish_greeting("Hello {{name}} (2)")
        _until(lambda: client.revision == latest)
        headers = {"Authorization": f"Bearer {instance.admin_token}"}

        def acked() -> bool:
            rows = httpx.get(f"{url}/v1/fleet", params={"organisation": "acme"}, headers=headers).json()
            return any((row.get("revision") or {}).get("number") == latest for row in rows["items"])

        _until(acked)


def test_the_previous_registry_runs_on_the_new_schema(instance: Instance, tmp_path: Path) -> None:
    """Last in the module: it replaces the instance's registry with the previous release's."""
    old = _previous_release("registry", "anvil_registry", tmp_path / "old")
    port = instance.registry_port
    instance.processes[0].stop()  # the current registry
    previous = instance.spawn("registry-old", "-m", "anvil_registry", "serve", env={"PYTHONPATH": old})
    url = f"http://127.0.0.1:{port}"
    _until(lambda: _answers(url), 60)
    assert previous.popen.poll() is None
    assert instance.publish_greeting("Hello {{name}} (old code)") == 3
    with instance.client("registry") as registry:
        config = registry.get("/v1/orgs/acme/projects/web/environments/prod/config")
    assert config.status_code == 200, config.text


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/livez", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
