"""``anvil login`` and ``anvil context list|use|show|set|delete``."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from ..client import AnvilClient, check_url
from ..config import DEFAULT_CONTEXT, Context, config_path, load_config, save_config, with_defaults
from ..errors import UsageProblem
from ..output import Column, Printer
from ..runtime import OrgOpt, OutputOpt, ProjectOpt, globals_of, runner, token_claims

__all__ = ["context_app", "login"]

context_app = typer.Typer(
    help="Named contexts (registry, bundle-worker and push-gateway URLs, token, default org and project).",
    no_args_is_help=True,
)
NameArg = Annotated[str | None, typer.Argument(help="Context name (default: the current one).")]


def _identity(token: str) -> dict[str, Any]:
    claims = token_claims(token)
    expires = claims.get("exp")
    return {
        "subject": claims.get("sub"),
        "kind": claims.get("kind"),
        "token_org": claims.get("org"),
        "expires_at": datetime.fromtimestamp(expires, UTC).isoformat() if isinstance(expires, int) else None,
    }


def login(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option("--url", help="The registry's base URL, e.g. https://anvil.example.com.")
    ],
    token: Annotated[str, typer.Option("--token", help="A bearer token; '-' reads it from stdin.")],
    context: Annotated[
        str | None, typer.Option("--context", help=f"Store as this context (default {DEFAULT_CONTEXT!r}).")
    ] = None,
    org: OrgOpt = None,
    project: ProjectOpt = None,
    worker_url: Annotated[
        str | None,
        typer.Option("--worker-url", help="The bundle worker's base URL (for export, import, peers)."),
    ] = None,
    gateway_url: Annotated[
        str | None, typer.Option("--gateway-url", help="The push gateway's base URL (for fleet).")
    ] = None,
    insecure_http: Annotated[
        bool, typer.Option("--insecure-http", help="Allow plain http to a non-loopback host (development).")
    ] = False,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Check the token against the registry.")
    ] = True,
    output: OutputOpt = None,
) -> None:
    """Store a registry URL and token as a context and make it the current one."""
    g = globals_of(ctx)
    allow_http = insecure_http or g.insecure_http
    if token == "-":  # noqa: S105 - the stdin marker, not a password
        token = sys.stdin.readline().strip()
    if not token.strip():
        raise UsageProblem("the token is empty")
    base = check_url(url, allow_http=allow_http)
    worker = check_url(worker_url, allow_http=allow_http, what="bundle-worker URL") if worker_url else None
    gateway = check_url(gateway_url, allow_http=allow_http, what="push-gateway URL") if gateway_url else None
    if verify:
        with AnvilClient(base, token, allow_http=allow_http) as client:
            client.json("GET", "/v1/orgs", params={"page_size": 1})
    name = context or g.context or DEFAULT_CONTEXT
    config = load_config()
    previous = config.contexts.get(name)
    entry = Context(url=base, token=token.strip(), allow_http=allow_http)
    if previous is not None and previous.url == base:
        entry = with_defaults(
            entry,
            org=previous.org or "",
            project=previous.project or "",
            worker_url=previous.worker_url or "",
            gateway_url=previous.gateway_url or "",
        )
    config.contexts[name] = with_defaults(
        entry, org=org, project=project, worker_url=worker, gateway_url=gateway
    )
    config.current = name
    path = save_config(config)
    printer = Printer(output or g.output)
    data = {**config.contexts[name].public(name, current=True), **_identity(token)}
    printer.show(
        data,
        lambda: printer.note(
            f"logged in to {base} as {data['subject'] or '?'}; context {name!r} saved in {path}"
        ),
    )


@context_app.command("list")
def list_contexts(ctx: typer.Context, output: OutputOpt = None) -> None:
    """List the stored contexts (never their tokens)."""
    config = load_config()
    items = [c.public(n, current=n == config.current) for n, c in sorted(config.contexts.items())]
    printer = Printer(output or globals_of(ctx).output)
    columns: list[Column] = [
        ("", lambda i: "*" if i["current"] else ""),
        ("NAME", "name"),
        ("URL", "url"),
        ("WORKER", "worker_url"),
        ("GATEWAY", "gateway_url"),
        ("ORG", "org"),
        ("PROJECT", "project"),
    ]
    printer.rows(items, columns, empty="no contexts: run `anvil login --url URL --token TOKEN`")


@context_app.command("use")
def use_context(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="The context to make current.")]
) -> None:
    """Make a stored context the current one."""
    config = load_config()
    if name not in config.contexts:
        raise UsageProblem(f"no context named {name!r}; see `anvil context list`")
    config.current = name
    save_config(config)
    Printer(globals_of(ctx).output).note(f"current context: {name}")


@context_app.command("show")
def show_context(ctx: typer.Context, name: NameArg = None, output: OutputOpt = None) -> None:
    """Show the context a command would use, after ANVIL_URL/ANVIL_TOKEN/ANVIL_CONTEXT overrides."""
    if name:
        globals_of(ctx).context = name
    run = runner(ctx, output=output)
    r = run.resolved
    data: dict[str, Any] = {
        "name": r.name,
        "url": r.url,
        "worker_url": r.worker_url,
        "gateway_url": r.gateway_url,
        "org": r.org,
        "project": r.project,
        "allow_http": r.allow_http,
        "token": "set" if r.token else None,
        "config_file": str(config_path()),
        **(_identity(r.token) if r.token else {}),
    }
    keys = [(k.replace("_", " "), k) for k in data]
    run.printer.fields(data, keys)


@context_app.command("set")
def set_context(
    ctx: typer.Context,
    name: NameArg = None,
    org: OrgOpt = None,
    project: ProjectOpt = None,
    worker_url: Annotated[
        str | None, typer.Option("--worker-url", help="The bundle worker's base URL ('' clears it).")
    ] = None,
    gateway_url: Annotated[
        str | None, typer.Option("--gateway-url", help="The push gateway's base URL ('' clears it).")
    ] = None,
) -> None:
    """Set a context's default --org and --project and its bundle-worker and push-gateway URLs (an
    empty value clears it)."""
    g = globals_of(ctx)
    config = load_config()
    target = name or g.context or config.current
    if not target or target not in config.contexts:
        raise UsageProblem("no such context; run `anvil login` first or see `anvil context list`")
    if org is None and project is None and worker_url is None and gateway_url is None:
        raise UsageProblem("nothing to set: pass --org, --project, --worker-url and/or --gateway-url")
    current = config.contexts[target]
    if worker_url:
        worker_url = check_url(
            worker_url, allow_http=current.allow_http or g.insecure_http, what="bundle-worker URL"
        )
    if gateway_url:
        gateway_url = check_url(
            gateway_url, allow_http=current.allow_http or g.insecure_http, what="push-gateway URL"
        )
    config.contexts[target] = with_defaults(
        current, org=org, project=project, worker_url=worker_url, gateway_url=gateway_url
    )
    save_config(config)
    stored = config.contexts[target]
    Printer(g.output).note(
        f"context {target!r}: org {stored.org or '-'}, project {stored.project or '-'}, "
        f"worker {stored.worker_url or '-'}, gateway {stored.gateway_url or '-'}"
    )


@context_app.command("delete")
def delete_context(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="The context to forget.")]
) -> None:
    """Forget a stored context and its token."""
    config = load_config()
    if config.contexts.pop(name, None) is None:
        raise UsageProblem(f"no context named {name!r}; see `anvil context list`")
    if config.current == name:
        config.current = None
    save_config(config)
    Printer(globals_of(ctx).output).note(f"context {name!r} deleted")
