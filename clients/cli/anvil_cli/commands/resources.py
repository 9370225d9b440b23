"""``anvil orgs``, ``anvil projects`` and ``anvil envs``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..output import Column, when
from ..runtime import DryRunOpt, LimitOpt, OrgOpt, OutputOpt, ProjectOpt, runner

__all__ = ["orgs_app", "projects_app", "envs_app"]

orgs_app = typer.Typer(help="Organisations.", no_args_is_help=True)
projects_app = typer.Typer(help="Projects of an organisation.", no_args_is_help=True)
envs_app = typer.Typer(help="Environments of a project.", no_args_is_help=True)

SlugArg = Annotated[str, typer.Argument(help="Lowercase letters, digits and '-'; starts with a letter.")]
NameOpt = Annotated[str | None, typer.Option("--name", help="Display name (default: the slug).")]
DescriptionOpt = Annotated[str, typer.Option("--description", help="Free text.")]
ArchivedOpt = Annotated[bool, typer.Option("--include-archived", help="Also list archived ones.")]


def _archived(item: dict[str, Any]) -> str:
    return when(item.get("archived_at")) if item.get("archived_at") else ""


ORG_COLUMNS: list[Column] = [("SLUG", "slug"), ("NAME", "name"), ("CREATED", lambda i: when(i["created_at"]))]
PROJECT_COLUMNS: list[Column] = [
    ("SLUG", "slug"),
    ("NAME", "name"),
    ("DESCRIPTION", "description"),
    ("CREATED", lambda i: when(i["created_at"])),
    ("ARCHIVED", _archived),
]
ENV_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("REVISION", "current_revision"),
    ("ID", "id"),
    ("DESCRIPTION", "description"),
    ("ARCHIVED", _archived),
]


@orgs_app.command("list")
def list_orgs(ctx: typer.Context, output: OutputOpt = None, limit: LimitOpt = None) -> None:
    """List the organisations this token can see."""
    run = runner(ctx, output=output)
    with run.client() as client:
        items = client.list_orgs(limit=limit)
    run.printer.rows(items, ORG_COLUMNS, empty="no organisations")


@orgs_app.command("create")
def create_org(
    ctx: typer.Context,
    slug: SlugArg,
    name: NameOpt = None,
    output: OutputOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Create an organisation (instance administrators only)."""
    run = runner(ctx, output=output, dry_run=dry_run)
    with run.client() as client:
        org = client.create_org(slug=slug, name=name or slug)
    run.printer.show(org, lambda: run.printer.note(f"created organisation {org['slug']}"))


@projects_app.command("list")
def list_projects(
    ctx: typer.Context,
    org: OrgOpt = None,
    include_archived: ArchivedOpt = False,
    output: OutputOpt = None,
    limit: LimitOpt = None,
) -> None:
    """List an organisation's projects."""
    run = runner(ctx, output=output, org=org)
    with run.client() as client:
        items = client.list_projects(run.org, include_archived=include_archived, limit=limit)
    run.printer.rows(items, PROJECT_COLUMNS, empty=f"no projects in {run.org}")


@projects_app.command("create")
def create_project(
    ctx: typer.Context,
    slug: SlugArg,
    name: NameOpt = None,
    description: DescriptionOpt = "",
    org: OrgOpt = None,
    output: OutputOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Create a project in an organisation."""
    run = runner(ctx, output=output, dry_run=dry_run, org=org)
    with run.client() as client:
        project = client.create_project(run.org, slug=slug, name=name or slug, description=description)
    run.printer.show(project, lambda: run.printer.note(f"created project {run.org}/{project['slug']}"))


@projects_app.command("archive")
def archive_project(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="The project to archive.")],
    org: OrgOpt = None,
    output: OutputOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Archive a project: read-only from now on; its environments stop serving."""
    run = runner(ctx, output=output, dry_run=dry_run, org=org)
    with run.client() as client:
        project = client.archive_project(run.org, slug)
    run.printer.show(project, lambda: run.printer.note(f"archived project {run.org}/{project['slug']}"))


@envs_app.command("list")
def list_envs(
    ctx: typer.Context,
    org: OrgOpt = None,
    project: ProjectOpt = None,
    include_archived: ArchivedOpt = False,
    output: OutputOpt = None,
    limit: LimitOpt = None,
) -> None:
    """List a project's environments and the revision each serves."""
    run = runner(ctx, output=output, org=org, project=project)
    with run.client() as client:
        items = client.list_environments(run.org, run.project, include_archived=include_archived, limit=limit)
    run.printer.rows(items, ENV_COLUMNS, empty=f"no environments in {run.org}/{run.project}")


@envs_app.command("create")
def create_env(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="dev, staging, prod or a custom slug.")],
    description: DescriptionOpt = "",
    org: OrgOpt = None,
    project: ProjectOpt = None,
    output: OutputOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Create an environment in a project."""
    run = runner(ctx, output=output, dry_run=dry_run, org=org, project=project)
    with run.client() as client:
        env = client.create_environment(run.org, run.project, name=name, description=description)
    run.printer.show(env, lambda: run.printer.note(f"created environment {env['name']} ({env['id']})"))


@envs_app.command("archive")
def archive_env(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The environment to archive.")],
    org: OrgOpt = None,
    project: ProjectOpt = None,
    output: OutputOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Archive an environment: it stops serving; its revisions are kept."""
    run = runner(ctx, output=output, dry_run=dry_run, org=org, project=project)
    with run.client() as client:
        env = client.archive_environment(run.org, run.project, name)
    run.printer.show(env, lambda: run.printer.note(f"archived environment {env['name']}"))
