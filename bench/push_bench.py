"""Push benchmark (``make bench-push``): a measurement, not a test; it exits 0 when a goal is missed.

Real processes on loopback: the registry (``python -m anvil_registry serve``, Postgres by
default in a database of its own, ``--database sqlite`` for the embedded default; the instance
also starts an idle bundle worker), push gateways (``python -m anvil_push_gateway serve``, each
with its own schema or SQLite file and a registry service token), the baseline — a bare
``websockets`` server (bench/push_servers.py) — and client processes (bench/push_clients.py).
With two CPUs or more, the measured servers are pinned to CPU 0 and everything else (clients,
registry, this script) to CPU 1. Every time is wall clock (``time.time()``) on one machine; each
round waits (up to 1 s) for a moment when the machine's CPUs are idle, so that other work on a
shared machine hits fewer rounds.

(a)/(b) **send-to-all**, N light clients (they count frames) per server, payloads ~1 KiB and
~100 KiB (a revision of one prompt sized so): (a) ``websockets.broadcast`` of the gateway's own
snapshot frame bytes, timed from just before the call to the last client's receipt; (b) a
revision published through the registry reaching every client of the gateway, timed from the
moment the gateway has the revision document (a relay in front of the registry notes when the
document's answer was written to the gateway) to the last client's receipt: the gateway's
parse + signature and digest checks + encoding + fan-out + delivery. The end to end time (from
the publish request) is reported beside it. Rounds interleave (a) and (b); medians.

(c) N_full clients on the real apply path (parse, verify signature and digests, floor, apply,
ack): publish → every client acked, against (a) with the same clients (the bare server sends
them what the gateway's clients get, a snapshot and then deltas, of real revisions of another
environment), each to the last ack written.

(d) publish request → one connected client applied (it verified and acked), ``--publishes``
times; the registry → gateway **event lag** is the gateway's own ``anvil_push_feed_lag_seconds``
(event ``created_at`` → the gateway handled the event) read after each of those publishes.

**Idle memory per connection**: VmRSS of the server process before and after N idle clients
connected (for the gateway after hello → welcome → snapshot), over N; gateway vs bare.

Prints a markdown table and writes every raw figure to ``.bench/push.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import BENCH, log, machine_info, percentile, port_open
from push_procs import CLIENT_CPU, SERVER_CPU, TWO_CPUS, Child, Clients, pin, quiet
from push_report import markdown
from push_rounds import bare_round, connect_idle, gateway_round, helper, median_of, order
from push_stack import Gateway, Stack

ROOT = BENCH.parent
PAYLOADS = (("1 KiB", "small"), ("100 KiB", "large"))
LARGE_TEMPLATE_BYTES = 100 * 1024 - 1250  # a ~100 KiB snapshot frame with the manifest and envelope
PAUSE = 0.3  # between rounds, so that one round's stragglers never overlap the next


def payload_rounds(
    stack: Stack,
    servers: tuple[Child, Gateway, Child],
    clients: dict[str, Clients],
    counts: dict[str, int],
    prompt: str,
    rounds: int,
) -> dict[str, list[dict[str, float]]]:
    """Interleaved send-to-all rounds of one payload size: bare and gateway, alternating who goes first."""
    bare, gateway, relay = servers

    def one(side: str) -> dict[str, float]:
        counts[side] += 1
        if side == "bare":
            return bare_round(bare, clients[side], counts[side])
        return gateway_round(stack, gateway, clients[side], "fanout", prompt, counts[side], relay)

    one("gateway")  # priming (not kept): the first revision of this size, whose frame the baseline sends
    frame = stack.log_dir / f"frame-{prompt}.json"
    frame.write_text(stack.frame("fanout", stack.environments["fanout"].revision))
    bare.ask(f"load {frame}")
    one("bare")
    samples: dict[str, list[dict[str, float]]] = {"bare": [], "gateway": []}
    for index in range(rounds):
        for side in order(index):
            time.sleep(PAUSE)
            quiet()
            samples[side].append(one(side))
    return samples


def fanout_phase(stack: Stack, n: int, rounds: int) -> dict[str, Any]:
    """(a), (b) and idle memory for N light clients per server (fresh servers for each N)."""
    registry = f"127.0.0.1:{stack.instance.registry_port}"
    relay, relay_port = helper(f"relay-{n}", "proxy", CLIENT_CPU, stack.log_dir, "--upstream", registry)
    bare, bare_port = helper(f"bare-{n}", "bare", SERVER_CPU, stack.log_dir)
    gateway = Gateway(stack, f"fanout-{n}", f"http://127.0.0.1:{relay_port}", n + 100)
    stack.publish("fanout", "small")  # clients connect to a small current revision
    clients: dict[str, Clients] = {}
    try:
        clients["bare"], bare_memory = connect_idle(stack, f"bare-light-{n}", bare.pid, bare_port, n, False)
        clients["gateway"], gw_memory = connect_idle(
            stack, f"gateway-light-{n}", gateway.pid, gateway.port, n, True
        )
        result: dict[str, Any] = {"memory": {"bare": bare_memory, "gateway": gw_memory}}
        servers = (bare, gateway, relay)
        counts = {"bare": 0, "gateway": 2}  # messages each client has had (welcome + snapshot)
        for label, prompt in PAYLOADS:
            samples = result[label] = payload_rounds(stack, servers, clients, counts, prompt, rounds)
            medians = median_of(samples["bare"]), median_of(samples["gateway"])
            log(f"N={n} {label}: bare {medians[0]} ms, gateway {medians[1]} ms")
        return result
    finally:
        for child in clients.values():
            child.stop()
        gateway.stop()
        bare.stop()
        relay.stop()


def full_rounds(
    stack: Stack, gateway: Gateway, bare: Child, clients: dict[str, Clients], rounds: int
) -> dict[str, list[dict[str, float]]]:
    """(c): interleaved rounds to N clients on the real apply path, bare and gateway."""
    apply_env = stack.environments["apply"]
    samples: dict[str, list[dict[str, float]]] = {"bare": [], "gateway": []}
    for index in range(-1, rounds):  # round -1 warms both sides up and is not kept
        # The bare server sends what the gateway's clients get: a snapshot first, then deltas.
        number = stack.publish("bare", "small")
        frame = stack.log_dir / "frame-bare.json"
        frame.write_text(stack.frame("bare", number, None if index < 0 else number - 1))
        bare.ask(f"load {frame}")
        for side in order(index):
            time.sleep(PAUSE)
            quiet()
            if side == "bare":
                sample = bare_round(bare, clients[side], number)
            else:
                target = apply_env.revision + 1
                sample = gateway_round(stack, gateway, clients[side], "apply", "small", target, None)
            if index >= 0:
                samples[side].append(sample)
    return samples


def single_rounds(stack: Stack, gateway: Gateway, publishes: int) -> list[dict[str, float]]:
    """(d) and the event lag: publishes to one connected client on the real apply path."""
    apply_env = stack.environments["apply"]
    config = stack.client_config("full", gateway.port, "apply", 1, token=True)
    one = Clients("gateway-one", config, stack.log_dir)
    try:
        one.reach(apply_env.revision)
        single = []
        for _ in range(publishes):
            quiet()
            single.append(gateway_round(stack, gateway, one, "apply", "small", apply_env.revision + 1, None))
        return single
    finally:
        one.stop()


def apply_phase(stack: Stack, n: int, rounds: int, publishes: int) -> dict[str, Any]:
    """(c) N full clients per server, then (d) and the event lag with one client."""
    bare, bare_port = helper("bare-apply", "bare", SERVER_CPU, stack.log_dir)
    gateway = Gateway(stack, "apply", stack.instance.registry_url, n + 100)
    clients: dict[str, Clients] = {}
    try:
        config = stack.client_config("full", gateway.port, "apply", n, token=True)
        clients["gateway"] = Clients("gateway-full", config, stack.log_dir)
        clients["gateway"].reach(stack.environments["apply"].revision)
        config = stack.client_config("full", bare_port, "bare", n, token=False)
        clients["bare"] = Clients("bare-full", config, stack.log_dir)
        samples = full_rounds(stack, gateway, bare, clients, rounds)
        time.sleep(2.0)  # the last acks reach the gateway's counter
        acks = gateway.scrape().get("anvil_push_acks_total", 0.0)
        stats = {side: json.loads(child.ask("stats")) for side, child in clients.items()}
        log(f"(c) N={n}: bare {median_of(samples['bare'])} ms, gateway {median_of(samples['gateway'])} ms")
        for child in clients.values():
            child.stop()
        clients.clear()
        single = single_rounds(stack, gateway, publishes)
        log(f"(d): publish → applied median {median_of(single)} ms")
        return {
            "full_clients": n,
            "full": samples,
            "acks_counted": acks,
            "acks_expected": n * (rounds + 2),  # the initial snapshot, the warm-up round, the rounds
            "clients": stats,
            "single": single,
        }
    finally:
        for child in clients.values():
            child.stop()
        gateway.stop()
        bare.stop()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--sizes", default="1000,10000", help="light clients per server, comma-separated")
    parser.add_argument("--full", type=int, default=1000, help="clients on the real apply path for (c)")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds per measurement")
    parser.add_argument("--publishes", type=int, default=120, help="publishes for (d) and the event lag")
    parser.add_argument("--quick", action="store_true", help="a short smoke: N=200, 3 rounds, 30 publishes")
    parser.add_argument("--logs", type=Path, help="keep every process's log (and data) in this directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.full, args.rounds, args.publishes = "200", 200, 3, 30
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by every process started here
    pin(os.getpid(), CLIENT_CPU)
    if args.database == "postgres" and not port_open("127.0.0.1", 5432):
        log("Postgres is not reachable at 127.0.0.1:5432: measuring on SQLite")
        args.database = "sqlite"
    os.environ["ANVIL_TEST_DATABASE"] = args.database
    sizes = [int(s) for s in args.sizes.split(",")]
    started = time.monotonic()
    results: dict[str, Any] = {"fanout": {}}
    with contextlib.ExitStack() as scope:
        work = args.logs or Path(scope.enter_context(tempfile.TemporaryDirectory(prefix="anvil-push-bench-")))
        stack = scope.enter_context(Stack.start(work))
        log(f"registry up on {args.database} at {stack.instance.registry_url}; logs in {work}")
        stack.seed(LARGE_TEMPLATE_BYTES)
        for n in sizes:
            results["fanout"][str(n)] = fanout_phase(stack, n, args.rounds)
        results["apply"] = apply_phase(stack, args.full, args.rounds, args.publishes)
    lags = [s["feed_lag_ms"] for s in results["apply"]["single"]]
    results["event_lag"] = {
        "p50_ms": percentile(lags, 0.5),
        "p99_ms": percentile(lags, 0.99),
        "count": len(lags),
    }
    report = {
        "database": args.database,
        "pinned": TWO_CPUS,
        "seconds": round(time.monotonic() - started, 1),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine_info({}),
        "results": results,
    }
    out = ROOT / ".bench" / "push.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
