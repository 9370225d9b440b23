"""``anvil fleet``: which client holds which revision, from the push gateway's fleet view
(``GET /v1/fleet/summary`` and ``GET /v1/fleet`` on the context's ``gateway_url``)."""

from __future__ import annotations

import time
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..client import JSON, HttpClient
from ..errors import UsageProblem
from ..output import Column, Printer, short_hash, when
from ..runtime import LimitOpt, OutputOpt, Run, runner, token_claims

__all__ = ["fleet", "GatewayClient", "Status"]

# Replaced by tests: the pause between two refreshes of --watch.
_sleep = time.sleep


class Status(StrEnum):
    connected = "connected"
    stale = "stale"
    disconnected = "disconnected"


class GatewayClient(HttpClient):
    """The push gateway's fleet view."""

    service = "push gateway"

    def fleet_summary(self, filters: dict[str, Any]) -> JSON:
        summary: JSON = self.json("GET", "/v1/fleet/summary", params=filters)
        return summary

    def list_fleet(self, filters: dict[str, Any], *, limit: int | None) -> list[JSON]:
        return self.items("/v1/fleet", limit=limit, **filters)


def gateway_of(run: Run) -> GatewayClient:
    """The push gateway of the context, with its token."""
    url, token = run.resolved.gateway_url, run.resolved.token
    if not url:
        raise UsageProblem(
            "no push-gateway URL: run `anvil context set --gateway-url URL` "
            "(or pass --gateway-url to `anvil login`), or set ANVIL_GATEWAY_URL"
        )
    if not token:
        raise UsageProblem("no token: run `anvil login --url URL --token TOKEN` or set ANVIL_TOKEN")
    return GatewayClient(url, token, allow_http=run.resolved.gateway_allow_http or run.globals.insecure_http)


def _environment(item: JSON) -> str:
    env = item.get("environment") or {}
    return f"{env.get('organisation')}/{env.get('project')}/{env.get('name')}"


def _revisions(summary: JSON) -> str:
    parts = []
    for r in summary.get("revisions", []):
        nacks = f", {r['nacks']} nack{'s' if r['nacks'] != 1 else ''}" if r.get("nacks") else ""
        parts.append(f"r{r['revision']}: {r['clients']}{nacks}")
    if summary.get("without_revision"):
        parts.append(f"none: {summary['without_revision']}")
    return "; ".join(parts)


SUMMARY_COLUMNS: list[Column] = [
    ("ENVIRONMENT", _environment),
    ("CLIENTS", "clients"),
    ("CONNECTED", "connected"),
    ("STALE", "stale"),
    ("DISCONNECTED", "disconnected"),
    ("REVISIONS (clients, nacks)", _revisions),
]


def _nack(item: JSON) -> str | None:
    nack = item.get("last_nack")
    if not nack:
        return None
    detail = f" ({nack['detail']})" if nack.get("detail") else ""
    return f"r{nack['revision']} {nack['code']}{detail}"


def _held(item: JSON) -> str | None:
    held = item.get("revision")
    return f"r{held['number']} {short_hash(held['manifest_digest'])}" if held else None


CLIENT_COLUMNS: list[Column] = [
    ("CLIENT", "client_id"),
    ("ENVIRONMENT", _environment),
    ("SDK", lambda i: f"{i['sdk']['name']} {i['sdk']['version']}"),
    ("REVISION", _held),
    ("STATUS", lambda i: i["status"] + (" (http)" if i.get("transport") == "http" else "")),
    ("LAST NACK", _nack),
    ("LABELS", lambda i: ",".join(f"{k}={v}" for k, v in sorted((i.get("labels") or {}).items())) or None),
    ("REPLICA", "replica"),
    ("LAST SEEN", lambda i: when(i.get("last_seen_at"))),
]


def _clients_table(printer: Printer, clients: list[JSON]) -> Table:
    table = printer.table(clients, CLIENT_COLUMNS, title="Clients")
    table.columns[0].no_wrap = True  # a client id is copied whole, never folded
    return table


def _fetch(gateway: GatewayClient, filters: dict[str, Any], limit: int | None) -> JSON:
    scope = {k: filters[k] for k in ("organisation", "project", "environment")}
    return {
        "summary": gateway.fleet_summary(scope).get("environments", []),
        "clients": gateway.list_fleet(filters, limit=limit),
    }


def _render(printer: Printer, data: JSON, *, footer: str | None = None) -> RenderableType:
    parts: list[RenderableType] = []
    if data["summary"]:
        parts.append(printer.table(data["summary"], SUMMARY_COLUMNS, title="Environments"))
    else:
        parts.append(Text("no clients have connected yet"))
    if data["clients"]:
        parts += [Text(""), _clients_table(printer, data["clients"])]
    elif data["summary"]:
        parts.append(Text("no client matches these filters"))
    if footer:
        parts += [Text(""), Text(footer, style="dim")]
    return Group(*parts)


def _watch(
    printer: Printer, gateway: GatewayClient, filters: dict[str, Any], limit: int | None, interval: float
) -> None:
    def view() -> RenderableType:
        data = _fetch(gateway, filters, limit)
        stamp = datetime.now().astimezone().strftime("%H:%M:%S")
        return _render(printer, data, footer=f"updated {stamp}, every {interval:g} s; Ctrl-C to stop")

    with Live(view(), console=printer.console, auto_refresh=False) as live:
        try:
            while True:
                _sleep(interval)
                live.update(view(), refresh=True)
        except KeyboardInterrupt:
            return


def fleet(
    ctx: typer.Context,
    org: Annotated[
        str | None,
        typer.Option("--org", help="Organisation slug (default: the context's, then the token's)."),
    ] = None,
    project: Annotated[str | None, typer.Option("--project", help="Only this project.")] = None,
    env: Annotated[str | None, typer.Option("--env", help="Only this environment (name).")] = None,
    revision: Annotated[
        int | None, typer.Option("--revision", min=1, help="Only clients whose last ack is this revision.")
    ] = None,
    status: Annotated[Status | None, typer.Option("--status", help="Only clients with this status.")] = None,
    limit: LimitOpt = None,
    output: OutputOpt = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh in place until Ctrl-C.")] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.5, help="Seconds between refreshes with --watch.")
    ] = 2.0,
) -> None:
    """Which client (id, SDK, labels) holds which revision, and its last nack: per environment
    counts, then the clients (from the push gateway's fleet view)."""
    run = runner(ctx, output=output)
    if watch and run.printer.machine:
        raise UsageProblem("--watch shows tables: leave out -o json/yaml")
    token_org = token_claims(run.resolved.token).get("org") if run.resolved.token else None
    filters = {
        "organisation": org or run.resolved.org or (token_org if isinstance(token_org, str) else None),
        "project": project,
        "environment": env,
        "revision": revision,
        "status": None if status is None else status.value,
    }
    with gateway_of(run) as gateway:
        if watch:
            _watch(run.printer, gateway, filters, limit, interval)
            return
        data = _fetch(gateway, filters, limit)
        run.printer.show(data, lambda: run.printer.console.print(_render(run.printer, data)))
