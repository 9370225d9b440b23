"""Writing a validated import: what ``validate.Work`` decided, in bulk where there is bulk.

Prompts, versions and their audit entries are inserted in a few statements whatever their
number (an organisation restore writes tens of thousands). Projects, sets, environments,
revisions and archiving are few, and go through the same service functions as the ordinary
endpoints, so their rules, audit entries, events and signed revision documents are the same.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.db import utcnow
from anvil_wire import template_references

from ..audit.service import project_target, record_many
from ..auth import Principal
from ..bulk import insert_rows
from ..environments.schemas import EnvironmentCreate
from ..environments.service import create_environment
from ..models import Environment, Project, Prompt, PromptVersion
from ..projects.schemas import ProjectCreate
from ..projects.service import create_project
from ..prompt_sets.schemas import PromptSetCreate, PromptSetUpdate
from ..prompt_sets.service import create_prompt_set, update_prompt_set
from ..prompts.service import archive_prompt
from ..revisions.schemas import RevisionCreate
from ..revisions.service import Created, publish_revision, roll_back
from ..state import RegistryState
from .catalog import chunks
from .schemas import CreatedCounts, ImportCreate, ImportPublic, RevisionCreated, VersionCreated
from .target import Key, Target
from .validate import NewRevision, Work

__all__ = ["write_import"]


@dataclass
class _Counts:
    projects: int = 0
    prompts: int = 0
    prompt_sets: int = 0
    environments: int = 0
    revisions: list[RevisionCreated] = field(default_factory=list)


@dataclass
class _Writer:
    session: AsyncSession
    state: RegistryState
    principal: Principal
    target: Target
    data: ImportCreate
    work: Work
    counts: _Counts = field(default_factory=_Counts)
    prompt_ids: dict[Key, uuid.UUID] = field(default_factory=dict)  # every prompt written to

    def __post_init__(self) -> None:
        self.prompt_ids.update({key: p.id for key, p in self.target.prompts.items()})

    async def projects(self) -> None:
        for item in self.data.projects:
            if item.slug in self.target.projects:
                continue
            create = ProjectCreate(slug=item.slug, name=item.name, description=item.description)
            project = await create_project(self.session, self.principal, org=self.target.org, data=create)
            project.organisation = self.target.org  # audit targets and events name it
            self.target.projects[item.slug] = project
            self.counts.projects += 1

    async def prompts(self) -> list[tuple[str, str, dict[str, Any]]]:
        """New prompts inserted, existing ones moved to their new head; the audit entries to add."""
        now = utcnow()
        rows: list[dict[str, Any]] = []
        audit: list[tuple[str, str, dict[str, Any]]] = []
        for item in self.data.prompts:
            key = (item.project, item.name)
            latest = self.work.latest[key]
            existing = self.target.prompts.get(key)
            if existing is not None:
                existing.latest_version = latest
                continue
            self.prompt_ids[key] = prompt_id = uuid.uuid4()
            project = self.target.projects[item.project]
            rows.append(
                {
                    "id": prompt_id,
                    "project_id": project.id,
                    "name": item.name,
                    "description": item.description,
                    "latest_version": latest,
                    "created_at": now,
                }
            )
            audit.append(("prompt.create", project_target(project, item.name), {}))
        await insert_rows(self.session, Prompt, rows)
        self.counts.prompts = len(rows)
        return audit

    async def versions(self) -> list[tuple[str, str, dict[str, Any]]]:
        now, origin = utcnow(), self.data.origin
        rows: list[dict[str, Any]] = []
        audit: list[tuple[str, str, dict[str, Any]]] = []
        for v in self.work.versions:
            rows.append(
                {
                    "id": v.id,
                    "prompt_id": self.prompt_ids[(v.project, v.name)],
                    "number": v.number,
                    "content_hash": v.digest,
                    "content": self.work.contents[v.digest],
                    "parent_id": v.parent_id,
                    "origin_instance": origin.instance,
                    "origin_digest": origin.bundle,
                    "message": v.message,
                    "created_at": now,
                    "created_by": self.principal.actor,
                }
            )
            target = f"{project_target(self.target.projects[v.project], v.name)}@{v.number}"
            details = {"number": v.number, "content_hash": v.digest, "origin": origin.model_dump()}
            audit.append(("prompt.version.create", target, details))
        # In order: a version's parent is written before it (or in the same statement).
        await insert_rows(self.session, PromptVersion, rows)
        return audit

    async def prompt_sets(self) -> None:
        for item in self.data.prompt_sets:
            project = self.target.projects[item.project]
            existing = self.target.sets.get((item.project, item.name))
            if existing is None:
                create = PromptSetCreate(name=item.name, description=item.description, prompts=item.prompts)
                await create_prompt_set(self.session, self.principal, project=project, data=create)
            else:
                update = PromptSetUpdate(description=item.description, prompts=item.prompts)
                await update_prompt_set(
                    self.session, self.principal, project=project, prompt_set=existing, data=update
                )
            self.counts.prompt_sets += 1

    async def environments(self) -> None:
        for item in self.data.environments:
            key = (item.project, item.name)
            if key in self.target.environments:
                continue
            project = self.target.projects[item.project]
            create = EnvironmentCreate(name=item.name, description=item.description)
            environment = await create_environment(self.session, self.principal, project=project, data=create)
            self.target.environments[key] = environment
            self.counts.environments += 1

    async def revisions(self) -> None:
        for key in _environment_order(self.data, self.work):
            project, environment = self.target.projects[key[0]], self.target.environments[key]
            for revision in self.work.revisions[key]:
                created = await self._revision(project, environment, revision)
                # The plan announced these numbers; validate.py derived them the same way.
                assert created.revision.number == revision.number, (created.revision.number, revision.number)
                self.counts.revisions.append(
                    RevisionCreated(project=key[0], environment=key[1], number=revision.number)
                )

    async def _revision(self, project: Project, environment: Environment, revision: NewRevision) -> Created:
        if revision.rollback_of is not None:
            return await roll_back(
                self.session,
                self.state,
                self.principal,
                project=project,
                environment=environment,
                to_revision=revision.rollback_of,
                message=revision.message,
            )
        data = RevisionCreate(prompts=dict(revision.served), replace=True, message=revision.message)
        return await publish_revision(
            self.session,
            self.state,
            self.principal,
            project=project,
            environment=environment,
            data=data,
            kind="promote" if revision.kind == "promote" else "publish",
            always=True,
        )

    async def archive(self) -> None:
        """Archive what the body marks archived, last: until now its versions could be served."""
        keys = [(p.project, p.name) for p in self.data.prompts if p.archived]
        rows = {key: row for key in keys if (row := self.target.prompts.get(key)) is not None}
        fresh = {self.prompt_ids[key]: key for key in keys if key not in rows}
        for batch in chunks(sorted(fresh)):
            for prompt in await self.session.scalars(select(Prompt).where(Prompt.id.in_(batch))):
                rows[fresh[prompt.id]] = prompt
        for key in keys:
            project = self.target.projects[key[0]]
            await archive_prompt(self.session, self.principal, project=project, prompt=rows[key])

    def result(self) -> ImportPublic:
        counts = self.counts
        return ImportPublic(
            import_id=self.data.import_id,
            created=CreatedCounts(
                projects=counts.projects,
                prompts=counts.prompts,
                versions=len(self.work.versions),
                prompt_sets=counts.prompt_sets,
                environments=counts.environments,
                revisions=len(counts.revisions),
            ),
            versions=[
                VersionCreated(project=v.project, name=v.name, number=v.number, digest=v.digest)
                for v in self.work.versions
            ],
            revisions=counts.revisions,
        )


def _environment_order(data: ImportCreate, work: Work) -> Iterator[Key]:
    """Environments in body order, except that one whose served partials resolve through another
    environment of the import (``name@env``, or an unsuffixed partial into another project) comes
    after it, so its revisions find that environment's revisions in place (cycles: body order)."""
    keys = [(e.project, e.name) for e in data.environments]
    digests = {(v.project, v.name, v.number): v.digest for v in work.versions}
    needs: dict[Key, set[Key]] = {}
    for project, name in keys:
        served = {(project, p, n) for r in work.revisions[(project, name)] for p, n in r.served.items()}
        contents = [work.contents[digests[s]] for s in sorted(served) if s in digests]
        reached = {
            (ref.project or project, ref.environment or name)
            for content in contents
            for ref in template_references(content)
            if ref.version is None and (ref.environment is not None or ref.project not in (None, project))
        }
        needs[(project, name)] = (reached & set(keys)) - {(project, name)}
    done: set[Key] = set()
    while len(done) < len(keys):
        ready = [k for k in keys if k not in done and needs[k] <= done]
        step = ready[0] if ready else next(k for k in keys if k not in done)
        done.add(step)
        yield step


async def write_import(
    session: AsyncSession,
    state: RegistryState,
    principal: Principal,
    *,
    target: Target,
    data: ImportCreate,
    work: Work,
) -> ImportPublic:
    """Write what ``work`` decided, in dependency order; returns what was created."""
    writer = _Writer(session, state, principal, target, data, work)
    await writer.projects()
    audit = await writer.prompts()
    audit += await writer.versions()
    await record_many(session, principal, audit, organisation_id=target.org.id)
    await writer.prompt_sets()
    await writer.environments()
    await writer.revisions()
    await writer.archive()
    return writer.result()
