"""``anvil prompts list|push|versions|show``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.text import Text

from ..client import JSON
from ..errors import Failure, UsageProblem, one_line
from ..output import Column, Printer, short_hash, when
from ..runtime import DryRunOpt, LimitOpt, MessageOpt, OrgOpt, OutputOpt, ProjectOpt, runner

__all__ = ["prompts_app", "load_content"]

prompts_app = typer.Typer(help="Prompts and their immutable versions.", no_args_is_help=True)
NameArg = Annotated[str, typer.Argument(help="Prompt name, e.g. support/greeting.")]
TEXT_SUFFIXES = (".txt", ".md")
DATA_SUFFIXES = (".json", ".yaml", ".yml")

PROMPT_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("LATEST", "latest_version"),
    ("DESCRIPTION", "description"),
    ("CREATED", lambda i: when(i["created_at"])),
    ("ARCHIVED", lambda i: when(i["archived_at"]) if i.get("archived_at") else ""),
]
VERSION_COLUMNS: list[Column] = [
    ("VERSION", "number"),
    ("HASH", lambda i: short_hash(i["content_hash"])),
    ("PARENT", "parent"),
    ("MESSAGE", "message"),
    ("BY", "created_by"),
    ("CREATED", lambda i: when(i["created_at"])),
]


def _declare(content: dict[str, Any], specs: list[str]) -> None:
    variables = content.get("variables") or {}
    if not isinstance(variables, dict):
        raise UsageProblem("the file's 'variables' must be an object to add --var declarations")
    for spec in specs:
        name, sep, default = spec.partition("=")
        if not name:
            raise UsageProblem(f"--var {spec!r}: expected NAME or NAME=DEFAULT")
        variables[name] = {"default": default} if sep else {}
    content["variables"] = variables


def load_content(path: Path, variables: list[str]) -> JSON:
    """Read prompt content from a file: JSON/YAML hold the content object; text is a template."""
    suffix = path.suffix.lower()
    if suffix not in TEXT_SUFFIXES + DATA_SUFFIXES:
        raise UsageProblem(
            f"--file must end in {', '.join(DATA_SUFFIXES + TEXT_SUFFIXES)}, not {path.name!r}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageProblem(f"cannot read {path}: {exc}") from exc
    content: Any
    if suffix in TEXT_SUFFIXES:
        # A text file's final newline ends its last line; it is not part of the template.
        content = {"template": text.removesuffix("\n").removesuffix("\r")}
    else:
        try:
            content = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise UsageProblem(
                f"{path} is not valid {suffix[1:].upper()}: {one_line(str(exc), 200)}"
            ) from exc
    if not isinstance(content, dict):
        raise UsageProblem(f"{path} must hold an object with template, variables, model and metadata")
    if variables:
        _declare(content, variables)
    return content


def _show_version(printer: Printer, version: JSON) -> None:
    content = version.get("content") or {}
    keys: list[Column] = [
        ("prompt", "prompt"),
        ("version", "number"),
        ("hash", "content_hash"),
        ("parent", "parent"),
        ("message", "message"),
        ("created", lambda v: f"{when(v['created_at'])} by {v['created_by']}"),
        ("model", lambda v: (v.get("content") or {}).get("model")),
        ("origin", "origin"),
    ]
    printer.fields(version, keys)
    if printer.machine:
        return
    variables = content.get("variables") or {}
    if variables:
        rows = [{"name": k, **(v or {})} for k, v in sorted(variables.items())]
        printer.console.print(
            printer.table(
                rows, [("VARIABLE", "name"), ("DEFAULT", "default"), ("DESCRIPTION", "description")]
            )
        )
    printer.console.print(Text("template:", style="bold"))
    template = content.get("template")
    if isinstance(template, list):
        for message in template:
            printer.console.print(
                Text(f"[{message.get('role')}] ", style="bold").append(str(message.get("content")))
            )
    else:
        printer.console.print(Text(str(template)))


@prompts_app.command("list")
def list_prompts(
    ctx: typer.Context,
    org: OrgOpt = None,
    project: ProjectOpt = None,
    include_archived: Annotated[
        bool, typer.Option("--include-archived", help="Also list archived prompts.")
    ] = False,
    output: OutputOpt = None,
    limit: LimitOpt = None,
) -> None:
    """List a project's prompts."""
    run = runner(ctx, output=output, org=org, project=project)
    with run.client() as client:
        items = client.list_prompts(run.org, run.project, include_archived=include_archived, limit=limit)
    run.printer.rows(items, PROMPT_COLUMNS, empty=f"no prompts in {run.org}/{run.project}")


@prompts_app.command("push")
def push_prompt(
    ctx: typer.Context,
    name: NameArg,
    file: Annotated[
        Path,
        typer.Option(
            "--file",
            "-f",
            help="prompt.json/.yaml (template, variables, model, metadata) or a .txt/.md text template.",
        ),
    ],
    var: Annotated[
        list[str] | None, typer.Option("--var", help="Declare a variable: NAME or NAME=DEFAULT (repeatable).")
    ] = None,
    message: MessageOpt = "",
    org: OrgOpt = None,
    project: ProjectOpt = None,
    output: OutputOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Add a version of a prompt from a file (creates the prompt; identical content is a no-op)."""
    run = runner(ctx, output=output, dry_run=dry_run, org=org, project=project)
    content = load_content(file, var or [])
    with run.client() as client:
        version, created = client.create_prompt_version(
            run.org, run.project, name, content=content, message=message
        )
    number, digest = version["number"], version["content_hash"]
    note = (
        f"pushed {name} version {number} ({digest})"
        if created
        else f"unchanged: {name} version {number} already has this content ({digest})"
    )
    run.printer.show(version, lambda: run.printer.note(note))


@prompts_app.command("versions")
def list_versions(
    ctx: typer.Context,
    name: NameArg,
    org: OrgOpt = None,
    project: ProjectOpt = None,
    output: OutputOpt = None,
    limit: LimitOpt = None,
) -> None:
    """List a prompt's versions, newest first."""
    run = runner(ctx, output=output, org=org, project=project)
    with run.client() as client:
        items = client.list_prompt_versions(run.org, run.project, name, limit=limit)
    run.printer.rows(items, VERSION_COLUMNS, empty=f"{name} has no versions yet")


@prompts_app.command("show")
def show_prompt(
    ctx: typer.Context,
    name: NameArg,
    version: Annotated[
        int | None, typer.Option("--version", "-v", min=1, help="Default: the latest.")
    ] = None,
    org: OrgOpt = None,
    project: ProjectOpt = None,
    output: OutputOpt = None,
) -> None:
    """Show one version of a prompt: template, variables, model and metadata."""
    run = runner(ctx, output=output, org=org, project=project)
    with run.client() as client:
        if version is None:
            latest = client.list_prompt_versions(run.org, run.project, name, limit=1)
            if not latest:
                raise Failure(f"{name} has no versions yet; push one with `anvil prompts push`")
            found = latest[0]
        else:
            found = client.get_prompt_version(run.org, run.project, name, version)
    _show_version(run.printer, found)
