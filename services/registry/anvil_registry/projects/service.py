"""Projects: hold prompts, prompt sets and environments. Archiving makes a project read-only
and stops its environments from serving (their config answers 410); history is kept."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.db import utcnow
from anvil_common.problems import Conflict

from ..audit.service import project_target, record
from ..auth import Principal
from ..events.service import append_event
from ..lookup import ensure_active
from ..models import Environment, Organisation, Project
from .schemas import ProjectCreate, ProjectUpdate

__all__ = ["create_project", "update_project", "archive_project", "ProjectExists", "project_etag"]


class ProjectExists(Conflict):
    code, title = "project-exists", "Project exists"


def project_etag(project: Project) -> str:
    return f'"p{project.row_version}"'


async def create_project(
    session: AsyncSession, principal: Principal, *, org: Organisation, data: ProjectCreate
) -> Project:
    """Create a project in an organisation."""
    ensure_active(org, f"organisation {org.slug!r}")
    exists = await session.scalar(
        select(Project.id).where(Project.organisation_id == org.id, Project.slug == data.slug)
    )
    if exists:
        raise ProjectExists(f"project {org.slug}/{data.slug} already exists")
    project = Project(organisation_id=org.id, slug=data.slug, name=data.name, description=data.description)
    session.add(project)
    await session.flush()
    record(
        session, principal, action="project.create", target=f"{org.slug}/{data.slug}", organisation_id=org.id
    )
    return project


async def update_project(
    session: AsyncSession, principal: Principal, *, project: Project, data: ProjectUpdate
) -> Project:
    """Rename or re-describe a project."""
    ensure_active(project, f"project {project.slug!r}")
    if data.name is not None:
        project.name = data.name
    if data.description is not None:
        project.description = data.description
    project.row_version += 1
    await session.flush()
    return project


async def archive_project(session: AsyncSession, principal: Principal, *, project: Project) -> Project:
    """Archive a project and all its environments (they stop serving; nothing is deleted)."""
    if project.archived_at is not None:
        return project
    now = utcnow()
    project.archived_at = now
    project.row_version += 1
    await session.execute(
        update(Environment)
        .where(Environment.project_id == project.id, Environment.archived_at.is_(None))
        .values(archived_at=now)
    )
    target = project_target(project)
    record(
        session, principal, action="project.archive", target=target, organisation_id=project.organisation_id
    )
    await append_event(
        session,
        kind="project.archived",
        payload={"organisation": project.organisation.slug, "project": project.slug},
        organisation_id=project.organisation_id,
        project_id=project.id,
    )
    return project
