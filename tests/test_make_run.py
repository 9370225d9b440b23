"""`make run` itself, as a person runs it: the whole stack comes up, the demo client receives a
revision, a publish reaches it, and Ctrl-C leaves no process behind. SQLite, or Postgres in a
database of its own (ANVIL_TEST_DATABASE=postgres)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from anvil_instances import database_url, free_port, scratch_database

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(300)


class Lines:
    """The lines a process prints, read on a thread so a test can wait for one with a timeout."""

    def __init__(self, stream: object) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.queue.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} within {timeout}s; saw:\n" + "\n".join(self.seen))


def _processes_of(data_dir: Path) -> list[int]:
    """Every live process whose environment names this stack's data directory."""
    marker = f"ANVIL_DATA_DIR={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_make_run_brings_the_stack_up_pushes_to_the_demo_client_and_ctrl_c_stops_everything(
    tmp_path: Path,
) -> None:
    data = tmp_path / "anvil"
    ports = {name: str(free_port()) for name in ("REGISTRY", "BUNDLE_WORKER", "PUSH_GATEWAY")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANVIL_")}
    env |= {"ANVIL_DATA_DIR": str(data), **{f"ANVIL_{k}_PORT": v for k, v in ports.items()}}
    with scratch_database("anvil_make_run") as database:
        if database is not None:
            env["ANVIL_DATABASE_URL"] = database_url(database)
        make = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: Ctrl-C goes to the group, as in a terminal
        )
        lines = Lines(make.stdout)
        try:
            lines.wait_for("Anvil is running")
            lines.wait_for("[demo client] ready (live) on revision 1")
            assert _processes_of(data), "the stack's processes are not found by their environment"

            registry = f"http://127.0.0.1:{ports['REGISTRY']}"
            admin = {"Authorization": f"Bearer {(data / 'admin.token').read_text().strip()}"}
            project = f"{registry}/v1/orgs/demo/projects/support"
            body = {
                "content": {"template": "Hello {{name}}, from make run's test.", "variables": {"name": {}}}
            }
            version = httpx.post(f"{project}/prompts/support/greeting/versions", json=body, headers=admin)
            assert version.status_code == 201, version.text
            etag = httpx.get(f"{project}/environments/prod", headers=admin).headers["etag"]
            published = httpx.post(
                f"{project}/environments/prod/revisions",
                json={"prompts": {"support/greeting": version.json()["number"]}},
                headers={**admin, "If-Match": etag},
            )
            assert published.status_code == 201, published.text
            lines.wait_for(f"[demo client] revision {published.json()['number']} applied (live)")
            lines.wait_for("renders: Hello Ada, from make run's test.")
        finally:
            if make.poll() is None:
                os.killpg(make.pid, signal.SIGINT)
            code = make.wait(timeout=60)
        lines.wait_for("make run: stopped.", timeout=10)
        assert code in (0, 2, -signal.SIGINT), code  # make may end by the SIGINT it got, as in a shell
        deadline = time.monotonic() + 10
        while _processes_of(data) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _processes_of(data) == []
