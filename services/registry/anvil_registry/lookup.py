"""Resolve URL slugs to rows, enforcing tenancy; shared by every resource package."""

from __future__ import annotations

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import contains_eager

from anvil_common.problems import Conflict, NotFound

from .auth import Principal
from .models import Environment, Organisation, Project, Prompt, PromptVersion

__all__ = [
    "get_org",
    "get_project",
    "get_environment",
    "get_prompt",
    "get_prompt_for_update",
    "ensure_active",
]


class Archived(Conflict):
    code, title = "archived", "Archived"


def ensure_active(row: Organisation | Project | Environment | Prompt, what: str) -> None:
    """Archived resources are read-only."""
    if row.archived_at is not None:
        raise Archived(f"{what} is archived and read-only")


async def get_org(session: AsyncSession, principal: Principal, org: str) -> Organisation:
    principal.ensure_org(org)
    row = await session.scalar(select(Organisation).where(Organisation.slug == org))
    if row is None:
        raise NotFound(f"organisation {org!r} not found")
    return row


async def get_project(
    session: AsyncSession, principal: Principal, org: str, project: str, *, for_update: bool = False
) -> Project:
    principal.ensure_scope_target(org, project)
    # One query on the hot path; the organisation is looked up alone only to word a 404.
    stmt = (
        select(Project)
        .join(Project.organisation)
        .options(contains_eager(Project.organisation))
        .where(Organisation.slug == org, Project.slug == project)
    )
    if for_update:
        # ETag checks read-then-write: lock, so two writers with one If-Match cannot both win.
        stmt = stmt.with_for_update(of=Project)
    row = await session.scalar(stmt)
    if row is None:
        await get_org(session, principal, org)
        raise NotFound(f"project {org}/{project} not found")
    return row


async def get_environment(
    session: AsyncSession,
    principal: Principal,
    org: str,
    project: str,
    environment: str,
    *,
    for_update: bool = False,
) -> tuple[Project, Environment]:
    principal.ensure_scope_target(org, project, environment)
    proj = await get_project(session, principal, org, project)
    stmt = select(Environment).where(Environment.project_id == proj.id, Environment.name == environment)
    if for_update:
        stmt = stmt.with_for_update()
    row = await session.scalar(stmt)
    if row is None:
        raise NotFound(f"environment {org}/{project}/{environment} not found")
    return proj, row


async def get_prompt(
    session: AsyncSession, project: Project, name: str, *, for_update: bool = False
) -> Prompt:
    stmt = select(Prompt).where(Prompt.project_id == project.id, Prompt.name == name)
    if for_update:
        stmt = stmt.with_for_update()
    row = await session.scalar(stmt)
    if row is None:
        raise NotFound(f"prompt {name!r} not found in project {project.slug!r}")
    return row


async def get_prompt_for_update(
    session: AsyncSession, principal: Principal, org: str, project: str, name: str
) -> tuple[Project, Prompt, PromptVersion | None] | None:
    """The hot path of a new version: project, locked prompt and its latest version in one query.

    ``None`` when the prompt (or the project) does not exist; the caller then takes the slow path,
    which words the 404 or creates the prompt. Only the prompt row is locked (Postgres refuses a
    lock on the nullable side of the outer join to the latest version).
    """
    principal.ensure_scope_target(org, project)
    latest = and_(PromptVersion.prompt_id == Prompt.id, PromptVersion.number == Prompt.latest_version)
    stmt = (
        select(Project, Prompt, PromptVersion)
        .join(Project.organisation)
        .join(Prompt, and_(Prompt.project_id == Project.id, Prompt.name == name))
        .outerjoin(PromptVersion, latest)
        .options(contains_eager(Project.organisation))
        .where(Organisation.slug == org, Project.slug == project)
        .with_for_update(of=Prompt)
    )
    row = (await session.execute(stmt)).one_or_none()
    if row is None:
        return None
    return row[0], row[1], row[2]
