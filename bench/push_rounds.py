"""One measurement of the push benchmark (bench/push_bench.py): a bare broadcast or a publish
through the registry, timed to the last client done; idle connections and the server's RSS."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from harness import BENCH, free_port, log
from push_procs import Child, Clients, cpu_seconds, rss_kib, sched_seconds, settle
from push_stack import Gateway, Stack

SERVERS = str(BENCH / "push_servers.py")


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def order(round_index: int) -> tuple[str, str]:
    return ("bare", "gateway") if round_index % 2 == 0 else ("gateway", "bare")


def helper(name: str, kind: str, cpus: set[int], log_dir: Path, *args: str) -> tuple[Child, int]:
    port = free_port()
    child = Child(name, [SERVERS, kind, "--port", str(port), *args], cpus, log_dir)
    if child.line(30) != "ready":
        raise RuntimeError(f"{name} did not start")
    return child, port


def bare_round(bare: Child, clients: Clients, target: int) -> dict[str, float]:
    """One broadcast by the bare server: before the call → the last client done."""
    clients.arm(target)
    cpu, waited = sched_seconds(bare.pid)
    client_cpu = cpu_seconds(clients.pid)
    started, returned = (float(w) for w in bare.ask("bcast").split())
    done = clients.wait()
    cpu_after, waited_after = sched_seconds(bare.pid)
    client_cpu = cpu_seconds(clients.pid) - client_cpu
    return {
        "ms": ms(done["last"] - started),
        "call_ms": ms(returned - started),
        "spread_ms": ms(done["last"] - done["first"]),
        "cpu_ms": ms(cpu_after - cpu),
        "runqueue_ms": ms(waited_after - waited),
        "clients_cpu_ms": ms(client_cpu),
        "bytes": done["bytes"],
        "reads": done["reads"],
        "nacks": done["nacks"],
    }


def gateway_round(
    stack: Stack,
    gateway: Gateway,
    clients: Clients,
    environment: str,
    prompt: str,
    target: int,
    relay: Child | None,
) -> dict[str, float]:
    """One publish through the registry → the last client done, with the gateway's own figures."""
    clients.arm(target)
    cpu, waited = sched_seconds(gateway.pid)
    client_cpu = cpu_seconds(clients.pid)
    sent = time.time()
    number = stack.publish(environment, prompt)
    answered = time.time()
    registry_cpu = cpu_seconds(stack.registry_pid)
    done = clients.wait()
    cpu_after, waited_after = sched_seconds(gateway.pid)
    # What else ran on the clients' CPU meanwhile: the registry (the feed, the document).
    registry_cpu = cpu_seconds(stack.registry_pid) - registry_cpu
    client_cpu = cpu_seconds(clients.pid) - client_cpu
    scraped = gateway.scrape()
    result = {
        "revision": number,
        "e2e_ms": ms(done["last"] - sent),
        "publish_ms": ms(answered - sent),
        "answer_to_first_ms": ms(done["received"] - answered),
        "spread_ms": ms(done["last"] - done["first"]),
        "cpu_ms": ms(cpu_after - cpu),
        "runqueue_ms": ms(waited_after - waited),
        "clients_cpu_ms": ms(client_cpu),
        "registry_cpu_after_answer_ms": ms(registry_cpu),
        "bytes": done["bytes"],
        "reads": done["reads"],
        "nacks": done["nacks"],
        "feed_lag_ms": ms(scraped.get("anvil_push_feed_lag_seconds", float("nan"))),
        "propagation_ms": ms(scraped["propagation"]),
    }
    if relay is not None:
        has = float(relay.ask(f"doc {number}"))
        result["ms"] = ms(done["last"] - has)
        result["answer_to_document_ms"] = ms(has - answered)
        # The gateway observes propagation when its fan-out call returned: created_at + that.
        queued = stack.event_time(environment, number) + scraped["propagation"]
        result["call_ms"] = ms(queued - has)
    else:
        result["ms"] = result["e2e_ms"]
    return result


def connect_idle(
    stack: Stack, name: str, pid: int, port: int, n: int, gateway: bool
) -> tuple[Clients, dict[str, Any]]:
    """N light clients, connected after a warm-up; the server's RSS before and after."""
    initial = 2 if gateway else 0  # welcome + snapshot of the current revision
    warm = Clients(
        f"{name}-warm", stack.client_config("light", port, "fanout", 50, token=gateway), stack.log_dir
    )
    warm.reach(initial)
    warm.stop()
    settle(pid)
    before = rss_kib(pid)
    clients = Clients(name, stack.client_config("light", port, "fanout", n, token=gateway), stack.log_dir)
    clients.reach(initial)
    settle(pid)
    after = rss_kib(pid)
    log(f"{name}: {n} connected in {clients.connect_seconds:.1f} s, {(after - before) / n:.1f} KiB each")
    return clients, {
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_connection": round((after - before) / n, 2),
        "connect_s": clients.connect_seconds,
    }


def median_of(samples: list[dict[str, float]], key: str = "ms") -> float:
    return round(statistics.median(s[key] for s in samples), 1) if samples else float("nan")
