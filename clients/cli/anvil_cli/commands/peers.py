"""``anvil peers add|list|show|update|remove|refresh-keys`` and ``anvil transfer --to PEER``.

Peers live in the bundle worker (``/v1/peers``, scope ``peers:admin``, per organisation): another
Anvil instance whose sealed bundles this organisation trusts (its issuer's keys), and where to
push them (its bundle worker, with the token its registry issued to us).
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from ..client import JSON
from ..errors import Failure, UsageProblem, one_line
from ..output import Column, Printer, short_hash, when
from ..progress import Steps, wanted
from ..runtime import DryRunOpt, LimitOpt, OrgOpt, OutputOpt, runner
from ..worker import follow_job
from .bundles import (
    DEFAULT_TIMEOUT,
    EnvironmentsOpt,
    FullHistoryOpt,
    OverrideOpt,
    ProgressOpt,
    PromptSel,
    PromptSetSel,
    Strategy,
    StrategyOpt,
    TimeoutOpt,
    parse_overrides,
    selection_of,
)

__all__ = ["peers_app", "transfer"]

peers_app = typer.Typer(
    help="Peer instances: whose bundles to trust and where to transfer them.", no_args_is_help=True
)
NameArg = Annotated[str, typer.Argument(help="The peer's name (a slug, unique in the organisation).")]


def _kids(peer: JSON) -> list[str]:
    jwks = peer.get("jwks")
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if isinstance(keys, list):
        return [str(k.get("kid")) for k in keys if isinstance(k, dict)]
    kids = peer.get("kids")
    return [str(k) for k in kids] if isinstance(kids, list) else []


PEER_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("ISSUER", "issuer"),
    ("URL", "url"),
    ("REMOTE ORG", "remote_organisation"),
    ("AUTO-APPLY", "auto_apply"),
    ("TOKEN", "has_token"),
    ("KEYS", lambda p: " ".join(_kids(p))),
    ("KEYS FETCHED", lambda p: when(p.get("keys_fetched_at"))),
]
PEER_FIELDS: list[Column] = [
    ("name", "name"),
    ("organisation", "organisation"),
    ("issuer", "issuer"),
    ("url", "url"),
    ("remote organisation", "remote_organisation"),
    ("auto-apply", "auto_apply"),
    ("token", lambda p: "set" if p.get("has_token") else "none"),
    ("keys", lambda p: " ".join(_kids(p))),
    ("keys fetched", "keys_fetched_at"),
    ("created", lambda p: f"{when(p.get('created_at'))} by {p.get('created_by')}"),
]


def _token(token: str | None, token_file: Path | None) -> str | None:
    if token is not None and token_file is not None:
        raise UsageProblem("give the peer's token with --token or --token-file, not both")
    if token == "-":  # noqa: S105 - the stdin marker, not a password
        token = sys.stdin.readline()
    elif token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageProblem(f"cannot read {token_file}: {exc}") from exc
    if token is None:
        return None
    if not token.strip():
        raise UsageProblem("the peer's token is empty")
    return token.strip()


def _jwks_file(path: Path | None) -> Any:
    if path is None:
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageProblem(f"cannot read the JWKS file {path}: {one_line(str(exc), 200)}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise UsageProblem(f"{path} is not a JWKS: an object with a 'keys' array")
    return document


TokenOpt = Annotated[
    str | None,
    typer.Option("--token", help="The token the peer's registry issued to us ('-' reads stdin)."),
]
TokenFileOpt = Annotated[Path | None, typer.Option("--token-file", help="Read the peer's token from a file.")]
UrlOpt = Annotated[
    str | None, typer.Option("--url", help="The peer's bundle-worker URL (needed to transfer to it).")
]
JwksOpt = Annotated[
    Path | None,
    typer.Option(
        "--jwks", help="The peer's JWKS file (default: fetched from <issuer>/.well-known/jwks.json)."
    ),
]


def _show_peer(printer: Printer, peer: JSON, note: str) -> None:
    def render() -> None:
        printer.note(note)
        printer.fields(peer, PEER_FIELDS)

    printer.show(peer, render)


@peers_app.command("add")
def add_peer(
    ctx: typer.Context,
    name: NameArg,
    issuer: Annotated[
        str,
        typer.Option(
            "--issuer", help="The peer registry's public URL (its tokens' iss, its bundles' exporter)."
        ),
    ],
    url: UrlOpt = None,
    remote_org: Annotated[
        str | None,
        typer.Option("--remote-org", help="The organisation on the peer (default: the same slug)."),
    ] = None,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    auto_apply: Annotated[
        bool, typer.Option("--auto-apply", help="Apply this peer's applicable imports without approval.")
    ] = False,
    jwks: JwksOpt = None,
    org: OrgOpt = None,
    output: OutputOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Register a peer instance for an organisation (its token is stored, never shown again)."""
    run = runner(ctx, output=output, dry_run=dry_run, org=org)
    body: dict[str, Any] = {
        "organisation": run.org,
        "name": name,
        "issuer": issuer,
        "url": url,
        "remote_organisation": remote_org,
        "token": _token(token, token_file),
        "auto_apply": auto_apply,
        "jwks": _jwks_file(jwks),
    }
    with run.worker() as worker:
        peer = worker.create_peer({k: v for k, v in body.items() if v is not None})
    _show_peer(run.printer, peer, f"peer {name} added to {run.org}")


@peers_app.command("list")
def list_peers(
    ctx: typer.Context, org: OrgOpt = None, output: OutputOpt = None, limit: LimitOpt = None
) -> None:
    """List an organisation's peers (never their tokens)."""
    run = runner(ctx, output=output, org=org)
    with run.worker() as worker:
        items = worker.list_peers(run.org, limit=limit)
    run.printer.rows(items, PEER_COLUMNS, empty=f"no peers in {run.org}: add one with `anvil peers add`")


@peers_app.command("show")
def show_peer(ctx: typer.Context, name: NameArg, org: OrgOpt = None, output: OutputOpt = None) -> None:
    """Show one peer."""
    run = runner(ctx, output=output, org=org)
    with run.worker() as worker:
        peer = worker.get_peer(run.org, name)
    run.printer.fields(peer, PEER_FIELDS)


@peers_app.command("update")
def update_peer(
    ctx: typer.Context,
    name: NameArg,
    url: UrlOpt = None,
    remote_org: Annotated[
        str | None, typer.Option("--remote-org", help="The organisation on the peer.")
    ] = None,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    auto_apply: Annotated[
        bool | None, typer.Option("--auto-apply/--no-auto-apply", help="Apply its imports without approval.")
    ] = None,
    jwks: JwksOpt = None,
    org: OrgOpt = None,
    output: OutputOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Change a peer: its URL, remote organisation, token, auto-apply or keys."""
    run = runner(ctx, output=output, dry_run=dry_run, org=org)
    body: dict[str, Any] = {
        "url": url,
        "remote_organisation": remote_org,
        "token": _token(token, token_file),
        "auto_apply": auto_apply,
        "jwks": _jwks_file(jwks),
    }
    changes = {k: v for k, v in body.items() if v is not None}
    if not changes:
        raise UsageProblem("nothing to change: pass --url, --remote-org, --token, --auto-apply or --jwks")
    with run.worker() as worker:
        peer = worker.update_peer(run.org, name, changes)
    _show_peer(run.printer, peer, f"peer {name} updated")


@peers_app.command("remove")
def remove_peer(
    ctx: typer.Context,
    name: NameArg,
    org: OrgOpt = None,
    output: OutputOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Remove a peer: its bundles are no longer trusted, its token is forgotten."""
    run = runner(ctx, output=output, dry_run=dry_run, org=org)
    with run.worker() as worker:
        removed = worker.delete_peer(run.org, name)
    data = removed or {"organisation": run.org, "name": name, "removed": True}
    run.printer.show(data, lambda: run.printer.note(f"peer {name} removed from {run.org}"))


@peers_app.command("refresh-keys")
def refresh_keys(
    ctx: typer.Context,
    name: NameArg,
    org: OrgOpt = None,
    output: OutputOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Fetch the peer's JWKS again (after it rotated its signing keys)."""
    run = runner(ctx, output=output, dry_run=dry_run, org=org)
    with run.worker() as worker:
        peer = worker.refresh_peer_keys(run.org, name)
    _show_peer(run.printer, peer, f"keys of peer {name}: {' '.join(_kids(peer)) or 'none'}")


def _remote(result: JSON) -> JSON:
    remote = result.get("remote")
    return remote if isinstance(remote, dict) else {}


def _transfer_note(job: JSON, peer: str) -> str:
    result = job.get("result") or {}
    remote = _remote(result)
    status = remote.get("status")
    where = {
        "applied": "applied there",
        "planned": "held for approval there" if remote.get("applicable") else "not applicable",
    }.get(str(status), str(status))
    changes = "" if remote.get("changes", True) else ", no changes"
    return (
        f"sent bundle {short_hash(result.get('bundle'))} to peer {peer}: its import job {remote.get('job')} "
        f"made plan {remote.get('plan')}: {where}{changes}"
    )


def _transfer_failure(job: JSON, peer: str) -> Failure | None:
    """Exit 1 when the peer could not import the bundle: a plan that cannot be applied there."""
    remote = _remote(job.get("result") or {})
    plan, status = remote.get("plan"), remote.get("status")
    if status in ("applied", "planned") and (status == "applied" or remote.get("applicable")):
        return None
    if status == "planned":
        return Failure(
            f"peer {peer} cannot apply plan {plan}: it is not applicable there (a conflict or another "
            "problem); transfer again with --strategy skip, overwrite or rename, "
            "or --override PROJECT/NAME=STRATEGY"
        )
    return Failure(f"peer {peer} did not import the bundle: its plan {plan} is {status}")


def transfer(
    ctx: typer.Context,
    to: Annotated[
        str, typer.Option("--to", help="The peer to send the selection to (see `anvil peers list`).")
    ],
    org: Annotated[
        str | None,
        typer.Option(
            "--org",
            help="Organisation slug (default: the context's); alone, it selects the whole organisation.",
        ),
    ] = None,
    project: Annotated[str | None, typer.Option("--project", help="Select a whole project.")] = None,
    prompt_set: PromptSetSel = None,
    prompt: PromptSel = None,
    full_history: FullHistoryOpt = False,
    environments: EnvironmentsOpt = False,
    strategy: StrategyOpt = Strategy.fail,
    override: OverrideOpt = None,
    output: OutputOpt = None,
    dry_run: DryRunOpt = False,
    progress: ProgressOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
) -> None:
    """Export a selection and push it to a peer, which plans it (and applies it if its policy allows).

    Exit 1 when the peer's plan cannot be applied there (conflicts under --strategy fail, ...).
    """
    run = runner(ctx, output=output, dry_run=dry_run, org=org)
    body = {
        "selection": selection_of(
            whole_org=org is not None, project=project, prompt_set=prompt_set, prompts=prompt
        ),
        "history": "full" if full_history else "latest",
        "environments": environments,
        "strategy": strategy.value,
        "overrides": parse_overrides(override),
    }
    with run.worker() as worker, Steps(wanted(progress, run.printer)) as steps:
        job = worker.push(run.org, to, body, idempotency_key=str(uuid.uuid4()))
        job = follow_job(worker, job, steps=steps, what=f"transfer to {to}", timeout=timeout)
        steps.done()
    run.printer.show(job, lambda: run.printer.note(_transfer_note(job, to)))
    failure = _transfer_failure(job, to)
    if failure is not None:
        raise failure
