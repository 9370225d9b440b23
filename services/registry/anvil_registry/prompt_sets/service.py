"""Prompt sets: named groups of prompts an app uses together (a push can be narrowed to one).

A set holds prompt names, not versions: what each name serves is decided by the environment's
revision. Members must exist and be active when the set is written.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.db import utcnow
from anvil_common.problems import NotFound

from ..audit.service import project_target, record
from ..auth import Principal
from ..lookup import Archived, ensure_active
from ..models import Project, Prompt, PromptSet
from .errors import PromptSetExists, UnknownPrompt
from .schemas import PromptSetCreate, PromptSetUpdate

__all__ = [
    "prompt_set_etag",
    "get_prompt_set",
    "create_prompt_set",
    "update_prompt_set",
    "archive_prompt_set",
]


def prompt_set_etag(prompt_set: PromptSet) -> str:
    return f'"s{prompt_set.row_version}"'


async def get_prompt_set(
    session: AsyncSession, *, project: Project, name: str, for_update: bool = False
) -> PromptSet:
    """The project's prompt set called ``name`` (404 if there is none); locked for a write."""
    stmt = select(PromptSet).where(PromptSet.project_id == project.id, PromptSet.name == name)
    row = await session.scalar(stmt.with_for_update() if for_update else stmt)
    if row is None:
        raise NotFound(f"prompt set {name!r} not found in project {project.slug!r}")
    return row


async def _members(session: AsyncSession, project: Project, names: Iterable[str]) -> list[str]:
    wanted = sorted(set(names))
    if not wanted:
        return []
    found = set(
        await session.scalars(
            select(Prompt.name).where(
                Prompt.project_id == project.id, Prompt.name.in_(wanted), Prompt.archived_at.is_(None)
            )
        )
    )
    missing = [n for n in wanted if n not in found]
    if missing:
        raise UnknownPrompt(
            f"no active prompt named {', '.join(repr(n) for n in missing)} in project {project.slug!r}",
            missing=missing,
        )
    return wanted


async def create_prompt_set(
    session: AsyncSession, principal: Principal, *, project: Project, data: PromptSetCreate
) -> PromptSet:
    """Create a prompt set of existing, active prompts."""
    ensure_active(project, f"project {project.slug!r}")
    exists = await session.scalar(
        select(PromptSet.id).where(PromptSet.project_id == project.id, PromptSet.name == data.name)
    )
    if exists:
        raise PromptSetExists(f"prompt set {data.name!r} already exists in project {project.slug!r}")
    members = await _members(session, project, data.prompts)
    row = PromptSet(project_id=project.id, name=data.name, description=data.description, prompts=members)
    session.add(row)
    await session.flush()
    record(
        session,
        principal,
        action="prompt_set.create",
        target=project_target(project, data.name),
        organisation_id=project.organisation_id,
        details={"prompts": members},
    )
    return row


def _ensure_active_set(project: Project, prompt_set: PromptSet) -> None:
    ensure_active(project, f"project {project.slug!r}")
    if prompt_set.archived_at is not None:
        raise Archived(f"prompt set {prompt_set.name!r} is archived and read-only")


async def update_prompt_set(
    session: AsyncSession,
    principal: Principal,
    *,
    project: Project,
    prompt_set: PromptSet,
    data: PromptSetUpdate,
) -> PromptSet:
    """Change a prompt set's description or members."""
    _ensure_active_set(project, prompt_set)
    details = {}
    if data.prompts is not None:
        prompt_set.prompts = await _members(session, project, data.prompts)
        details["prompts"] = prompt_set.prompts
    if data.description is not None:
        prompt_set.description = data.description
    prompt_set.row_version += 1
    await session.flush()
    record(
        session,
        principal,
        action="prompt_set.update",
        target=project_target(project, prompt_set.name),
        organisation_id=project.organisation_id,
        details=details,
    )
    return prompt_set


async def archive_prompt_set(
    session: AsyncSession, principal: Principal, *, project: Project, prompt_set: PromptSet
) -> PromptSet:
    """Archive a prompt set (kept for history, read-only)."""
    ensure_active(project, f"project {project.slug!r}")
    if prompt_set.archived_at is not None:
        return prompt_set
    prompt_set.archived_at = utcnow()
    prompt_set.row_version += 1
    await session.flush()
    record(
        session,
        principal,
        action="prompt_set.archive",
        target=project_target(project, prompt_set.name),
        organisation_id=project.organisation_id,
    )
    return prompt_set
