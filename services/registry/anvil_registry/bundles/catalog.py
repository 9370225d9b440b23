"""What an export has loaded of one organisation, fetched in bulk.

An export of thousands of versions must not issue a query per version: prompts are loaded by
the hundred, each with the light rows of its whole version line (number, digest, message: the
ancestors need every digest), and contents only for the versions the bundle carries.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import Organisation, Project, Prompt, PromptVersion

__all__ = ["CHUNK", "chunks", "VersionMeta", "Line", "Catalog"]

# Bounded IN lists: SQLite and asyncpg cap the parameters of one statement (32766 / 32767).
CHUNK = 1000
T = TypeVar("T")


def chunks(items: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size`` (sorted first by the callers that need determinism)."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass(frozen=True)
class VersionMeta:
    id: uuid.UUID
    number: int
    digest: str
    message: str


@dataclass
class Line:
    """A prompt with the light rows of every one of its versions, by number."""

    prompt: Prompt
    project: Project
    versions: dict[int, VersionMeta] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.project.slug}:{self.prompt.name}"


class Catalog:
    """Projects, prompt lines and contents of one organisation, loaded on demand in bulk."""

    def __init__(self, session: AsyncSession, org: Organisation, projects: Sequence[Project]) -> None:
        self.session = session
        self.org = org
        self.projects = {p.slug: p for p in projects}
        self._project_ids = {p.id: p for p in projects}
        self.lines: dict[uuid.UUID, Line] = {}
        self._by_name: dict[tuple[uuid.UUID, str], Line | None] = {}
        self.contents: dict[uuid.UUID, dict[str, Any]] = {}

    @classmethod
    async def load(cls, session: AsyncSession, org: Organisation) -> Catalog:
        """Every project of ``org`` (archived ones too: a partial may still reach into one)."""
        rows = await session.scalars(select(Project).where(Project.organisation_id == org.id))
        return cls(session, org, list(rows))

    def line(self, project: Project, name: str) -> Line | None:
        """The prompt ``name`` of ``project``, if :meth:`find` loaded it."""
        return self._by_name.get((project.id, name))

    async def add_prompts(self, rows: Iterable[Prompt]) -> list[Line]:
        """Register prompt rows and load their version lines (one query per chunk of prompts)."""
        result: list[Line] = []
        fresh: list[Line] = []
        for prompt in rows:
            line = self.lines.get(prompt.id)
            if line is None:
                line = Line(prompt, self._project_ids[prompt.project_id])
                self.lines[prompt.id] = line
                self._by_name[(prompt.project_id, prompt.name)] = line
                fresh.append(line)
            result.append(line)
        for batch in chunks(sorted(line.prompt.id for line in fresh)):
            stmt = select(
                PromptVersion.id,
                PromptVersion.prompt_id,
                PromptVersion.number,
                PromptVersion.content_hash,
                PromptVersion.message,
            ).where(PromptVersion.prompt_id.in_(batch))
            for row in await self.session.execute(stmt):
                meta = VersionMeta(row.id, row.number, row.content_hash, row.message)
                self.lines[row.prompt_id].versions[row.number] = meta
        return result

    async def find(self, pairs: Iterable[tuple[uuid.UUID, str]]) -> None:
        """Load the prompts named by (project id, name) pairs; absent ones are remembered as None."""
        missing = sorted({pair for pair in pairs if pair not in self._by_name})
        if not missing:
            return
        project_ids = sorted({pid for pid, _ in missing})
        found: list[Prompt] = []
        for batch in chunks(sorted({name for _, name in missing})):
            stmt = select(Prompt).where(Prompt.project_id.in_(project_ids), Prompt.name.in_(batch))
            found.extend(await self.session.scalars(stmt))
        wanted = set(missing)
        await self.add_prompts(p for p in found if (p.project_id, p.name) in wanted)
        for pair in missing:
            self._by_name.setdefault(pair, None)

    async def find_ids(self, prompt_ids: Iterable[uuid.UUID]) -> None:
        """Load the prompts with these ids (those not loaded yet)."""
        missing = sorted({pid for pid in prompt_ids if pid not in self.lines})
        for batch in chunks(missing):
            await self.add_prompts(await self.session.scalars(select(Prompt).where(Prompt.id.in_(batch))))

    async def load_contents(self, version_ids: Iterable[uuid.UUID]) -> None:
        """Fetch the contents of these versions (those not fetched yet)."""
        missing = sorted({vid for vid in version_ids if vid not in self.contents})
        for batch in chunks(missing):
            stmt = select(PromptVersion.id, PromptVersion.content).where(PromptVersion.id.in_(batch))
            for row in await self.session.execute(stmt):
                self.contents[row.id] = row.content
