"""Environments: what a project serves (dev, staging, prod, custom). Archiving stops serving."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.db import utcnow
from anvil_common.problems import Conflict

from ..audit.service import project_target, record
from ..auth import Principal
from ..events.service import append_event
from ..lookup import ensure_active
from ..models import Environment, Project
from .schemas import EnvironmentCreate, EnvironmentPublic

__all__ = ["create_environment", "archive_environment", "environment_etag", "to_public", "EnvironmentExists"]


class EnvironmentExists(Conflict):
    code, title = "environment-exists", "Environment exists"


def environment_etag(environment: Environment) -> str:
    """Names the latest revision, so If-Match on a publish or rollback pins what the caller saw."""
    return f'"rev-{environment.last_revision}"'


def to_public(environment: Environment) -> EnvironmentPublic:
    return EnvironmentPublic(
        id=environment.id,
        name=environment.name,
        description=environment.description,
        current_revision=environment.last_revision or None,
        created_at=environment.created_at,
        archived_at=environment.archived_at,
    )


async def create_environment(
    session: AsyncSession, principal: Principal, *, project: Project, data: EnvironmentCreate
) -> Environment:
    """Create an environment in a project."""
    ensure_active(project, f"project {project.slug!r}")
    exists = await session.scalar(
        select(Environment.id).where(Environment.project_id == project.id, Environment.name == data.name)
    )
    if exists:
        raise EnvironmentExists(f"environment {data.name!r} already exists in project {project.slug!r}")
    environment = Environment(project_id=project.id, name=data.name, description=data.description)
    session.add(environment)
    await session.flush()
    target = project_target(project, data.name)
    record(
        session,
        principal,
        action="environment.create",
        target=target,
        organisation_id=project.organisation_id,
    )
    return environment


async def archive_environment(
    session: AsyncSession, principal: Principal, *, project: Project, environment: Environment
) -> Environment:
    """Archive an environment: it stops serving (its config answers 410); its history is kept."""
    if environment.archived_at is not None:
        return environment
    environment.archived_at = utcnow()
    target = project_target(project, environment.name)
    record(
        session,
        principal,
        action="environment.archive",
        target=target,
        organisation_id=project.organisation_id,
    )
    await append_event(
        session,
        kind="environment.archived",
        payload={
            "organisation": project.organisation.slug,
            "project": project.slug,
            "environment": {"id": str(environment.id), "name": environment.name},
        },
        organisation_id=project.organisation_id,
        project_id=project.id,
        environment_id=environment.id,
    )
    return environment
