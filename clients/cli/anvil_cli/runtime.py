"""What every command shares: global options, the resolved context, the client, the printer."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from .client import AnvilClient
from .config import Resolved, load_config, resolve
from .errors import UsageProblem
from .output import Output, Printer
from .worker import WorkerClient

__all__ = [
    "Globals",
    "Run",
    "runner",
    "token_claims",
    "OutputOpt",
    "DryRunOpt",
    "OrgOpt",
    "ProjectOpt",
    "LimitOpt",
    "MessageOpt",
]

OutputOpt = Annotated[
    Output | None,
    typer.Option("--output", "-o", case_sensitive=False, help="table (default), json or yaml."),
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print the request that would be sent (no token) and send nothing.")
]
OrgOpt = Annotated[str | None, typer.Option("--org", help="Organisation slug (default: the context's).")]
ProjectOpt = Annotated[str | None, typer.Option("--project", help="Project slug (default: the context's).")]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="Show at most this many items.")]
MessageOpt = Annotated[str, typer.Option("--message", "-m", help="Why: recorded with the change.")]


@dataclass
class Globals:
    """The root command's options; subcommands may override output and dry-run."""

    output: Output = Output.table
    context: str | None = None
    insecure_http: bool = False
    dry_run: bool = False


def globals_of(ctx: typer.Context) -> Globals:
    obj = ctx.find_object(Globals)
    if obj is None:
        obj = ctx.ensure_object(Globals)
    return obj


def token_claims(token: str) -> dict[str, Any]:
    """The token's claims, unverified: for display only (who, which kind, until when)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


@dataclass
class Run:
    """One command's run: the context it resolved to and how to print."""

    globals: Globals
    resolved: Resolved
    printer: Printer
    dry_run: bool
    org_option: str | None = None
    project_option: str | None = None

    @property
    def org(self) -> str:
        value = self.org_option or self.resolved.org
        if not value:
            raise UsageProblem("no organisation: pass --org ORG or run `anvil context set --org ORG`")
        return value

    @property
    def project(self) -> str:
        value = self.project_option or self.resolved.project
        if not value:
            raise UsageProblem(
                "no project: pass --project PROJECT or run `anvil context set --project PROJECT`"
            )
        return value

    def client(self) -> AnvilClient:
        url, token = self.resolved.url, self.resolved.token
        if not url:
            raise UsageProblem("no registry URL: run `anvil login --url URL --token TOKEN` or set ANVIL_URL")
        if not token:
            raise UsageProblem("no token: run `anvil login --url URL --token TOKEN` or set ANVIL_TOKEN")
        allow_http = self.resolved.allow_http or self.globals.insecure_http
        return AnvilClient(url, token, allow_http=allow_http, dry_run=self.dry_run)

    def worker(self, *, dry_run: bool | None = None) -> WorkerClient:
        """The bundle worker (a second service), with the context's token."""
        url, token = self.resolved.worker_url, self.resolved.token
        if not url:
            raise UsageProblem(
                "no bundle-worker URL: run `anvil context set --worker-url URL` "
                "(or pass --worker-url to `anvil login`), or set ANVIL_WORKER_URL"
            )
        if not token:
            raise UsageProblem("no token: run `anvil login --url URL --token TOKEN` or set ANVIL_TOKEN")
        allow_http = self.resolved.worker_allow_http or self.globals.insecure_http
        return WorkerClient(
            url, token, allow_http=allow_http, dry_run=self.dry_run if dry_run is None else dry_run
        )


def runner(
    ctx: typer.Context,
    *,
    output: Output | None = None,
    dry_run: bool = False,
    org: str | None = None,
    project: str | None = None,
) -> Run:
    """Resolve the context for a command; per-command -o/--dry-run win over the root's."""
    g = globals_of(ctx)
    if output is not None:
        g.output = output
    g.dry_run = g.dry_run or dry_run
    resolved = resolve(load_config(), g.context)
    return Run(
        globals=g,
        resolved=resolved,
        printer=Printer(g.output),
        dry_run=g.dry_run,
        org_option=org,
        project_option=project,
    )
