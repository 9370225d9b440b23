"""The dependency closure of an export (docs/bundle-format.md section 4.3).

Every partial reference in every exported version is pinned to the exact version it reaches
now: ``name@N`` that version, ``name@env`` the version that environment's current revision
serves (through ``revisions.resolve.served_versions``, as publish reads it), an unsuffixed
``name`` the latest version. A reached version the bundle does not carry yet is added, and its
own references are pinned in the next round; each round costs a few bulk queries, whatever the
number of versions.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.problems import Forbidden
from anvil_wire import PartialRef, template_references

from ..auth import Principal
from ..models import Environment, Project
from ..prompts.errors import UnresolvedPartial
from ..revisions.resolve import served_versions
from .catalog import Catalog, Line, chunks, uuid_order

__all__ = ["Pin", "pin_references", "partial_references"]

# (prompt id, version number): one version of one prompt line.
Ref = tuple[uuid.UUID, int]


def partial_references(content: dict[str, Any]) -> list[PartialRef]:
    """``template_references`` of a content in normal form, without parsing a template that
    cannot hold a ``{{> partial}}`` (one without any ``>``): most templates have none."""
    template = content["template"]
    texts = [template] if isinstance(template, str) else [m["content"] for m in template]
    return template_references(content) if any(">" in text for text in texts) else []


@dataclass(frozen=True)
class Pin:
    source: Line
    number: int
    reference: str
    target: Line
    target_number: int

    def to_json(self) -> dict[str, object]:
        return {
            "from": {
                "project": self.source.project.slug,
                "prompt": self.source.prompt.name,
                "version": self.number,
            },
            "reference": self.reference,
            "to": {
                "project": self.target.project.slug,
                "prompt": self.target.prompt.name,
                "version": self.target_number,
                "digest": self.target.versions[self.target_number].digest,
            },
        }


class _Pinner:
    def __init__(self, session: AsyncSession, catalog: Catalog, principal: Principal, *, full: bool) -> None:
        self.session = session
        self.catalog = catalog
        self.principal = principal
        self.full = full
        # (project id, environment name) -> prompt name -> served version number
        self.served: dict[tuple[uuid.UUID, str], dict[str, int] | None] = {}

    def _project(self, source: Line, number: int, ref: PartialRef) -> Project:
        slug = ref.project or source.project.slug
        limit = self.principal.claims.project
        if limit is not None and slug != limit:
            raise Forbidden(
                f"{source.key}@{number}: partial {ref.text!r} reaches into project {slug!r}; this token "
                f"is limited to project {limit!r}, so the export cannot carry that dependency"
            )
        project = self.catalog.projects.get(slug)
        if project is None:
            raise UnresolvedPartial(
                f"{source.key}@{number}: partial {ref.text!r}: no project {slug!r} in this organisation",
                reference=ref.text,
            )
        return project

    async def _load_environments(self, wanted: set[tuple[uuid.UUID, str]]) -> None:
        missing = sorted(w for w in wanted if w not in self.served)
        project_ids = sorted({pid for pid, _ in missing})
        found: dict[tuple[uuid.UUID, str], Environment] = {}
        for batch in chunks(sorted({name for _, name in missing})):
            stmt = select(Environment).where(
                Environment.project_id.in_(project_ids), Environment.name.in_(batch)
            )
            found.update({(e.project_id, e.name): e for e in await self.session.scalars(stmt)})
        for key in missing:
            environment = found.get(key)
            # One query per referenced environment (there are few); an archived one still
            # names what it served last, which is what its reference meant.
            if environment is None or environment.last_revision == 0:
                self.served[key] = None
                continue
            versions = await served_versions(self.session, environment)
            self.served[key] = {name: version.number for name, version in versions.items()}

    def _resolve(self, source: Line, number: int, ref: PartialRef) -> tuple[Line, int]:
        project = self._project(source, number, ref)
        where = f"{source.key}@{number}: partial {ref.text!r}"
        target = self.catalog.line(project, ref.name)
        if target is None:
            raise UnresolvedPartial(f"{where}: no prompt {ref.name!r} in project {project.slug!r}")
        if ref.version is not None:
            found = ref.version if ref.version in target.versions else None
        elif ref.environment is not None:
            served = self.served[(project.id, ref.environment)]
            if served is None:
                raise UnresolvedPartial(
                    f"{where}: environment {project.slug}/{ref.environment} does not exist or has no revision"
                )
            found = served.get(ref.name)
        else:
            found = target.prompt.latest_version or None
        if found is None or found not in target.versions:
            raise UnresolvedPartial(f"{where}: no version of {target.key} to pin it to")
        return target, found

    async def run(self, wanted: dict[uuid.UUID, set[int]]) -> list[Pin]:
        pins: list[Pin] = []
        frontier: list[Ref] = sorted(
            ((pid, n) for pid, numbers in wanted.items() for n in numbers),
            key=lambda ref: (uuid_order(ref[0]), ref[1]),
        )
        while frontier:
            lines = self.catalog.lines
            await self.catalog.load_contents(lines[pid].versions[n].id for pid, n in frontier)
            refs = [
                (lines[pid], n, ref)
                for pid, n in frontier
                if self.catalog.may_refer(version_id := lines[pid].versions[n].id)
                for ref in partial_references(self.catalog.content(version_id))
            ]
            projects = [(self._project(line, n, ref), ref) for line, n, ref in refs]
            await self.catalog.find((project.id, ref.name) for project, ref in projects)
            await self._load_environments(
                {(project.id, ref.environment) for project, ref in projects if ref.environment is not None}
            )
            frontier = []
            for line, n, ref in refs:
                target, number = self._resolve(line, n, ref)
                pins.append(Pin(line, n, ref.text, target, number))
                if target.prompt.id not in wanted and self.full:
                    # With full history every carried prompt carries every version (section 4.2).
                    wanted[target.prompt.id] = set()
                    frontier.extend((target.prompt.id, n) for n in sorted(target.versions))
                    wanted[target.prompt.id].update(target.versions)
                reached = wanted.setdefault(target.prompt.id, set())
                if number not in reached:
                    reached.add(number)
                    frontier.append((target.prompt.id, number))
        return pins


async def pin_references(
    session: AsyncSession,
    catalog: Catalog,
    principal: Principal,
    wanted: dict[uuid.UUID, set[int]],
    *,
    full: bool = False,
) -> list[Pin]:
    """Pin every reference of the ``wanted`` versions, adding what they reach to ``wanted``
    (with ``full`` history, every version of a prompt reached for the first time)."""
    return await _Pinner(session, catalog, principal, full=full).run(wanted)
