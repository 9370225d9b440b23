"""Run every suite on SQLite, then on Postgres, and report how many tests passed on each.

Under CI (CI=true) a missing Postgres is a failure, never a skip: if the server is not
reachable we try to start Debian's cluster once, then fail loudly. On a developer's machine
the Postgres half is skipped with a plain message when no server answers.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def _reachable(url: str) -> bool:
    parts = urlsplit(url.replace("+asyncpg", ""))
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=2):
            return True
    except OSError:
        return False


def _start_debian_postgres() -> None:
    versions = sorted(glob.glob("/etc/postgresql/*"))
    if not versions or not shutil.which("pg_ctlcluster"):
        return
    version = Path(versions[-1]).name
    print(f"run_tests: Postgres not reachable; starting Debian's cluster {version}/main", flush=True)
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False)
    for _ in range(30):
        if _reachable(os.environ.get("ANVIL_TEST_POSTGRES_URL", DEFAULT_PG)):
            return
        time.sleep(1)


def _run(backend: str, extra: list[str]) -> tuple[int, dict[str, int]]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        env = {**os.environ, "ANVIL_TEST_DATABASE": backend}
        print(f"\n=== tests on {backend} ===", flush=True)
        code = subprocess.call(
            [sys.executable, "-m", "pytest", "-q", f"--junitxml={report}", *extra], cwd=ROOT, env=env
        )
        counts = {"passed": 0, "failed": 0, "skipped": 0}
        if report.exists():
            root = ET.parse(report).getroot()  # noqa: S314 - our own pytest report
            for suite in root.iter("testsuite"):
                tests = int(suite.get("tests", 0))
                failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
                skipped = int(suite.get("skipped", 0))
                counts["failed"] += failed
                counts["skipped"] += skipped
                counts["passed"] += tests - failed - skipped
    return code, counts


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    args, extra = parser.parse_known_args()
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    results: dict[str, dict[str, int]] = {}
    exit_code = 0

    if args.only in (None, "sqlite"):
        code, results["sqlite"] = _run("sqlite", extra)
        exit_code = exit_code or code

    if args.only in (None, "postgres"):
        url = os.environ.setdefault("ANVIL_TEST_POSTGRES_URL", DEFAULT_PG)
        if not _reachable(url) and ci:
            _start_debian_postgres()
        if _reachable(url):
            code, results["postgres"] = _run("postgres", extra)
            exit_code = exit_code or code
        elif ci or args.only == "postgres":
            print(f"run_tests: FAILED: Postgres is required here but not reachable at {url}", flush=True)
            exit_code = 1
        else:
            print(
                f"run_tests: Postgres not reachable at {url}: SKIPPED the Postgres half "
                "(set ANVIL_TEST_POSTGRES_URL, or start Postgres, to run it)",
                flush=True,
            )

    print("\n=== summary ===")
    for backend, counts in results.items():
        print(f"{backend}: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    if ci and results.get("postgres", {}).get("passed", 0) == 0:
        print("run_tests: FAILED: no test passed on Postgres under CI")
        exit_code = exit_code or 1
    if exit_code == 5:  # pytest: no tests collected
        print("run_tests: FAILED: no tests were collected")
    passed = sum(c["passed"] for c in results.values())
    failed = sum(c["failed"] for c in results.values())
    print(f"{passed} passed, {failed} failed")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
