"""``anvil tokens issue|list|revoke`` and ``anvil audit``."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.text import Text

from ..client import JSON
from ..errors import UsageProblem
from ..output import Column, when
from ..runtime import DryRunOpt, LimitOpt, OrgOpt, OutputOpt, runner

__all__ = ["tokens_app", "audit", "parse_ttl"]

tokens_app = typer.Typer(help="Scoped, expiring tokens.", no_args_is_help=True)
TTL = re.compile(r"^(\d+)([smhdw]?)$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class Kind(StrEnum):
    operator = "operator"
    service = "service"
    client = "client"
    peer = "peer"


TOKEN_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("KIND", "kind"),
    ("NAME", "name"),
    ("ORG", "org"),
    ("PROJECT", "project"),
    ("ENV", "environment"),
    ("EXPIRES", lambda t: when(t["expires_at"])),
    ("REVOKED", lambda t: when(t["revoked_at"]) if t.get("revoked_at") else ""),
]
TOKEN_FIELDS: list[Column] = [
    ("id", "id"),
    ("subject", "subject"),
    ("kind", "kind"),
    ("org", "org"),
    ("project", "project"),
    ("environment", "environment"),
    ("scopes", lambda t: " ".join(t["scopes"])),
    ("audience", lambda t: " ".join(t["audience"])),
    ("expires", "expires_at"),
    ("revoked", "revoked_at"),
]
AUDIT_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("AT", lambda e: when(e["at"])),
    ("ACTOR", "actor"),
    ("ACTION", "action"),
    ("ORG", "org"),
    ("TARGET", "target"),
]


def parse_ttl(text: str) -> int:
    """Seconds from '3600', '90m', '12h', '30d' or '2w'."""
    match = TTL.match(text.strip().lower())
    if not match or int(match.group(1)) < 1:
        raise UsageProblem(f"--ttl {text!r}: expected a number of seconds or e.g. 90m, 12h, 30d, 2w")
    return int(match.group(1)) * UNITS[match.group(2)]


@tokens_app.command("issue")
def issue_token(
    ctx: typer.Context,
    kind: Annotated[Kind, typer.Option("--kind", help="operator, service, client or peer.")],
    name: Annotated[str, typer.Option("--name", help="What the token is for; its subject is KIND:NAME.")],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="A scope (repeatable); default: all the kind may hold."),
    ] = None,
    org: OrgOpt = None,
    project: Annotated[str | None, typer.Option("--project", help="Limit to one project.")] = None,
    environment: Annotated[
        str | None, typer.Option("--environment", help="Limit to one environment.")
    ] = None,
    ttl: Annotated[
        str | None, typer.Option("--ttl", help="Lifetime, e.g. 12h or 30d (default per kind).")
    ] = None,
    audience: Annotated[
        list[str] | None, typer.Option("--audience", help="A service that accepts it (repeatable).")
    ] = None,
    instance_wide: Annotated[
        bool, typer.Option("--instance-wide", help="No organisation limit (instance administrators only).")
    ] = False,
    output: OutputOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Issue a token. The token string is printed once, here, and never stored by the registry."""
    run = runner(ctx, output=output, dry_run=dry_run, org=org, project=project)
    if environment and not project:
        project = run.project  # an environment limit only means something within a project
    if instance_wide and (org or project or environment):
        raise UsageProblem("--instance-wide cannot go with --org, --project or --environment")
    body: dict[str, Any] = {
        "kind": kind.value,
        "name": name,
        "org": None if instance_wide else run.org,
        "project": project,
        "environment": environment,
        "scopes": scope or None,
        "ttl_seconds": parse_ttl(ttl) if ttl else None,
        "audience": audience or None,
    }
    with run.client() as client:
        issued = client.issue_token({k: v for k, v in body.items() if v is not None})
    printer = run.printer

    def render() -> None:
        printer.fields(issued, TOKEN_FIELDS)
        printer.note("token (shown only now; store it safely):")
        printer.console.print(Text(issued["token"]), soft_wrap=True)

    printer.show(issued, render)


@tokens_app.command("list")
def list_tokens(
    ctx: typer.Context,
    include_revoked: Annotated[bool, typer.Option("--include-revoked", help="Also revoked tokens.")] = False,
    include_expired: Annotated[bool, typer.Option("--include-expired", help="Also expired tokens.")] = False,
    output: OutputOpt = None,
    limit: LimitOpt = None,
) -> None:
    """List the tokens this caller may see (never the token strings)."""
    run = runner(ctx, output=output)
    with run.client() as client:
        items = client.list_tokens(
            include_revoked=include_revoked, include_expired=include_expired, limit=limit
        )
    run.printer.rows(items, TOKEN_COLUMNS, empty="no tokens")


@tokens_app.command("revoke")
def revoke_token(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(metavar="ID", help="The token's id (its jti).")],
    output: OutputOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Revoke a token (idempotent)."""
    run = runner(ctx, output=output, dry_run=dry_run)
    with run.client() as client:
        revoked: JSON = client.revoke_token(token_id)
    run.printer.show(revoked, lambda: run.printer.note(f"revoked {revoked['subject']} ({revoked['id']})"))


def audit(
    ctx: typer.Context,
    action: Annotated[str | None, typer.Option("--action", help="Exact action, e.g. token.issue.")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Exact actor (token subject).")] = None,
    target: Annotated[str | None, typer.Option("--target", help="Exact target.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="ISO time with offset, e.g. 2026-01-01T00:00:00Z.")
    ] = None,
    output: OutputOpt = None,
    limit: LimitOpt = 50,
) -> None:
    """Read the audit log, newest first."""
    run = runner(ctx, output=output)
    with run.client() as client:
        items = client.list_audit(limit=limit, action=action, actor=actor, target=target, since=since)
    run.printer.rows(items, AUDIT_COLUMNS, empty="no audit entries")
