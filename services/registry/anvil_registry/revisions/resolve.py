"""Resolve a revision's partial closure (docs/prompt-format.md, "Partial references").

Served prompts are keyed by name; every other prompt a partial reaches is a dependency keyed
``project:name@version``. The result is self-contained: a client renders any served prompt
from the revision alone.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_wire import ManifestEntry, PartialRef, template_references
from anvil_wire.prompts import MAX_PARTIAL_DEPTH

from ..models import ConfigRevision, Environment, Project, Prompt, PromptVersion, RevisionEntry
from .errors import ArchivedPrompt, CyclicReference, InvalidPartial, PartialsTooDeep, UnresolvedPartial

__all__ = ["Closure", "resolve_closure", "served_versions"]


@dataclass
class Closure:
    prompts: dict[str, ManifestEntry] = field(default_factory=dict)
    dependencies: dict[str, ManifestEntry] = field(default_factory=dict)
    contents: dict[str, dict[str, Any]] = field(default_factory=dict)
    version_ids: dict[str, uuid.UUID] = field(default_factory=dict)


async def served_versions(session: AsyncSession, environment: Environment) -> dict[str, PromptVersion]:
    """The versions an environment's current revision serves, by prompt name."""
    if environment.last_revision == 0:
        return {}
    rows = await session.execute(
        select(RevisionEntry.key, PromptVersion)
        .join(ConfigRevision, ConfigRevision.id == RevisionEntry.revision_id)
        .join(PromptVersion, PromptVersion.id == RevisionEntry.version_id)
        .where(
            ConfigRevision.environment_id == environment.id,
            ConfigRevision.number == environment.last_revision,
            RevisionEntry.served.is_(True),
        )
    )
    return {key: version for key, version in rows.all()}


class _Resolver:
    def __init__(
        self,
        session: AsyncSession,
        project: Project,
        environment_name: str,
        served: dict[str, PromptVersion],
        visible_project: str | None,
    ):
        self.visible_project = visible_project
        self.session = session
        self.project = project
        self.environment_name = environment_name
        self.served = served
        self.closure = Closure()
        self._projects: dict[str, Project] = {project.slug: project}
        self._entry_partials: dict[str, dict[str, str]] = {}
        self._height: dict[str, int] = {}  # longest chain of partials below an entry

    async def run(self) -> Closure:
        for name in sorted(self.served):
            await self._visit(name, self.served[name], self.project, (name,))
            if self._height[name] > MAX_PARTIAL_DEPTH:
                raise PartialsTooDeep(
                    f"{name}: partials nest {self._height[name]} deep; "
                    f"clients render at most {MAX_PARTIAL_DEPTH}"
                )
        for name, version in self.served.items():
            self.closure.prompts[name] = ManifestEntry(
                version=version.number, digest=version.content_hash, partials=self._entry_partials[name]
            )
        return self.closure

    async def _visit(
        self, key: str, version: PromptVersion, project: Project, stack: tuple[str, ...]
    ) -> None:
        if key in self._entry_partials:
            return
        partials: dict[str, str] = {}
        self._entry_partials[key] = partials  # set before recursing: a re-visit on the stack is a cycle
        self.closure.contents[version.content_hash] = version.content
        self.closure.version_ids[key] = version.id
        height = 0
        for ref in template_references(version.content):
            target_key, target, target_project = await self._resolve(ref, project, key)
            if target_key in stack:
                raise CyclicReference(f"partials form a cycle: {' > '.join((*stack, target_key))}")
            if not isinstance(target.content["template"], str):
                raise InvalidPartial(f"{key}: partial {ref.text!r} is a chat prompt; partials must be text")
            partials[ref.text] = target_key
            await self._visit(target_key, target, target_project, (*stack, target_key))
            height = max(height, self._height[target_key] + 1)
            if target_key not in self.served:
                self.closure.dependencies[target_key] = ManifestEntry(
                    version=target.number,
                    digest=target.content_hash,
                    partials=self._entry_partials[target_key],
                    project=target_project.slug,
                    name=ref.name,
                )
        self._height[key] = height

    async def _project(self, slug: str, where: str, ref: PartialRef) -> Project:
        if slug not in self._projects and self.visible_project not in (None, slug):
            # The caller's token is limited to one project: the others do not exist for it.
            raise UnresolvedPartial(
                f"{where}: partial {ref.text!r}: no project {slug!r} in this organisation"
            )
        if slug not in self._projects:
            found = await self.session.scalar(
                select(Project).where(
                    Project.organisation_id == self.project.organisation_id, Project.slug == slug
                )
            )
            if found is None:
                raise UnresolvedPartial(
                    f"{where}: partial {ref.text!r}: no project {slug!r} in this organisation"
                )
            if found.archived_at is not None:
                raise ArchivedPrompt(f"{where}: partial {ref.text!r}: project {slug!r} is archived")
            self._projects[slug] = found
        return self._projects[slug]

    async def _ensure_active(self, version: PromptVersion, where: str, ref: PartialRef) -> None:
        prompt = await self.session.get(Prompt, version.prompt_id)
        if prompt is None or prompt.archived_at is not None:
            raise ArchivedPrompt(f"{where}: partial {ref.text!r} points at an archived prompt")

    async def _resolve(
        self, ref: PartialRef, context: Project, where: str
    ) -> tuple[str, PromptVersion, Project]:
        project = await self._project(ref.project or context.slug, where, ref)
        if ref.version is not None:
            version = await self.session.scalar(
                select(PromptVersion)
                .join(Prompt, Prompt.id == PromptVersion.prompt_id)
                .where(
                    Prompt.project_id == project.id,
                    Prompt.name == ref.name,
                    PromptVersion.number == ref.version,
                )
            )
            if version is None:
                raise UnresolvedPartial(
                    f"{where}: partial {ref.text!r}: no version {ref.version} of {ref.name!r}"
                )
            await self._ensure_active(version, where, ref)
            return f"{project.slug}:{ref.name}@{version.number}", version, project
        if ref.environment is None and project.id == self.project.id:
            served = self.served.get(ref.name)
            if served is None:
                raise UnresolvedPartial(
                    f"{where}: partial {ref.text!r} resolves through this environment, "
                    f"which does not serve {ref.name!r}"
                )
            return ref.name, served, project
        env_name = ref.environment or self.environment_name
        environment = await self.session.scalar(
            select(Environment).where(Environment.project_id == project.id, Environment.name == env_name)
        )
        if environment is None or environment.archived_at is not None:
            raise UnresolvedPartial(
                f"{where}: partial {ref.text!r}: no active environment {project.slug}/{env_name}"
            )
        version = (await served_versions(self.session, environment)).get(ref.name)
        if version is None:
            raise UnresolvedPartial(
                f"{where}: partial {ref.text!r}: {project.slug}/{env_name} does not serve {ref.name!r}"
            )
        await self._ensure_active(version, where, ref)
        return f"{project.slug}:{ref.name}@{version.number}", version, project


async def resolve_closure(
    session: AsyncSession,
    *,
    project: Project,
    environment_name: str,
    served: dict[str, PromptVersion],
    visible_project: str | None = None,
) -> Closure:
    """Manifest entries and contents for ``served`` plus every partial they reach
    (``visible_project``: the caller's project limit; partials may not leave it)."""
    return await _Resolver(session, project, environment_name, served, visible_project).run()
