"""Partial references between prompts: checked when a version is created, looked up before a purge.

Pinned references (``name@3``) must name an existing version now, because nothing resolves them
later; references through an environment (``name@prod`` or unpinned) are resolved into the
revision at publish, so here only their project has to exist.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_wire.prompts import PartialRef, template_references

from ..models import Project, Prompt, PromptVersion
from .errors import CyclicReference, UnresolvedPartial

__all__ = ["check_references", "pinned_users"]


async def _project_by_slug(session: AsyncSession, organisation_id: uuid.UUID, slug: str) -> Project | None:
    stmt = select(Project).where(Project.organisation_id == organisation_id, Project.slug == slug)
    return await session.scalar(stmt)


async def _version_exists(session: AsyncSession, project_id: uuid.UUID, name: str, number: int) -> bool:
    stmt = (
        select(PromptVersion.id)
        .join(Prompt, Prompt.id == PromptVersion.prompt_id)
        .where(Prompt.project_id == project_id, Prompt.name == name, PromptVersion.number == number)
    )
    return await session.scalar(stmt) is not None


async def check_references(
    session: AsyncSession,
    *,
    project: Project,
    name: str,
    content: Mapping[str, Any],
    visible_project: str | None = None,
) -> None:
    """Reject self references, pinned references to missing versions and unknown projects.

    ``visible_project`` is the caller's project limit: other projects do not exist for it, so
    a partial cannot be used to read (or probe) them.
    """
    projects: dict[str, Project | None] = {project.slug: project}
    for ref in template_references(content):
        slug = ref.project or project.slug
        if slug == project.slug and ref.name == name:
            raise CyclicReference(
                f"{{{{> {ref.text}}}}} refers to prompt {name!r} itself", reference=ref.text
            )
        if slug not in projects:
            hidden = visible_project is not None and slug != visible_project
            projects[slug] = (
                None if hidden else await _project_by_slug(session, project.organisation_id, slug)
            )
        target = projects[slug]
        if target is None:
            raise UnresolvedPartial(
                f"{{{{> {ref.text}}}}}: no project {slug!r} in this organisation", reference=ref.text
            )
        if ref.version is not None and not await _version_exists(session, target.id, ref.name, ref.version):
            raise UnresolvedPartial(
                f"{{{{> {ref.text}}}}}: prompt {slug}:{ref.name} has no version {ref.version}",
                reference=ref.text,
            )


def _pins(ref: PartialRef, own_project: str, project: str, name: str, numbers: set[int]) -> bool:
    return (
        ref.version is not None
        and (ref.project or own_project) == project
        and ref.name == name
        and ref.version in numbers
    )


async def pinned_users(
    session: AsyncSession, *, project: Project, prompt: Prompt, numbers: set[int]
) -> list[str]:
    """Versions of other prompts in the organisation that pin one of ``numbers`` of ``prompt``."""
    if not numbers:
        return []
    # Contents are JSON documents, so the scan happens here rather than in SQL; it only runs
    # for an explicit purge.
    stmt = (
        select(Project.slug, Prompt.name, PromptVersion.number, PromptVersion.content)
        .join(Prompt, Prompt.project_id == Project.id)
        .join(PromptVersion, PromptVersion.prompt_id == Prompt.id)
        .where(Project.organisation_id == project.organisation_id, Prompt.id != prompt.id)
        .order_by(Project.slug, Prompt.name, PromptVersion.number)
    )
    users: list[str] = []
    for slug, name, number, content in await session.execute(stmt):
        refs = template_references(content)
        if any(_pins(ref, slug, project.slug, prompt.name, numbers) for ref in refs):
            users.append(f"{slug}:{name}@{number}")
    return users
