"""The four registry measurements, each against a baseline measured in the same run.

Pairs are interleaved (baseline, subject, baseline, subject, ...) and each side's figure is the
median over the repeats, so slow drift of the machine hits both sides alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import (
    HOST,
    Server,
    free_port,
    http_request,
    loadgen,
    log,
    median,
    percentile,
    raw_response,
    running,
)

ORG, PROJECT, ENVIRONMENT = "bench", "app", "prod"
PROJECT_PATH = f"/v1/orgs/{ORG}/projects/{PROJECT}"
CONFIG_PATH = f"{PROJECT_PATH}/environments/{ENVIRONMENT}/config"
PUBLISH_PATH = f"{PROJECT_PATH}/environments/{ENVIRONMENT}/revisions"
CLIENT_CEILING_SHARE = 0.7  # a server above this share of the client's ceiling is not measured


def prompt_content(tag: str) -> dict[str, Any]:
    """A realistic prompt, already in normal form (so both sides store identical rows)."""
    return {
        "template": "You are the support assistant of {{product}}. Answer briefly and cite the docs. "
        f"Question: {{{{question}}}} ({tag})",
        "variables": {
            "product": {"default": "Anvil", "description": "Product name"},
            "question": {"default": None, "description": "The user's question"},
        },
        "model": {
            "provider": "openai",
            "name": "gpt-4o-mini",
            "parameters": {"max_tokens": 512, "temperature": 0.2},
        },
        "metadata": {"owner": "bench", "team": "support"},
    }


@dataclass
class Bench:
    """What the measurements of one database need."""

    registry: Server
    bare: Server
    operator_token: str
    prompt_names: list[str]
    revision: int  # the environment's current revision
    log_dir: Path
    duration: float
    warmup: float
    repeats: int
    connections: int
    publishes: int


def _rate_job(server: Server | None, port: int, request: bytes, bench: Bench) -> dict[str, Any]:
    return {
        "mode": "rate",
        "host": HOST,
        "port": port,
        "server_pid": server.process.pid if server else None,
        "request": request,
        "connections": bench.connections,
        "warmup": bench.warmup,
        "duration": bench.duration,
    }


def client_ceiling(bench: Bench, request: bytes) -> dict[str, Any]:
    """The load generator against a raw server answering exactly the baseline's response bytes."""
    response = raw_response(bench.bare.port, request)
    response_file = bench.log_dir / f"ceiling-{len(response)}.bin"
    response_file.write_bytes(response)
    port = free_port()
    with running("trivial", port, bench.log_dir, "--response-file", str(response_file), ready=None):
        result = loadgen(_rate_job(None, port, request, bench))
    log(
        f"client ceiling for this {len(response):,} B response: {result['rate']:,.0f} req/s "
        f"(client CPU {result['client_cpu']:.0%})"
    )
    return {"rate": result["rate"], "client_cpu": result["client_cpu"], "response_bytes": len(response)}


def rate_pair(bench: Bench, *, headers: dict[str, str], expect: int) -> dict[str, Any]:
    """req/s of the registry's config endpoint against the bare endpoint serving the same bytes."""
    bare_request = http_request("GET", bench.bare.port, "/bare/config", headers=headers)
    registry_request = http_request("GET", bench.registry.port, CONFIG_PATH, headers=headers)
    ceiling = client_ceiling(bench, bare_request)
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "registry": []}
    for _ in range(bench.repeats):
        runs["baseline"].append(loadgen(_rate_job(bench.bare, bench.bare.port, bare_request, bench)))
        runs["registry"].append(
            loadgen(_rate_job(bench.registry, bench.registry.port, registry_request, bench))
        )
    errors = {
        side: {s: n for run in side_runs for s, n in run["statuses"].items() if s != str(expect)}
        for side, side_runs in runs.items()
    }
    baseline = median([r["rate"] for r in runs["baseline"]])
    registry = median([r["rate"] for r in runs["registry"]])
    top = max(baseline, registry)
    cpu = _cpu_summary(runs)
    return {
        **cpu,
        "unit": "req/s",
        "expect_status": expect,
        "baseline": baseline,
        "registry": registry,
        "ratio": registry / baseline if baseline else None,
        "ceiling": ceiling,
        "share_of_ceiling": top / ceiling["rate"] if ceiling["rate"] else None,
        "client_bound": top >= CLIENT_CEILING_SHARE * ceiling["rate"],
        "errors": {side: e for side, e in errors.items() if e},
        "runs": runs,
    }


def _cpu_summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Median server CPU microseconds per request on each side, and their ratio (registry/baseline)."""
    sides: dict[str, float | None] = {}
    for side, side_runs in runs.items():
        values = [r["server_cpu_per_request"] for r in side_runs if r.get("server_cpu_per_request")]
        sides[side] = median(values) * 1e6 if values else None
    baseline, registry = sides["baseline"], sides["registry"]
    return {
        "server_cpu_us": sides,
        "server_cpu_ratio": registry / baseline if baseline and registry else None,
    }


def _version_requests(port: int, path: str, tag: str, token: str, count: int) -> list[bytes]:
    headers = {"Authorization": f"Bearer {token}"}
    return [
        http_request(
            "POST", port, path, headers=headers, body={"content": prompt_content(f"{tag} {i}"), "message": ""}
        )
        for i in range(count)
    ]


def _latency_summary(run: dict[str, Any]) -> dict[str, Any]:
    values = run["latencies"]
    return {
        "count": len(values),
        "p50_ms": percentile(values, 0.50) * 1000,
        "p99_ms": percentile(values, 0.99) * 1000,
        "statuses": run["statuses"],
        "exhausted": run["exhausted"],
        "server_cpu_per_request": run.get("server_cpu_per_request"),
        "others_cpu": run.get("others_cpu"),
    }


def create_version_pair(bench: Bench) -> dict[str, Any]:
    """Latency of one new prompt version through the API against one bare INSERT of the same row."""
    warm = 10
    # Enough distinct bodies that even a fast baseline never runs out inside the window.
    count = warm + math.ceil(bench.duration * 2500)
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "registry": []}
    for repeat in range(bench.repeats):
        sides = (
            ("baseline", bench.bare, "/bare/versions", "b"),
            ("registry", bench.registry, f"{PROJECT_PATH}/prompts/bench/create-{repeat}/versions", "r"),
        )
        for side, server, path, tag in sides:
            job = {
                "mode": "sequence",
                "host": HOST,
                "port": server.port,
                "server_pid": server.process.pid,
                "requests": _version_requests(
                    server.port, path, f"{tag}{repeat}", bench.operator_token, count
                ),
                "warmup": warm,
                "duration": bench.duration,
            }
            runs[side].append(_latency_summary(loadgen(job)))
    result: dict[str, Any] = {"unit": "ms", "runs": runs, **_cpu_summary(runs)}
    for side in ("baseline", "registry"):
        result[side] = {q: median([r[q] for r in runs[side]]) for q in ("p50_ms", "p99_ms")}
    result["ratio"] = result["registry"]["p50_ms"] / result["baseline"]["p50_ms"]
    result["ratio_p99"] = result["registry"]["p99_ms"] / result["baseline"]["p99_ms"]
    result["errors"] = {
        side: {s: n for run in side_runs for s, n in run["statuses"].items() if s != "201"}
        for side, side_runs in runs.items()
    }
    result["errors"] = {k: v for k, v in result["errors"].items() if v}
    return result


def publish_latency(bench: Bench, *, full: bool) -> dict[str, Any]:
    """Latency of publishing a revision of every prompt, each publish changing one prompt's version."""
    warm = 3
    headers = {"Authorization": f"Bearer {bench.operator_token}"}
    versions = dict.fromkeys(bench.prompt_names, 1)
    requests = []
    offset = 0 if full else len(bench.prompt_names) // 2
    for i in range(warm + bench.publishes):
        name = bench.prompt_names[(i + offset) % len(bench.prompt_names)]
        versions[name] = 3 - versions[name]  # 1 <-> 2: a real change, never the no-op path
        body: dict[str, Any] = (
            {"prompts": dict(versions), "replace": True} if full else {"prompts": {name: versions[name]}}
        )
        hdrs = {**headers, "If-Match": f'"rev-{bench.revision}"'}
        requests.append(http_request("POST", bench.registry.port, PUBLISH_PATH, headers=hdrs, body=body))
        bench.revision += 1
    job = {
        "mode": "sequence",
        "host": HOST,
        "port": bench.registry.port,
        "server_pid": bench.registry.process.pid,
        "requests": requests,
        "warmup": warm,
    }
    run = loadgen(job)
    summary = _latency_summary(run)
    summary["unit"] = "ms"
    cpu = summary.get("server_cpu_per_request")
    summary["server_cpu_us"] = {"registry": cpu * 1e6 if cpu else None}
    summary["body_bytes"] = len(requests[-1].partition(b"\r\n\r\n")[2])
    summary["errors"] = {s: n for s, n in run["statuses"].items() if s != "201"}
    return summary
