"""What an import plan compares a bundle with (docs/api.md section 7.2): the named projects,
prompts (with every version's digest), prompt sets and environments of the target, in bulk."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..auth import Principal
from ..models import (
    ConfigRevision,
    Environment,
    Organisation,
    Project,
    Prompt,
    PromptSet,
    PromptVersion,
    RevisionEntry,
)
from .catalog import chunks
from .schemas import ImportStateRequest

__all__ = ["read_import_state"]


async def _named(
    session: AsyncSession, model: Any, projects: dict[uuid.UUID, Project], wanted: set[tuple[uuid.UUID, str]]
) -> dict[tuple[uuid.UUID, str], Any]:
    """Rows of ``model`` (Prompt, PromptSet, Environment) by (project id, name), in chunks."""
    found: dict[tuple[uuid.UUID, str], Any] = {}
    for batch in chunks(sorted({name for _, name in wanted})):
        stmt = select(model).where(model.project_id.in_(sorted(projects)), model.name.in_(batch))
        for row in await session.scalars(stmt):
            if (row.project_id, row.name) in wanted:
                found[(row.project_id, row.name)] = row
    return found


async def _version_digests(session: AsyncSession, prompt_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    digests: dict[uuid.UUID, list[str]] = {pid: [] for pid in prompt_ids}
    for batch in chunks(sorted(prompt_ids)):
        stmt = (
            select(PromptVersion.prompt_id, PromptVersion.content_hash)
            .where(PromptVersion.prompt_id.in_(batch))
            .order_by(PromptVersion.prompt_id, PromptVersion.number)
        )
        for row in await session.execute(stmt):
            digests[row.prompt_id].append(row.content_hash)
    return digests


async def _served(
    session: AsyncSession, environment_ids: list[uuid.UUID]
) -> dict[uuid.UUID, dict[str, dict[str, Any]]]:
    served: dict[uuid.UUID, dict[str, dict[str, Any]]] = {eid: {} for eid in environment_ids}
    for batch in chunks(sorted(environment_ids)):
        stmt = (
            select(
                ConfigRevision.environment_id,
                RevisionEntry.key,
                PromptVersion.number,
                RevisionEntry.content_hash,
            )
            .join(ConfigRevision, ConfigRevision.id == RevisionEntry.revision_id)
            .join(Environment, Environment.id == ConfigRevision.environment_id)
            .join(PromptVersion, PromptVersion.id == RevisionEntry.version_id)
            .where(
                ConfigRevision.environment_id.in_(batch),
                ConfigRevision.number == Environment.last_revision,
                RevisionEntry.served.is_(True),
            )
        )
        for row in await session.execute(stmt):
            served[row.environment_id][row.key] = {"version": row.number, "digest": row.content_hash}
    return {eid: dict(sorted(entries.items())) for eid, entries in served.items()}


async def read_import_state(
    session: AsyncSession, principal: Principal, *, org: Organisation, data: ImportStateRequest
) -> dict[str, Any]:
    """The target state an import plan needs; absent objects (and projects the token cannot see) are null."""
    limit = principal.claims.project
    visible = sorted(slug for slug in data.projects if limit is None or slug == limit)
    rows = await session.scalars(
        select(Project).where(Project.organisation_id == org.id, Project.slug.in_(visible))
    )
    projects = {p.id: p for p in rows}
    wanted: dict[str, set[tuple[uuid.UUID, str]]] = {"prompts": set(), "sets": set(), "envs": set()}
    for project in projects.values():
        names = data.projects[project.slug]
        wanted["prompts"] |= {(project.id, n) for n in names.prompts}
        wanted["sets"] |= {(project.id, n) for n in names.prompt_sets}
        for name in names.environments:
            principal.ensure_scope_target(org.slug, project.slug, name)
            wanted["envs"].add((project.id, name))
    prompts = await _named(session, Prompt, projects, wanted["prompts"])
    sets = await _named(session, PromptSet, projects, wanted["sets"])
    environments = await _named(session, Environment, projects, wanted["envs"])
    digests = await _version_digests(session, [p.id for p in prompts.values()])
    served = await _served(session, [e.id for e in environments.values()])
    by_slug = {p.slug: p for p in projects.values()}
    result: dict[str, Any] = {}
    for slug in sorted(data.projects):
        found = by_slug.get(slug)
        if found is None:
            result[slug] = None
            continue
        project = found
        names = data.projects[slug]
        result[slug] = {
            "name": project.name,
            "description": project.description,
            "archived": project.archived_at is not None,
            "prompts": {
                n: _prompt(prompts.get((project.id, n)), digests) for n in sorted(set(names.prompts))
            },
            "prompt_sets": {n: _set(sets.get((project.id, n))) for n in sorted(set(names.prompt_sets))},
            "environments": {
                n: _environment(environments.get((project.id, n)), served)
                for n in sorted(set(names.environments))
            },
        }
    return {"organisation": {"slug": org.slug, "name": org.name}, "projects": result}


def _prompt(row: Prompt | None, digests: dict[uuid.UUID, list[str]]) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"head": row.latest_version, "archived": row.archived_at is not None, "versions": digests[row.id]}


def _set(row: PromptSet | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "description": row.description,
        "prompts": sorted(row.prompts),
        "row_version": row.row_version,
        "archived": row.archived_at is not None,
    }


def _environment(row: Environment | None, served: dict[uuid.UUID, dict[str, Any]]) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "last_revision": row.last_revision,
        "archived": row.archived_at is not None,
        "prompts": served[row.id],
    }
