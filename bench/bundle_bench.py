"""Bundle benchmark (``make bench-bundles``): a measurement, not a test; it exits 0 when a goal is missed.

One Anvil instance (registry + bundle-worker API + one worker loop, real processes on loopback,
Postgres by default, ``--database sqlite`` for the embedded default) is seeded with two projects
of 1,000 and 10,000 prompts, one ~1 KiB version each. Then, in the same run:

1. **export** each project end to end: ``POST /v1/exports`` → the job reads the registry's
   snapshot, builds, seals and stores the bundle; the time is the job's own ``created_at`` →
   ``finished_at`` (so it includes queueing, the registry round trip and the store), and the
   baseline is a raw tar.gz (``tarfile``, gzip level 6) of the same canonical JSON objects built
   in this process. Goals: 1,000 in <= 120 ms; 10,000 in <= 2x the raw tar.gz.
2. the **worker's peak RSS** (``VmHWM`` of the worker loop process) after the exports, and the
   bundle size against the uncompressed JSON of its objects.
3. **validate + plan + apply** of each bundle into an empty organisation: upload
   (``POST /v1/imports``) → job (read + verify the bundle, the target's state, the plan) →
   ``POST /v1/plans/{id}/apply`` (the registry writes it in one transaction); the time is the
   client's wall clock from the upload to the apply's answer. Goals: 1,000 in <= 1 s, 10,000 in
   <= 10 s (on Postgres).

Prints a markdown table and writes the figures to ``.bench/bundles.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import tarfile
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from harness import log, machine_info, port_open

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from anvil_instances import Instance  # noqa: E402

from anvil_wire import canonical_json, content_digest  # noqa: E402

ORG = "bench"
WORDS = [
    "answer",
    "cite",
    "docs",
    "customer",
    "billing",
    "refund",
    "policy",
    "escalate",
    "politely",
    "summary",
    "context",
    "tone",
    "brief",
    "accurate",
    "product",
    "release",
    "notes",
    "example",
    "question",
    "variable",
    "partial",
    "section",
    "guidance",
]
POLL_SECONDS = "0.02"


def template_content(index: int, rng: random.Random) -> dict[str, Any]:
    """A ~1 KiB prompt in normal form, different for every index."""
    words = " ".join(rng.choice(WORDS) for _ in range(150))
    return {
        "template": f"You are assistant {index} of {{{{product}}}}. {words}"[:1000] + " {{question}}",
        "variables": {
            "product": {"default": "Anvil", "description": "Product name"},
            "question": {"default": None, "description": "The user's question"},
        },
        "model": {"provider": "openai", "name": "gpt-4o-mini", "parameters": {"temperature": 0.2}},
        "metadata": {"owner": "bench"},
    }


def _check(response: httpx.Response, *expected: int) -> httpx.Response:
    if response.status_code not in expected:
        raise RuntimeError(
            f"{response.request.method} {response.request.url}: {response.status_code} {response.text[:500]}"
        )
    return response


def seed(instance: Instance, project: str, count: int) -> dict[str, dict[str, Any]]:
    """``count`` prompts of one version each in ``project`` (through the registry's bulk import)."""
    rng = random.Random(count)
    contents = {f"p{i:05d}": template_content(i, rng) for i in range(count)}
    by_digest = {content_digest(c): c for c in contents.values()}
    body = {
        "import_id": str(uuid.uuid4()),
        "origin": {"instance": "bench-seed", "bundle": "sha256:" + "0" * 64},
        "projects": [{"slug": project, "name": project}],
        "prompts": [
            {"project": project, "name": name, "versions": [{"digest": content_digest(c)}]}
            for name, c in contents.items()
        ],
        "contents": by_digest,
    }
    with instance.client("registry") as registry:
        _check(registry.post(f"/v1/orgs/{ORG}/imports", json=body), 200, 201)
    return by_digest


def raw_targz(objects: dict[str, bytes]) -> tuple[float, int]:
    """Seconds and bytes of a tar.gz (gzip level 6) of the JSON objects' bytes, in memory."""
    started = time.perf_counter()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for digest in sorted(objects):
            data = objects[digest]
            info = tarfile.TarInfo(f"objects/{digest.removeprefix('sha256:')}.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return time.perf_counter() - started, len(buffer.getvalue())


def follow(worker: httpx.Client, job_id: str, timeout: float = 300.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = _check(worker.get(f"/v1/jobs/{job_id}"), 200).json()
        if job["status"] in ("succeeded", "failed"):
            if job["status"] == "failed":
                raise RuntimeError(f"job {job_id} failed: {job['error']}")
            return job
        time.sleep(0.005)
    raise RuntimeError(f"job {job_id} did not finish in {timeout}s")


def _seconds(job: dict[str, Any]) -> float:
    created = datetime.fromisoformat(job["created_at"])
    finished = datetime.fromisoformat(job["finished_at"])
    return (finished - created).total_seconds()


def export_once(worker: httpx.Client, project: str) -> tuple[float, str, int]:
    body = {
        "organisation": ORG,
        "selection": {"kind": "project", "project": project},
        "history": "latest",
        "environments": False,
    }
    job = follow(worker, _check(worker.post("/v1/exports", json=body), 202).json()["id"])
    return _seconds(job), job["result"]["bundle"], job["result"]["size"]


def import_once(instance: Instance, worker: httpx.Client, data: bytes, target: str) -> dict[str, float]:
    with instance.client("registry") as registry:
        _check(registry.post("/v1/orgs", json={"slug": target, "name": target}), 201)
    started = time.perf_counter()
    response = worker.post(
        "/v1/imports",
        params={"organisation": target},
        content=data,
        headers={"Content-Type": "application/vnd.anvil.bundle"},
    )
    job = follow(worker, _check(response, 202).json()["id"])
    planned = time.perf_counter()
    plan_id = job["result"]["plan"]
    applied = _check(worker.post(f"/v1/plans/{plan_id}/apply"), 200, 201).json()
    done = time.perf_counter()
    if applied["status"] != "applied":
        raise RuntimeError(f"plan {plan_id} not applied: {applied['status']} {applied.get('error')}")
    return {"total": done - started, "plan": planned - started, "apply": done - planned}


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(instance: Instance, sizes: list[int], repeats: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    worker_loop = next(p for p in instance.processes if p.name == "worker")
    with instance.client("registry") as registry:
        _check(registry.post("/v1/orgs", json={"slug": ORG, "name": ORG}), 201)
    with instance.client("worker") as worker:
        for count in sizes:
            project = f"p{count}"
            log(f"seeding {count} prompts into {ORG}/{project}")
            objects = {d: canonical_json(c) for d, c in seed(instance, project, count).items()}
            json_bytes = sum(len(o) for o in objects.values())
            export_export, raw = [], []
            digest, size = "", 0
            export_once(worker, project)  # warm-up: imports, connection pools, caches
            for _ in range(repeats):  # interleaved, so machine noise hits both sides alike
                seconds, digest, size = export_once(worker, project)
                export_export.append(seconds)
                raw.append(raw_targz(objects)[0])
            raw_size = raw_targz(objects)[1]
            data = _check(worker.get(f"/v1/bundles/{digest}"), 200).content
            median_ms = statistics.median(export_export) * 1000, statistics.median(raw) * 1000
            log(f"{count}: export median {median_ms[0]:.0f} ms, raw tar.gz {median_ms[1]:.0f} ms")
            imports = [
                import_once(instance, worker, data, f"target-{count}-{r}")
                for r in range(max(1, repeats // 2))
            ]
            log(f"{count}: import median {statistics.median(i['total'] for i in imports):.2f} s")
            results[str(count)] = {
                "export_ms": [round(s * 1000, 1) for s in export_export],
                "raw_targz_ms": [round(s * 1000, 1) for s in raw],
                "export_median_ms": round(statistics.median(export_export) * 1000, 1),
                "raw_median_ms": round(statistics.median(raw) * 1000, 1),
                "ratio": round(statistics.median(export_export) / statistics.median(raw), 2),
                "bundle_bytes": size,
                "raw_targz_bytes": raw_size,
                "json_bytes": json_bytes,
                "import_s": [{k: round(v, 3) for k, v in i.items()} for i in imports],
                "import_median_s": round(statistics.median(i["total"] for i in imports), 3),
            }
        results["worker_peak_rss_mib"] = round(peak_rss_mib(worker_loop.popen.pid), 1)
    return results


GOALS = {"1000": (120.0, None, 1.0), "10000": (None, 2.0, 10.0)}


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def markdown(database: str, results: dict[str, Any]) -> str:
    lines = [
        f"### Bundles on {database}",
        "",
        "| versions | export (job) ms | raw tar.gz ms | ratio | goal "
        "| bundle / JSON / raw tgz bytes | validate+plan+apply s | goal |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for count, (ms_goal, ratio_goal, import_goal) in GOALS.items():
        r = results.get(count)
        if r is None:
            continue
        export_ok = r["export_median_ms"] <= ms_goal if ms_goal else r["ratio"] <= (ratio_goal or 0)
        export_goal = f"<= {ms_goal:.0f} ms" if ms_goal else f"<= {ratio_goal}x"
        import_ok = r["import_median_s"] <= import_goal
        lines.append(
            f"| {int(count):,} | {r['export_median_ms']} | {r['raw_median_ms']} | {r['ratio']}x | "
            f"{export_goal} {_met(export_ok)} | {r['bundle_bytes']:,} / {r['json_bytes']:,} / "
            f"{r['raw_targz_bytes']:,} | {r['import_median_s']} | <= {import_goal:.0f} s {_met(import_ok)} |"
        )
    lines += [
        "",
        f"Worker loop peak RSS (VmHWM): {results['worker_peak_rss_mib']} MiB; "
        f"worker poll interval {POLL_SECONDS} s.",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated prompt counts")
    parser.add_argument("--repeats", type=int, default=5, help="exports per size (imports: half)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.database == "postgres" and not port_open("127.0.0.1", 5432):
        log("Postgres is not reachable at 127.0.0.1:5432: measuring on SQLite (the goals are for Postgres)")
        args.database = "sqlite"
    os.environ["ANVIL_TEST_DATABASE"] = args.database
    sizes = [int(s) for s in args.sizes.split(",")]
    with (
        tempfile.TemporaryDirectory(prefix="anvil-bundle-bench-") as tmp,
        Instance.start(Path(tmp) / "a", "bench", ANVIL_BUNDLE_WORKER_POLL_SECONDS=POLL_SECONDS) as instance,
    ):
        log(f"instance up on {args.database}: registry {instance.registry_url}, worker {instance.worker_url}")
        results = measure(instance, sizes, args.repeats)
    report = {"database": args.database, "machine": machine_info({}), "results": results}
    out = ROOT / ".bench" / "bundles.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(args.database, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
