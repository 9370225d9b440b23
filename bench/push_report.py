"""The push benchmark's markdown report (bench/push_bench.py): goals met or missed, and what each
figure includes."""

from __future__ import annotations

import statistics
from typing import Any

from harness import percentile

FANOUT_GOALS = {"1 KiB": 1.5, "100 KiB": 1.25}
APPLY_MARGIN_MS, SINGLE_MS, MEMORY_RATIO, LAG_MS = 150.0, 50.0, 2.0, 50.0


def _median(samples: list[dict[str, float]], key: str = "ms") -> float:
    return statistics.median(s[key] for s in samples)


def _min(samples: list[dict[str, float]], key: str = "ms") -> float:
    return min(s[key] for s in samples)


def _max(samples: list[dict[str, float]], key: str) -> float:
    return max(s[key] for s in samples)


def _verdict(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


def _fanout_rows(results: dict[str, Any]) -> list[str]:
    rows = []
    for n, phase in results["fanout"].items():
        for label, goal in FANOUT_GOALS.items():
            bare, gateway = phase[label]["bare"], phase[label]["gateway"]
            ratio = _median(gateway) / _median(bare)
            size = int(_median(gateway, "bytes"))
            rows.append(
                f"| (b) send-to-all | {int(n):,} | {label} ({size:,} B) | {_median(bare):.1f} ms "
                f"(min {_min(bare):.1f}) | {_median(gateway):.1f} ms (min {_min(gateway):.1f}; end to end "
                f"{_median(gateway, 'e2e_ms'):.1f}) | {ratio:.2f}x | ≤ {goal}x | {_verdict(ratio <= goal)} |"
            )
    return rows


def _memory_rows(results: dict[str, Any]) -> list[str]:
    rows = []
    for n, phase in results["fanout"].items():
        bare = phase["memory"]["bare"]["kib_per_connection"]
        gateway = phase["memory"]["gateway"]["kib_per_connection"]
        ratio = gateway / bare
        rows.append(
            f"| idle memory per connection | {int(n):,} | | {bare:.1f} KiB | {gateway:.1f} KiB "
            f"| {ratio:.2f}x | ≤ {MEMORY_RATIO:g}x | {_verdict(ratio <= MEMORY_RATIO)} |"
        )
    return rows


def _apply_rows(results: dict[str, Any]) -> list[str]:
    apply = results["apply"]
    bare, gateway = apply["full"]["bare"], apply["full"]["gateway"]
    n = apply["full_clients"]
    over = _median(gateway) - _median(bare)
    single = [s["ms"] for s in apply["single"]]
    lag = results["event_lag"]
    return [
        f"| (c) every client verified, applied, acked | {n:,} | 1 KiB | {_median(bare):.1f} ms "
        f"(min {_min(bare):.1f}) | {_median(gateway):.1f} ms (min {_min(gateway):.1f}) | +{over:.1f} ms "
        f"| ≤ +{APPLY_MARGIN_MS:g} ms | {_verdict(over <= APPLY_MARGIN_MS)} |",
        f"| (d) publish → one client applied (p50; p90 {percentile(single, 0.9):.1f}) | 1 | 1 KiB | "
        f"| {statistics.median(single):.1f} ms | | ≤ {SINGLE_MS:g} ms "
        f"| {_verdict(statistics.median(single) <= SINGLE_MS)} |",
        f"| registry → gateway event lag p99 (p50 {lag['p50_ms']:.1f}) | {lag['count']} publishes | | "
        f"| {lag['p99_ms']:.1f} ms | | ≤ {LAG_MS:g} ms | {_verdict(lag['p99_ms'] <= LAG_MS)} |",
    ]


def _details(results: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "| detail (medians) | N | payload | bare | gateway |",
        "| --- | --- | --- | --- | --- |",
    ]
    for n, phase in results["fanout"].items():
        for label in FANOUT_GOALS:
            bare, gateway = phase[label]["bare"], phase[label]["gateway"]
            lines.append(
                f"| server CPU per send-to-all | {int(n):,} | {label} | {_median(bare, 'cpu_ms'):.0f} ms "
                f"| {_median(gateway, 'cpu_ms'):.0f} ms (incl. fetching the revision) |"
            )
            lines.append(
                f"| server side: send-to-all call returned (bare: `broadcast()`; gateway: from the document "
                f"to its fan-out returning) | {int(n):,} | {label} | {_median(bare, 'call_ms'):.1f} ms "
                f"| {_median(gateway, 'call_ms'):.1f} ms |"
            )
            lines.append(
                f"| first → last client | {int(n):,} | {label} | {_median(bare, 'spread_ms'):.1f} ms "
                f"| {_median(gateway, 'spread_ms'):.1f} ms |"
            )
            lines.append(
                f"| server runnable but waiting for a CPU (other load) | {int(n):,} | {label} "
                f"| {_median(bare, 'runqueue_ms'):.0f} ms (max {_max(bare, 'runqueue_ms'):.0f}) "
                f"| {_median(gateway, 'runqueue_ms'):.0f} ms (max {_max(gateway, 'runqueue_ms'):.0f}) |"
            )
            lines.append(
                f"| publish answer → gateway has the document | {int(n):,} | {label} | "
                f"| {_median(gateway, 'answer_to_document_ms'):.1f} ms |"
            )
        memory = phase["memory"]
        lines.append(
            f"| connect N (s) | {int(n):,} | | {memory['bare']['connect_s']:.1f} "
            f"| {memory['gateway']['connect_s']:.1f} |"
        )
    apply = results["apply"]
    single = apply["single"]
    received = [s["answer_to_first_ms"] for s in single]
    lines += [
        f"| (c) acks counted by the gateway / expected | {apply['full_clients']:,} "
        f"| 1 KiB | | {apply['acks_counted']:.0f} / {apply['acks_expected']} |",
        f"| (d) publish request → registry answer | 1 | 1 KiB | | {_median(single, 'publish_ms'):.1f} ms |",
        f"| (d) registry answer → client received | 1 | 1 KiB | | {statistics.median(received):.1f} ms "
        f"(p99 {percentile(received, 0.99):.1f}) |",
        "| (d) event created → revision queued to every session (anvil_push_propagation_seconds) "
        f"| 1 | 1 KiB | | {_median(single, 'propagation_ms'):.1f} ms |",
    ]
    nacks = sum(s.get("nacks", 0) for s in apply["full"]["gateway"] + apply["full"]["bare"] + single)
    lines.append(f"| nacks (every full client) | | | | {nacks:.0f} |")
    return lines


def markdown(report: dict[str, Any]) -> str:
    results = report["results"]
    machine = report["machine"]
    pinned = (
        "the measured servers pinned to CPU 0; clients, registry and the bench on CPU 1"
        if report["pinned"]
        else "not pinned (one CPU)"
    )
    lines = [
        f"### Push gateway on {report['database']} "
        f"({machine['cpu_count']} x {machine['cpu_model']}; {pinned})",
        "",
        "| measure | N | payload | baseline (a) | gateway | result | goal | |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *_fanout_rows(results),
        *_apply_rows(results),
        *_memory_rows(results),
        *_details(results),
        "",
        "(a) is timed from just before `websockets.broadcast()` of the gateway's own snapshot frame to "
        "the last client's receipt; (b) from the moment the gateway has the revision document (a relay "
        "in front of the registry notes when its answer was written) to the last client's receipt: the "
        "gateway's parse, signature and digest checks, encoding, fan-out and delivery. *End to end* adds "
        "the publish through the registry, the event feed and the document fetch (through the relay). "
        "(c) both sides to the last ack written, the gateway's from the publish request; both send the "
        "clients a snapshot, then deltas. The event lag is the gateway's "
        "`anvil_push_feed_lag_seconds` (event `created_at` → handled) read after each (d) publish. "
        f"Medians of {len(next(iter(results['fanout'].values()))['1 KiB']['bare'])} interleaved rounds; "
        f"the run took {report['seconds']:.0f} s.",
    ]
    return "\n".join(lines)
