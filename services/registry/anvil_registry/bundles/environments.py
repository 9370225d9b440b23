"""Environments of an export and their revisions (docs/bundle-format.md section 4.2), in bulk:
one query for the environments, one per thousand of their revisions and of their entries."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..auth import Principal
from ..models import ConfigRevision, Environment, Project, PromptVersion, RevisionEntry
from .catalog import Catalog, chunks

__all__ = ["ExportedEnvironment", "ExportedRevision", "load_environments"]


@dataclass
class ExportedRevision:
    environment_id: uuid.UUID
    number: int
    kind: str
    rollback_of: int | None
    message: str
    prompts: dict[str, tuple[uuid.UUID, int]] = field(default_factory=dict)  # name -> (prompt, number)


@dataclass
class ExportedEnvironment:
    environment: Environment
    catalog: Catalog
    revisions: list[ExportedRevision] = field(default_factory=list)

    def served(self) -> Iterator[tuple[uuid.UUID, int]]:
        """Every (prompt id, version number) an exported revision serves."""
        for revision in self.revisions:
            yield from revision.prompts.values()

    def to_json(self) -> dict[str, Any]:
        lines = self.catalog.lines
        return {
            "name": self.environment.name,
            "description": self.environment.description,
            "revisions": [
                {
                    "number": r.number,
                    "kind": r.kind,
                    "rollback_of": r.rollback_of,
                    "message": r.message,
                    "prompts": {
                        name: {"version": number, "digest": lines[prompt_id].versions[number].digest}
                        for name, (prompt_id, number) in sorted(r.prompts.items())
                    },
                }
                for r in self.revisions
            ],
        }


async def _revisions(
    session: AsyncSession, environments: list[Environment], *, full: bool
) -> dict[uuid.UUID, ExportedRevision]:
    result: dict[uuid.UUID, ExportedRevision] = {}
    by_id = {e.id: e for e in environments}
    for batch in chunks(sorted(by_id)):
        stmt = select(
            ConfigRevision.id,
            ConfigRevision.environment_id,
            ConfigRevision.number,
            ConfigRevision.kind,
            ConfigRevision.rollback_of,
            ConfigRevision.message,
        ).where(ConfigRevision.environment_id.in_(batch))
        if not full:
            stmt = stmt.join(Environment, Environment.id == ConfigRevision.environment_id).where(
                ConfigRevision.number == Environment.last_revision
            )
        for row in await session.execute(stmt):
            result[row.id] = ExportedRevision(
                row.environment_id, row.number, row.kind, row.rollback_of, row.message
            )
    return result


async def load_environments(
    session: AsyncSession, catalog: Catalog, principal: Principal, projects: list[Project], *, full: bool
) -> dict[uuid.UUID, list[ExportedEnvironment]]:
    """The active environments of ``projects`` with every revision (``full``) or the current one."""
    stmt = select(Environment).where(
        Environment.project_id.in_([p.id for p in projects]), Environment.archived_at.is_(None)
    )
    if principal.claims.environment is not None:
        stmt = stmt.where(Environment.name == principal.claims.environment)
    environments = list(await session.scalars(stmt))
    revisions = await _revisions(session, environments, full=full)
    for batch in chunks(sorted(revisions)):
        entries = (
            select(
                RevisionEntry.revision_id, RevisionEntry.key, PromptVersion.prompt_id, PromptVersion.number
            )
            .join(PromptVersion, PromptVersion.id == RevisionEntry.version_id)
            .where(RevisionEntry.revision_id.in_(batch), RevisionEntry.served.is_(True))
        )
        for row in await session.execute(entries):
            revisions[row.revision_id].prompts[row.key] = (row.prompt_id, row.number)
    # Served prompts the selection left out (archived ones, members outside a set) still travel.
    await catalog.find_ids(pid for r in revisions.values() for pid, _ in r.prompts.values())
    exported = {e.id: ExportedEnvironment(e, catalog) for e in environments}
    for revision in revisions.values():
        exported[revision.environment_id].revisions.append(revision)
    result: dict[uuid.UUID, list[ExportedEnvironment]] = {}
    for item in sorted(exported.values(), key=lambda x: x.environment.name):
        item.revisions.sort(key=lambda r: r.number)
        result.setdefault(item.environment.project_id, []).append(item)
    return result
