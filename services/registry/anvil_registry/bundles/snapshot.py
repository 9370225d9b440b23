"""The registry side of an export: the manifest members of docs/bundle-format.md section 4
(selection, options, organisation, projects, dependencies) plus the contents they name.

Everything is sorted as the format says, never in database order, so the same state always
gives the same snapshot (and the bundle worker the same bundle digest). Contents travel as the
JSON text the database holds, spliced into the answer without being decoded and encoded again
(the bundle worker parses them, and checks each against its digest).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.problems import NotFound

from ..auth import Principal
from ..lookup import Archived
from ..models import Organisation, Project, Prompt, PromptSet
from .catalog import Catalog, Line, select_prompts
from .closure import Pin, pin_references
from .environments import ExportedEnvironment, load_environments
from .errors import PromptWithoutVersions
from .schemas import Selection, SnapshotCreate, split_prompt_key

__all__ = ["Snapshot", "read_snapshot"]


@dataclass
class _Chosen:
    """What the selection names: the projects it covers, its prompts and the sets it carries."""

    projects: list[Project]
    lines: list[Line]
    sets: list[PromptSet] = field(default_factory=list)


def _project(catalog: Catalog, principal: Principal, slug: str) -> Project:
    principal.ensure_scope_target(catalog.org.slug, slug)
    project = catalog.projects.get(slug)
    if project is None:
        raise NotFound(f"project {catalog.org.slug}/{slug} not found")
    return project


async def _sets(session: AsyncSession, projects: list[Project]) -> list[PromptSet]:
    stmt = select(PromptSet).where(
        PromptSet.project_id.in_([p.id for p in projects]), PromptSet.archived_at.is_(None)
    )
    return list(await session.scalars(stmt))


async def _whole_projects(
    session: AsyncSession, catalog: Catalog, projects: list[Project], *, archived_prompts: bool
) -> _Chosen:
    stmt = select_prompts().where(Prompt.project_id.in_([p.id for p in projects]))
    if not archived_prompts:
        stmt = stmt.where(Prompt.archived_at.is_(None))
    lines = await catalog.add_prompts(await session.execute(stmt))
    # A prompt without versions has nothing to carry (a bundle lists at least one version each).
    lines = [line for line in lines if line.versions]
    return _Chosen(projects, lines, await _sets(session, projects))


async def _named_prompts(catalog: Catalog, principal: Principal, keys: list[str]) -> _Chosen:
    pairs = [(_project(catalog, principal, slug), name) for slug, name in map(split_prompt_key, keys)]
    await catalog.find((project.id, name) for project, name in pairs)
    lines: list[Line] = []
    for project, name in pairs:
        line = catalog.line(project, name)
        if line is None:
            raise NotFound(f"prompt {project.slug}/{name} not found")
        if not line.versions:
            raise PromptWithoutVersions(f"prompt {project.slug}/{name} has no version to export")
        if line.prompt.archived_at is not None:
            raise Archived(
                f"prompt {project.slug}/{name} is archived; archived prompts are exported "
                "only with their organisation"
            )
        lines.append(line)
    projects = sorted({line.project.slug: line.project for line in lines}.values(), key=lambda p: p.slug)
    return _Chosen(projects, lines)


async def _prompt_set(
    session: AsyncSession, catalog: Catalog, principal: Principal, slug: str, name: str
) -> _Chosen:
    project = _project(catalog, principal, slug)
    row = await session.scalar(
        select(PromptSet).where(PromptSet.project_id == project.id, PromptSet.name == name)
    )
    if row is None:
        raise NotFound(f"prompt set {name!r} not found in project {slug!r}")
    if row.archived_at is not None:
        raise Archived(f"prompt set {name!r} is archived")
    await catalog.find((project.id, member) for member in row.prompts)
    lines = [catalog.line(project, member) for member in row.prompts]
    # A member archived since the set was written (or without versions) is not exported (see _set_json).
    active = [
        line for line in lines if line is not None and line.prompt.archived_at is None and line.versions
    ]
    return _Chosen([project], active, [row])


async def _choose(
    session: AsyncSession, catalog: Catalog, principal: Principal, selection: Selection
) -> _Chosen:
    if selection.kind == "organisation":
        principal.ensure_org_wide("export the whole organisation")
        active = sorted((p for p in catalog.projects.values() if p.archived_at is None), key=lambda p: p.slug)
        return await _whole_projects(session, catalog, active, archived_prompts=True)
    if selection.kind == "project":
        assert selection.project is not None
        project = _project(catalog, principal, selection.project)
        return await _whole_projects(session, catalog, [project], archived_prompts=False)
    if selection.kind == "prompt_set":
        assert selection.project is not None
        assert selection.prompt_set is not None
        return await _prompt_set(session, catalog, principal, selection.project, selection.prompt_set)
    assert selection.prompts is not None
    return await _named_prompts(catalog, principal, selection.prompts)


def _initial_versions(lines: list[Line], history: str) -> dict[uuid.UUID, set[int]]:
    if history == "full":
        return {line.prompt.id: set(line.versions) for line in lines}
    return {
        line.prompt.id: {line.prompt.latest_version} if line.prompt.latest_version else set()
        for line in lines
    }


def _prompt_json(line: Line, numbers: set[int], selected: set[uuid.UUID]) -> dict[str, Any]:
    listed = sorted(numbers)
    first = listed[0] if listed else 0
    return {
        "name": line.prompt.name,
        "description": line.prompt.description,
        "archived": line.prompt.archived_at is not None,
        "role": "selected" if line.prompt.id in selected else "dependency",
        "versions": [
            {"number": n, "digest": line.versions[n].digest, "message": line.versions[n].message}
            for n in listed
        ],
        "ancestors": [line.versions[n].digest for n in sorted(line.versions) if n < first],
    }


def _set_json(row: PromptSet, exported: set[str]) -> dict[str, Any]:
    # Members the bundle does not carry (archived prompts outside an organisation export) are
    # left out, so that a set never names a prompt the importer cannot find.
    members = sorted(name for name in row.prompts if name in exported)
    return {"name": row.name, "description": row.description, "prompts": members}


def _projects_json(
    catalog: Catalog,
    chosen: _Chosen,
    wanted: dict[uuid.UUID, set[int]],
    environments: dict[uuid.UUID, list[ExportedEnvironment]],
    *,
    everything: bool,
) -> list[dict[str, Any]]:
    # An organisation export asks for everything it carries, even what only a partial reaches
    # (a prompt of an archived project): every prompt is "selected" (section 4.2).
    selected = set(wanted) if everything else {line.prompt.id for line in chosen.lines}
    projects = {p.id: p for p in chosen.projects}
    by_project: dict[uuid.UUID, list[Line]] = {p.id: [] for p in chosen.projects}
    for prompt_id in wanted:
        line = catalog.lines[prompt_id]
        projects.setdefault(line.project.id, line.project)
        by_project.setdefault(line.project.id, []).append(line)
    result: list[dict[str, Any]] = []
    for project_id, lines in by_project.items():
        project = projects[project_id]
        names = {line.prompt.name for line in lines}
        sets = [_set_json(s, names) for s in chosen.sets if s.project_id == project_id]
        result.append(
            {
                "slug": project.slug,
                "name": project.name,
                "description": project.description,
                "prompts": [
                    _prompt_json(line, wanted[line.prompt.id], selected)
                    for line in sorted(lines, key=lambda line: line.prompt.name)
                ],
                "prompt_sets": sorted(sets, key=lambda s: s["name"]),
                "environments": [e.to_json() for e in environments.get(project_id, [])],
            }
        )
    return sorted(result, key=lambda p: p["slug"])


def _contents(catalog: Catalog, wanted: dict[uuid.UUID, set[int]]) -> list[tuple[str, str]]:
    contents: dict[str, str] = {}
    for prompt_id, numbers in wanted.items():
        line = catalog.lines[prompt_id]
        for n in numbers:
            meta = line.versions[n]
            contents[meta.digest] = catalog.contents[meta.id]
    return sorted(contents.items())


@dataclass(frozen=True)
class Snapshot:
    """The manifest members of an export and its contents (digest, stored JSON text), sorted."""

    members: dict[str, Any]
    contents: list[tuple[str, str]]

    def to_bytes(self) -> bytes:
        """The JSON answer: the members, then ``contents`` mapping each digest to its content."""
        head = json.dumps(self.members, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        body = ",".join(f"{json.dumps(digest)}:{text}" for digest, text in self.contents)
        return f'{head[:-1]},"contents":{{{body}}}}}'.encode()


def _dependencies(pins: list[Pin]) -> list[dict[str, Any]]:
    unique = {(p.source.project.slug, p.source.prompt.name, p.number, p.reference): p for p in pins}
    return [unique[key].to_json() for key in sorted(unique)]


async def read_snapshot(
    session: AsyncSession, principal: Principal, *, org: Organisation, data: SnapshotCreate
) -> Snapshot:
    """The manifest members and contents of an export of ``org`` (docs/bundle-format.md section 4)."""
    catalog = await Catalog.load(session, org)
    chosen = await _choose(session, catalog, principal, data.selection)
    full = data.history == "full"
    wanted = _initial_versions(chosen.lines, data.history)
    environments: dict[uuid.UUID, list[ExportedEnvironment]] = {}
    if data.environments:
        environments = await load_environments(session, catalog, principal, chosen.projects, full=full)
        for exported in environments.values():
            for environment in exported:
                for prompt_id, number in environment.served():
                    every = set(catalog.lines[prompt_id].versions) if full else set()
                    wanted.setdefault(prompt_id, every).add(number)
    pins = await pin_references(session, catalog, principal, wanted, full=full)
    members = {
        "selection": data.selection.model_dump(),
        "options": {"history": data.history, "environments": data.environments},
        "organisation": {"slug": org.slug, "name": org.name},
        "projects": _projects_json(
            catalog, chosen, wanted, environments, everything=data.selection.kind == "organisation"
        ),
        "dependencies": _dependencies(pins),
    }
    return Snapshot(members, _contents(catalog, wanted))
