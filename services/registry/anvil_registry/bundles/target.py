"""The rows an import writes into, locked, and the plan's expectations checked against them.

Prompts, sets and environments are read ``FOR UPDATE`` (Postgres; SQLite's ``BEGIN IMMEDIATE``
already holds the database), so nothing the expectations vouch for can change before commit.
An object that does not exist cannot be locked: a concurrent creator of the same name loses
(or wins) on the unique constraint, which is a 409 ``concurrent-change``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import Environment, Organisation, Project, Prompt, PromptSet, PromptVersion
from .catalog import chunks
from .errors import ImportTargetChanged
from .schemas import ImportCreate

__all__ = ["Target", "load_target", "check_expectations"]

Key = tuple[str, str]  # (project slug, name)


@dataclass
class Target:
    org: Organisation
    projects: dict[str, Project] = field(default_factory=dict)
    prompts: dict[Key, Prompt] = field(default_factory=dict)
    heads: dict[uuid.UUID, tuple[uuid.UUID, str]] = field(default_factory=dict)  # prompt -> (version, digest)
    sets: dict[Key, PromptSet] = field(default_factory=dict)
    environments: dict[Key, Environment] = field(default_factory=dict)


def _names(data: ImportCreate) -> dict[str, set[Key]]:
    """Every (project, name) the body expects or writes, by kind."""
    names: dict[str, set[Key]] = {"prompts": set(), "sets": set(), "environments": set()}
    for slug, expect in data.expect.projects.items():
        names["prompts"] |= {(slug, n) for n in expect.prompts}
        names["sets"] |= {(slug, n) for n in expect.prompt_sets}
        names["environments"] |= {(slug, n) for n in expect.environments}
    names["prompts"] |= {(p.project, p.name) for p in data.prompts}
    names["sets"] |= {(s.project, s.name) for s in data.prompt_sets}
    names["environments"] |= {(e.project, e.name) for e in data.environments}
    return names


async def _locked(session: AsyncSession, model: Any, target: Target, keys: set[Key]) -> dict[Key, Any]:
    by_id = {p.id: p.slug for p in target.projects.values()}
    found: dict[Key, Any] = {}
    for batch in chunks(sorted({name for _, name in keys})):
        stmt = (
            select(model)
            .where(model.project_id.in_(sorted(by_id)), model.name.in_(batch))
            .order_by(model.id)  # one lock order for every writer: no deadlock between two imports
            .with_for_update()
        )
        for row in await session.scalars(stmt):
            key = (by_id[row.project_id], row.name)
            if key in keys:
                found[key] = row
    return found


async def load_target(
    session: AsyncSession, org: Organisation, data: ImportCreate, *, project_limit: str | None = None
) -> Target:
    """The existing projects, prompts (with their heads), sets and environments the body names.

    With a ``project_limit`` the organisation's other projects do not exist, as the import
    state (B2) answered: expectations about them compare with "absent".
    """
    target = Target(org)
    names = _names(data)
    slugs = set(data.expect.projects) | {p.slug for p in data.projects}
    slugs |= {slug for keys in names.values() for slug, _ in keys}
    if project_limit is not None:
        slugs &= {project_limit}
    for batch in chunks(sorted(slugs)):
        rows = await session.scalars(
            select(Project).where(Project.organisation_id == org.id, Project.slug.in_(batch))
        )
        target.projects.update({p.slug: p for p in rows})
    if not target.projects:
        return target
    target.prompts = await _locked(session, Prompt, target, names["prompts"])
    target.sets = await _locked(session, PromptSet, target, names["sets"])
    target.environments = await _locked(session, Environment, target, names["environments"])
    for ids in chunks(sorted(p.id for p in target.prompts.values() if p.latest_version)):
        stmt = (
            select(PromptVersion.prompt_id, PromptVersion.id, PromptVersion.content_hash)
            .join(Prompt, Prompt.id == PromptVersion.prompt_id)
            .where(Prompt.id.in_(ids), PromptVersion.number == Prompt.latest_version)
        )
        for row in await session.execute(stmt):
            target.heads[row.prompt_id] = (row.id, row.content_hash)
    return target


def _change(kind: str, project: str, name: str | None, expected: Any, found: Any) -> dict[str, Any]:
    return {"kind": kind, "project": project, "name": name, "expected": expected, "found": found}


_STATES = {
    "prompt": ("at version {}", 0),
    "prompt_set": ("at row version {}", 0),
    "environment": ("at revision {}", -1),
}


def _state(kind: str, value: Any) -> str:
    if kind == "project":
        return "exists" if value else "does not exist"
    template, absent = _STATES[kind]
    return "does not exist" if value == absent else template.format(value)


def _describe(change: dict[str, Any]) -> str:
    kind = change["kind"]
    what = kind.replace("_", " ") + f" {change['project']}" + (f"/{change['name']}" if change["name"] else "")
    return f"{what} now {_state(kind, change['found'])} (planned: {_state(kind, change['expected'])})"


def check_expectations(data: ImportCreate, target: Target) -> None:
    """Every head the plan saw must still be there: else 409 ``import-target-changed``."""
    changes = []
    for slug, expect in sorted(data.expect.projects.items()):
        project = target.projects.get(slug)
        if (project is not None) != expect.exists:
            changes.append(_change("project", slug, None, expect.exists, project is not None))
        for name, head in sorted(expect.prompts.items()):
            prompt = target.prompts.get((slug, name))
            found = prompt.latest_version if prompt is not None else 0
            if found != head:
                changes.append(_change("prompt", slug, name, head, found))
        for name, version in sorted(expect.prompt_sets.items()):
            row = target.sets.get((slug, name))
            found = row.row_version if row is not None else 0
            if found != version:
                changes.append(_change("prompt_set", slug, name, version, found))
        for name, last in sorted(expect.environments.items()):
            env = target.environments.get((slug, name))
            found = env.last_revision if env is not None else -1
            if found != last:
                changes.append(_change("environment", slug, name, last, found))
    if changes:
        listed = "; ".join(_describe(c) for c in changes[:5])
        more = f" (and {len(changes) - 5} more)" if len(changes) > 5 else ""
        raise ImportTargetChanged(
            f"the target changed since the plan: {listed}{more}; plan the import again", changes=changes
        )
