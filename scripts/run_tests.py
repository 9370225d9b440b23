"""Run every suite on SQLite and on Postgres (side by side; ``--sequential`` for one after the
other with live output) and report how many tests passed on each, and the slowest tests.

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


Counts = dict[str, int]


def _counts(report: Path) -> Counts:
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
    return counts


def _run_all(backends: list[str], extra: list[str], *, parallel: bool) -> dict[str, tuple[int, Counts]]:
    """Run pytest once per backend: one after the other with live output, or side by side.

    Side by side (the default) each half writes to its own log, printed whole when it ends: the
    suites wait on servers and processes much of the time, so two halves share two cores well.
    """
    results: dict[str, tuple[int, Counts]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        for backend in backends:
            report, log = Path(tmp) / f"{backend}.xml", Path(tmp) / f"{backend}.log"
            env = {**os.environ, "ANVIL_TEST_DATABASE": backend}
            command = [sys.executable, "-m", "pytest", "-q", "--durations=15", f"--junitxml={report}", *extra]
            started = time.monotonic()
            if not parallel:
                print(f"\n=== tests on {backend} ===", flush=True)
                code = subprocess.call(command, cwd=ROOT, env=env)
                results[backend] = (code, _counts(report))
                print(f"=== {backend}: {time.monotonic() - started:.0f} s ===", flush=True)
                continue
            with log.open("wb") as out:
                popen = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            running[backend] = (popen, log)
            print(f"run_tests: tests on {backend} started (side by side; output when done)", flush=True)
        started = time.monotonic()
        for backend, (popen, log) in running.items():
            code = popen.wait()
            print(f"\n=== tests on {backend} (done after {time.monotonic() - started:.0f} s) ===", flush=True)
            sys.stdout.write(log.read_text(errors="replace"))
            sys.stdout.flush()
            results[backend] = (code, _counts(Path(tmp) / f"{backend}.xml"))
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument(
        "--sequential", action="store_true", help="run the halves one after the other, output live"
    )
    args, extra = parser.parse_known_args()
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    exit_code = 0

    backends = [] if args.only == "postgres" else ["sqlite"]
    if args.only in (None, "postgres"):
        url = os.environ.setdefault("ANVIL_TEST_POSTGRES_URL", DEFAULT_PG)
        if not _reachable(url) and ci:
            _start_debian_postgres()
        if _reachable(url):
            backends.append("postgres")
        elif ci or args.only == "postgres":
            print(f"run_tests: FAILED: Postgres is required here but not reachable at {url}", flush=True)
            exit_code = 1
        else:
            print(
                f"run_tests: Postgres not reachable at {url}: SKIPPED the Postgres half "
                "(set ANVIL_TEST_POSTGRES_URL, or start Postgres, to run it)",
                flush=True,
            )
    parallel = len(backends) > 1 and not args.sequential
    ran = _run_all(backends, extra, parallel=parallel)
    results = {backend: counts for backend, (_, counts) in ran.items()}
    for code, _ in ran.values():
        exit_code = exit_code or code

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
