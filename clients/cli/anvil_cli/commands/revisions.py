"""``anvil publish``, ``promote``, ``rollback``, ``history``, ``diff`` and ``config``."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from anvil_wire import VerifiedRevision, canonical_json

from ..client import JSON, AnvilClient
from ..errors import Failure, UsageProblem
from ..output import Column, Printer, short_hash, when
from ..runtime import DryRunOpt, LimitOpt, MessageOpt, OrgOpt, OutputOpt, ProjectOpt, Run, runner
from ..verify import fetch_verified, show_verified

__all__ = ["publish", "promote", "rollback", "history", "diff", "config"]

EnvArg = Annotated[str, typer.Argument(help="The environment, e.g. staging.")]
IfMatchOpt = Annotated[
    str | None,
    typer.Option(
        "--if-match", help="Expected environment ETag, e.g. '\"rev-3\"' (default: fetched just before)."
    ),
]
KeyOpt = Annotated[
    str | None,
    typer.Option("--idempotency-key", help="Reuse a key to retry safely (default: a new random key)."),
]
ENTRY_COLUMNS: list[Column] = [
    ("PROMPT", "name"),
    ("VERSION", "version"),
    ("DIGEST", lambda e: short_hash(e["digest"])),
]


def _origin(revision: JSON) -> str:
    if revision.get("rollback_of"):
        return f"rollback of {revision['rollback_of']}"
    source = revision.get("promoted_from")
    if isinstance(source, dict):
        return f"from {source.get('environment')} #{source.get('revision')}"
    return ""


HISTORY_COLUMNS: list[Column] = [
    ("REV", "number"),
    ("KIND", "kind"),
    ("ORIGIN", _origin),
    ("MESSAGE", "message"),
    ("BY", "created_by"),
    ("CREATED", lambda r: when(r["created_at"])),
]


def _parse_prompt(spec: str) -> tuple[str, int | str]:
    name, sep, version = spec.partition("=")
    if not name:
        raise UsageProblem(f"--prompt {spec!r}: expected NAME, NAME=VERSION or NAME=latest")
    if not sep or version == "latest":
        return name, "latest"
    if not version.isdigit() or int(version) < 1:
        raise UsageProblem(f"--prompt {spec!r}: the version must be a number or 'latest'")
    return name, int(version)


def _change(
    run: Run,
    client: AnvilClient,
    env: str,
    *,
    if_match: str | None,
    idempotency_key: str | None,
) -> dict[str, str]:
    """If-Match (the ETag fetched now unless given) and an Idempotency-Key for one change."""
    if if_match is None:
        _, if_match = client.get_environment(run.org, run.project, env)
        if not if_match:
            raise Failure(f"the registry sent no ETag for environment {env!r}")
    return {"if_match": if_match, "idempotency_key": idempotency_key or str(uuid.uuid4())}


def _show_revision(printer: Printer, revision: JSON, *, created: bool, verb: str) -> None:
    def render() -> None:
        where, number = revision["environment"], revision["number"]
        if created:
            origin = _origin(revision)
            printer.note(f"{verb} revision {number} to {where}" + (f" ({origin})" if origin else ""))
        else:
            printer.note(f"unchanged: {where} already serves this (revision {number})")
        entries = [{**v, "name": k} for k, v in sorted(revision.get("prompts", {}).items())]
        if entries:
            printer.console.print(printer.table(entries, ENTRY_COLUMNS))

    printer.show(revision, render)


def publish(
    ctx: typer.Context,
    env: EnvArg,
    prompt: Annotated[
        list[str] | None,
        typer.Option("--prompt", "-p", help="NAME (latest), NAME=VERSION or NAME=latest; repeatable."),
    ] = None,
    remove: Annotated[
        list[str] | None, typer.Option("--remove", help="Stop serving NAME; repeatable.")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Serve exactly the given prompts instead of merging.")
    ] = False,
    message: MessageOpt = "",
    if_match: IfMatchOpt = None,
    idempotency_key: KeyOpt = None,
    org: OrgOpt = None,
    project: ProjectOpt = None,
    output: OutputOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Publish prompt versions as the environment's next revision."""
    run = runner(ctx, output=output, dry_run=dry_run, org=org, project=project)
    prompts = dict(_parse_prompt(p) for p in prompt or [])
    if not prompts and not remove and not replace:
        raise UsageProblem("nothing to publish: give --prompt NAME[=VERSION] and/or --remove NAME")
    body = {"prompts": prompts, "remove": remove or [], "replace": replace, "message": message}
    with run.client() as client:
        change = _change(run, client, env, if_match=if_match, idempotency_key=idempotency_key)
        revision, created = client.publish_revision(run.org, run.project, env, body, **change)
    _show_revision(run.printer, revision, created=created, verb="published")


def promote(
    ctx: typer.Context,
    from_env: Annotated[str, typer.Option("--from", help="The source environment, e.g. staging.")],
    to_env: Annotated[str, typer.Option("--to", help="The target environment, e.g. prod.")],
    revision: Annotated[
        int | None, typer.Option("--revision", min=1, help="Source revision (default: its current one).")
    ] = None,
    message: MessageOpt = "",
    if_match: IfMatchOpt = None,
    idempotency_key: KeyOpt = None,
    org: OrgOpt = None,
    project: ProjectOpt = None,
    output: OutputOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Promote: copy a revision of one environment into another as its next revision."""
    run = runner(ctx, output=output, dry_run=dry_run, org=org, project=project)
    body: dict[str, Any] = {"from_environment": from_env, "revision": revision, "message": message}
    with run.client() as client:
        change = _change(run, client, to_env, if_match=if_match, idempotency_key=idempotency_key)
        result, created = client.promote_revision(run.org, run.project, to_env, body, **change)
    _show_revision(run.printer, result, created=created, verb="promoted")


def rollback(
    ctx: typer.Context,
    env: EnvArg,
    to: Annotated[
        int, typer.Option("--to", min=1, help="The earlier revision whose content to serve again.")
    ],
    message: MessageOpt = "",
    if_match: IfMatchOpt = None,
    idempotency_key: KeyOpt = None,
    org: OrgOpt = None,
    project: ProjectOpt = None,
    output: OutputOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Roll back: a new revision serving revision N's content (numbers only grow)."""
    run = runner(ctx, output=output, dry_run=dry_run, org=org, project=project)
    body = {"to_revision": to, "message": message}
    with run.client() as client:
        change = _change(run, client, env, if_match=if_match, idempotency_key=idempotency_key)
        result, created = client.roll_back(run.org, run.project, env, body, **change)
    _show_revision(run.printer, result, created=created, verb="rolled back with")


def history(
    ctx: typer.Context,
    env: EnvArg,
    org: OrgOpt = None,
    project: ProjectOpt = None,
    output: OutputOpt = None,
    limit: LimitOpt = 50,
) -> None:
    """An environment's revisions, newest first."""
    run = runner(ctx, output=output, org=org, project=project)
    with run.client() as client:
        items = client.list_revisions(run.org, run.project, env, limit=limit)
    run.printer.rows(items, HISTORY_COLUMNS, empty=f"nothing has been published to {env} yet")


def diff(
    ctx: typer.Context,
    env: EnvArg,
    from_revision: Annotated[int, typer.Option("--from", min=1, help="The older revision.")],
    to_revision: Annotated[
        int | None, typer.Option("--to", min=1, help="Default: the current revision.")
    ] = None,
    org: OrgOpt = None,
    project: ProjectOpt = None,
    output: OutputOpt = None,
) -> None:
    """What changed between two revisions of an environment."""
    run = runner(ctx, output=output, org=org, project=project)
    with run.client() as client:
        result = client.diff_revisions(run.org, run.project, env, from_=from_revision, to=to_revision)
    run.printer.show(result, lambda: _render_diff(run.printer, result))


def _render_diff(printer: Printer, result: JSON) -> None:
    rows: list[dict[str, Any]] = []
    for name, e in sorted(result.get("added", {}).items()):
        rows.append(
            {"change": "+", "name": name, "before": "", "after": f"v{e['version']} {short_hash(e['digest'])}"}
        )
    for name, e in sorted(result.get("removed", {}).items()):
        rows.append(
            {"change": "-", "name": name, "before": f"v{e['version']} {short_hash(e['digest'])}", "after": ""}
        )
    for name, c in sorted(result.get("changed", {}).items()):
        before, after = c["before"], c["after"]
        rows.append(
            {
                "change": "~",
                "name": name,
                "before": f"v{before['version']} {short_hash(before['digest'])}",
                "after": f"v{after['version']} {short_hash(after['digest'])}",
            }
        )
    printer.note(f"revision {result['from_revision']} -> {result['to_revision']}")
    if rows:
        columns: list[Column] = [("", "change"), ("PROMPT", "name"), ("BEFORE", "before"), ("AFTER", "after")]
        printer.console.print(printer.table(rows, columns))
    else:
        printer.note("no prompt changed")
    unchanged = result.get("unchanged") or []
    if unchanged:
        printer.note(f"{len(unchanged)} unchanged: {', '.join(unchanged)}")
    deps_added, deps_removed = (
        result.get("dependencies_added") or {},
        result.get("dependencies_removed") or {},
    )
    if deps_added or deps_removed:
        printer.note(f"dependencies: +{len(deps_added)} -{len(deps_removed)}")


def config(
    ctx: typer.Context,
    env: EnvArg,
    verify: Annotated[
        bool,
        typer.Option("--verify", help="Verify the signature against the registry's JWKS; print the prompts."),
    ] = False,
    jwks: Annotated[
        str | None,
        typer.Option("--jwks", help="Verify with this JWKS file instead of fetching it (--verify, --save)."),
    ] = None,
    save: Annotated[
        Path | None,
        typer.Option(
            "--save",
            help="Verify like --verify, then write the document to FILE (canonical JSON, atomically): "
            "a runtime SDK's bootstrap file.",
            metavar="FILE",
        ),
    ] = None,
    org: OrgOpt = None,
    project: ProjectOpt = None,
    output: OutputOpt = None,
) -> None:
    """Print the environment's current signed revision document (or verify it, or save it)."""
    run = runner(ctx, output=output, org=org, project=project)
    if save is not None:
        _check_target(save)
    with run.client() as client:
        if not verify and save is None:
            if jwks:
                raise UsageProblem("--jwks goes with --verify or --save")
            document, _ = client.get_config(run.org, run.project, env)
            run.printer.raw(document)
            return
        document, verified = fetch_verified(client, run.org, run.project, env, jwks_file=jwks)
    if save is None:
        show_verified(run.printer, verified)
        return
    _save_document(save, document)
    _show_saved(run.printer, save, verified)


def _check_target(path: Path) -> None:
    """Refuse, before fetching anything, a FILE that cannot be a file in an existing directory."""
    if path.is_dir():
        raise UsageProblem(f"cannot save to {path}: it is a directory")
    if not path.parent.is_dir():
        raise UsageProblem(f"cannot save to {path}: {path.parent} is not a directory")


def _save_document(path: Path, document: JSON) -> None:
    """Write ``canonical_json(document)`` to ``path`` through a temporary file beside it, flushed
    and fsynced, then renamed over it: ``path`` is the whole document or what it was before."""
    try:
        data = canonical_json(document)
    except (TypeError, ValueError) as exc:
        raise Failure(f"cannot save the revision document: it is not canonical JSON ({exc})") from exc
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # a public, signed document: mode as for any new file
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(exc, OSError):
            raise Failure(f"cannot save to {path}: {exc.strerror or exc}") from exc
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _show_saved(printer: Printer, path: Path, verified: VerifiedRevision) -> None:
    manifest = verified.manifest
    data: JSON = {
        "saved": str(path),
        "organisation": manifest.organisation.get("slug"),
        "project": manifest.project.get("slug"),
        "environment": manifest.environment.get("name"),
        "revision": manifest.revision,
        "prompts": len(manifest.prompts),
        "kid": verified.kid,
    }
    where = f"{data['organisation']}/{data['project']}/{data['environment']}"
    count = f"{data['prompts']} prompt" + ("" if data["prompts"] == 1 else "s")
    line = f"saved verified revision {data['revision']} of {where} ({count}) to {path}"
    printer.show(data, lambda: printer.note(line))
