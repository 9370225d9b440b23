"""Render the registry benchmark's results: a markdown table (every figure, ratio and goal) and JSON."""

from __future__ import annotations

from typing import Any

GOALS = {
    "create_version": ("<=", 2.0),
    "config_get": (">=", 0.8),
    "config_304": (">=", 0.8),
}
BUSY_CORES = 0.25  # cores kept busy by other processes above which a run is called disturbed


def verdict(key: str, result: dict[str, Any]) -> str:
    """met / MISSED / not meaningful, from the ratio, the goal, errors and the client's ceiling."""
    if result.get("errors"):
        return f"INVALID (unexpected statuses {result['errors']})"
    if key not in GOALS:
        return "reported (no goal)"
    if result.get("client_bound"):
        return "NOT MEANINGFUL (within 70 % of the client's ceiling)"
    op, goal = GOALS[key]
    ratio = result["ratio"]
    ok = ratio <= goal if op == "<=" else ratio >= goal
    return "met" if ok else "MISSED"


def _shown(verdict_text: str) -> str:
    return (
        f"**{verdict_text}**"
        if verdict_text != "met" and not verdict_text.startswith("reported")
        else verdict_text
    )


def annotate(report: dict[str, Any]) -> None:
    """Store each measurement's goal and verdict next to its figures, and notes on a busy machine."""
    for results in report["databases"].values():
        for key, result in results.items():
            if isinstance(result, dict) and "unit" in result:
                if key in GOALS:
                    result["goal"] = {"ratio": GOALS[key][0], "value": GOALS[key][1]}
                result["verdict"] = verdict(key, result)
        # Only the req/s windows: during create/publish on Postgres its backends are "others" too.
        others = [
            run["others_cpu"]
            for key in ("config_get", "config_304")
            for side in results[key]["runs"].values()
            for run in side
            if run.get("others_cpu") is not None
        ]
        if others and max(others) > BUSY_CORES:
            results["notes"].append(
                f"other processes kept up to {max(others):.2f} of {report['machine']['cpu_count']} cores "
                "busy during the req/s measurements: wall-clock figures are disturbed; the server-CPU "
                "column is the steadier comparison"
            )


def _ms(side: dict[str, Any]) -> str:
    return f"{side['p50_ms']:.2f} / {side['p99_ms']:.2f}"


def _cpu(result: dict[str, Any]) -> str:
    cpu = result.get("server_cpu_us") or {}
    base, reg = cpu.get("baseline"), cpu.get("registry")
    if reg is None:
        return "—"
    if base is None:
        return f"{reg:,.0f}"
    return f"{base:,.0f} / {reg:,.0f} ({result['server_cpu_ratio']:.2f}x)"


def _rows(database: str, results: dict[str, Any]) -> list[list[str]]:
    rows = []
    create = results["create_version"]
    rows.append(
        [
            database,
            "Create one prompt version, sequential, p50 / p99 ms",
            f"{_ms(create['baseline'])} (bare INSERT)",
            _ms(create["registry"]),
            f"{create['ratio']:.2f}x (p99 {create['ratio_p99']:.2f}x)",
            "≤ 2x (p50)",
            _shown(create["verdict"]),
            _cpu(create),
        ]
    )
    for key, label in (("publish_full", "full body, replace"), ("publish_delta", "one-prompt delta")):
        pub = results[key]
        rows.append(
            [
                database,
                f"Publish a revision of 100 prompts ({label}, {pub['body_bytes']} B body, n={pub['count']}), "
                "p50 / p99 ms",
                "—",
                _ms(pub),
                "—",
                "—",
                _shown(pub["verdict"]),
                _cpu(pub),
            ]
        )
    for key, label in (("config_get", "GET config (100 prompts)"), ("config_304", "Conditional GET → 304")):
        rate = results[key]
        size = rate["ceiling"]["response_bytes"]
        rows.append(
            [
                database,
                f"{label}, req/s ({size} B response; client ceiling {rate['ceiling']['rate']:,.0f}, "
                f"fastest side at {rate['share_of_ceiling']:.0%} of it)",
                f"{rate['baseline']:,.0f} (bare endpoint)",
                f"{rate['registry']:,.0f}",
                f"{rate['ratio']:.2f}x",
                "≥ 0.8x",
                _shown(rate["verdict"]),
                _cpu(rate),
            ]
        )
    return rows


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _others(run: dict[str, Any]) -> str:
    others = run.get("others_cpu")
    return "" if others is None else f", others {others:.2f} cores"


def _runs(database: str, results: dict[str, Any]) -> list[list[str]]:
    rows = []
    create = results["create_version"]["runs"]
    for side in ("baseline", "registry"):
        figures = ", ".join(
            f"{r['p50_ms']:.2f}/{r['p99_ms']:.2f} (n={r['count']}{_others(r)})" for r in create[side]
        )
        rows.append([database, "create version p50/p99 ms", side, figures])
    for key in ("config_get", "config_304"):
        for side in ("baseline", "registry"):
            runs = results[key]["runs"][side]
            figures = ", ".join(
                f"{r['rate']:,.0f} (client CPU {r['client_cpu']:.0%}, "
                f"server {(r['server_cpu_per_request'] or 0) * 1e6:,.0f} µs/req{_others(r)})"
                for r in runs
            )
            rows.append([database, f"{key} req/s", side, figures])
    return rows


def markdown(report: dict[str, Any]) -> str:
    machine, params = report["machine"], report["parameters"]
    databases = ", ".join(f"{name} ({version})" for name, version in machine["databases"].items())
    lines = [
        "## Registry benchmark",
        "",
        f"Machine: {machine['cpu_count']} CPUs ({machine['cpu_model']}), Python {machine['python']}, "
        f"{machine['platform']}; uvicorn {machine['uvicorn']} ({machine['loop']} loop, {machine['http']}); "
        f"databases: {databases}.",
        f"Method: every server in its own process on loopback, the load generator in another; "
        f"{params['warmup']:g} s warm-up + {params['duration']:g} s per measurement, {params['repeats']} "
        f"interleaved repeats (baseline, registry, ...), median reported; {params['connections']} keep-alive "
        "connections for req/s; latency from one sequential client.",
        "",
    ]
    rows = [row for name, results in report["databases"].items() for row in _rows(name, results)]
    header = ["Database", "Measurement", "Baseline", "Registry", "Ratio", "Goal", "Result"]
    lines += _table([*header, "Server CPU µs/request: baseline / registry (ratio)"], rows)
    lines += [
        "",
        "Server CPU is the server process's own user+system time (all its threads) per measured "
        "request, read from /proc: other processes competing for the cores disturb it far less than "
        "wall-clock figures. For req/s on a saturated single-process server, the inverse of the CPU "
        "ratio estimates the throughput ratio. It excludes the Postgres backend's own work.",
        "Percentiles are nearest-rank: with fewer than 100 samples the p99 is the maximum.",
    ]
    lines += [
        "",
        "Every run (medians above are taken over these). 'others' is how many cores everything but "
        "the measured server and the load generator kept busy during the window (other processes, "
        "hypervisor steal, and for create/publish on Postgres the Postgres backends doing the work):",
        "",
    ]
    runs = [row for name, results in report["databases"].items() for row in _runs(name, results)]
    lines += _table(["Database", "Measurement", "Side", "Runs"], runs)
    notes = [
        f"- {name}: {note}" for name, results in report["databases"].items() for note in results["notes"]
    ]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"
