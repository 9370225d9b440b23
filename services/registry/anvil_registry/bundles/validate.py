"""Everything an import checks before it writes: tenancy, the body's own consistency, every
content against its digest, the versions to append, their references, set members and the
versions each revision serves. All in bulk; any failure is a problem and nothing is written."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_wire import sha256_digest
from anvil_wire.bundles.fastjson import canonical_bytes
from anvil_wire.prompts import PromptFormatError, normalize_content

from ..auth import Principal
from ..lookup import Archived, ensure_active
from ..models import ConfigRevision, Environment, Project, Prompt, PromptVersion, RevisionEntry
from ..prompt_sets.errors import UnknownPrompt
from ..prompts.errors import CyclicReference, InvalidPrompt, PromptTooLarge, UnresolvedPartial
from .catalog import chunks
from .closure import partial_references
from .errors import DigestMismatch, InvalidImport
from .schemas import EnvironmentImport, ImportCreate, PromptImport, PromptSetImport, RevisionImport
from .target import Key, Target

__all__ = ["NewVersion", "NewRevision", "Work", "check_tenancy", "validate_import"]


@dataclass(frozen=True)
class NewVersion:
    id: uuid.UUID
    project: str
    name: str
    number: int
    digest: str
    message: str
    parent_id: uuid.UUID | None


@dataclass(frozen=True)
class NewRevision:
    number: int
    served: dict[str, int]  # prompt name -> version number
    kind: str
    rollback_of: int | None
    message: str


@dataclass
class Work:
    """What the import will write, decided before anything is written."""

    contents: dict[str, dict[str, Any]]
    versions: list[NewVersion] = field(default_factory=list)
    latest: dict[Key, int] = field(default_factory=dict)  # head number of every imported prompt after it
    revisions: dict[Key, list[NewRevision]] = field(default_factory=dict)  # by environment


def _named_items(data: ImportCreate) -> list[PromptImport | PromptSetImport | EnvironmentImport]:
    return [*data.prompts, *data.prompt_sets, *data.environments]


def check_tenancy(data: ImportCreate, target: Target, principal: Principal) -> None:
    """The token's organisation, project and environment limits on what the body writes."""
    org = target.org.slug
    for slug in sorted({item.project for item in _named_items(data)}):
        principal.ensure_scope_target(org, slug)
    for item in data.projects:
        principal.ensure_scope_target(org, item.slug)
        if item.slug not in target.projects:
            principal.ensure_org_wide("create projects")
    if data.prompt_sets:
        principal.ensure_project_wide("change prompt sets")
    if any(p.archived for p in data.prompts):
        principal.ensure_project_wide("archive prompts")
    for env in data.environments:
        principal.ensure_scope_target(org, env.project, env.name)
        if (env.project, env.name) not in target.environments:
            principal.ensure_project_wide("create environments")


def _check_unique(kind: str, keys: Iterable[str]) -> None:
    repeated = sorted(k for k, n in Counter(keys).items() if n > 1)
    if repeated:
        raise InvalidImport(f"{kind} {repeated[0]} is listed more than once")


def _check_shape(data: ImportCreate, target: Target) -> None:
    _check_unique("project", (p.slug for p in data.projects))
    _check_unique("prompt", (f"{p.project}/{p.name}" for p in data.prompts))
    _check_unique("prompt set", (f"{s.project}/{s.name}" for s in data.prompt_sets))
    _check_unique("environment", (f"{e.project}/{e.name}" for e in data.environments))
    available = set(target.projects) | {p.slug for p in data.projects}
    for item in _named_items(data):
        if item.project not in available:
            raise InvalidImport(
                f"{item.project}/{item.name}: project {item.project!r} neither exists "
                "nor is created by this import"
            )
        project = target.projects.get(item.project)
        if project is not None:
            ensure_active(project, f"project {item.project!r}")
    for item in data.prompt_sets:
        row = target.sets.get((item.project, item.name))
        if row is not None and row.archived_at is not None:
            raise Archived(f"prompt set {item.project}/{item.name} is archived and read-only")
    for env in data.environments:
        found = target.environments.get((env.project, env.name))
        if found is not None:
            ensure_active(found, f"environment {env.project}/{env.name}")


def _normalize(data: ImportCreate, max_bytes: int) -> dict[str, dict[str, Any]]:
    """Each content in normal form, checked against its digest (the key it is listed under)."""
    normal: dict[str, dict[str, Any]] = {}
    for digest, content in data.contents.items():
        try:
            value = normalize_content(content)
        except PromptFormatError as exc:
            raise InvalidPrompt(f"contents[{digest}]: {exc}", digest=digest) from exc
        encoded = canonical_bytes(value)
        if len(encoded) > max_bytes:
            raise PromptTooLarge(
                f"contents[{digest}] is {len(encoded)} bytes in canonical form; the limit is {max_bytes}",
                digest=digest,
            )
        actual = sha256_digest(encoded)
        if actual != digest:
            raise DigestMismatch(f"contents[{digest}] hashes to {actual}", digest=digest, actual=actual)
        normal[digest] = value
    return normal


def _plan_versions(data: ImportCreate, target: Target, work: Work) -> None:
    """Append each prompt's versions after its head, in order; content equal to the head is skipped."""
    for item in data.prompts:
        key = (item.project, item.name)
        prompt = target.prompts.get(key)
        number = prompt.latest_version if prompt is not None else 0
        head_id, head_digest = (
            target.heads.get(prompt.id, (None, None)) if prompt is not None else (None, None)
        )
        for version in item.versions:
            if version.digest == head_digest:
                continue
            if version.digest not in work.contents:
                raise InvalidImport(
                    f"prompt {item.project}/{item.name}: version {version.digest} is not in contents"
                )
            if prompt is not None:
                ensure_active(prompt, f"prompt {item.project}/{item.name}")
            number += 1
            new = NewVersion(uuid.uuid4(), *key, number, version.digest, version.message, head_id)
            work.versions.append(new)
            head_id, head_digest = new.id, new.digest
        work.latest[key] = number


class _Known:
    """Projects and prompts of the organisation beyond the target's, loaded in bulk when needed."""

    def __init__(self, session: AsyncSession, target: Target) -> None:
        self.session = session
        self.target = target
        self.projects: dict[str, Project | None] = dict(target.projects)
        self.prompts: dict[Key, Prompt | None] = dict(target.prompts)

    async def load(self, keys: Iterable[Key]) -> None:
        wanted = {k for k in keys if k not in self.prompts}
        slugs = sorted({slug for slug, _ in wanted} - set(self.projects))
        for batch in chunks(slugs):
            projects = select(Project).where(
                Project.organisation_id == self.target.org.id, Project.slug.in_(batch)
            )
            self.projects.update({p.slug: p for p in await self.session.scalars(projects)})
        for slug in slugs:
            self.projects.setdefault(slug, None)
        by_id = {p.id: slug for slug, p in self.projects.items() if p is not None}
        for batch in chunks(sorted({name for _, name in wanted})):
            stmt = select(Prompt).where(Prompt.project_id.in_(sorted(by_id)), Prompt.name.in_(batch))
            for row in await self.session.scalars(stmt):
                self.prompts.setdefault((by_id[row.project_id], row.name), row)
        for key in wanted:
            self.prompts.setdefault(key, None)


async def _check_references(known: _Known, principal: Principal, data: ImportCreate, work: Work) -> None:
    """The rules of version creation (prompts/references.py), for every new version at once."""
    created = {p.slug for p in data.projects}
    limit = principal.claims.project
    found = [
        (v, ref, ref.project or v.project)
        for v in work.versions
        for ref in partial_references(work.contents[v.digest])
    ]
    # A project-limited token cannot reach other projects: for it they do not exist.
    await known.load((slug, ref.name) for _, ref, slug in found if limit is None or slug == limit)
    for v, ref, slug in found:
        where = f"prompt {v.project}/{v.name} version {v.number}: {{{{> {ref.text}}}}}"
        if slug == v.project and ref.name == v.name:
            raise CyclicReference(f"{where} refers to the prompt itself", reference=ref.text)
        hidden = limit is not None and slug != limit
        if hidden or (slug not in created and known.projects.get(slug) is None):
            raise UnresolvedPartial(f"{where}: no project {slug!r} in this organisation", reference=ref.text)
        if ref.version is not None:
            existing = known.prompts.get((slug, ref.name))
            latest = work.latest.get((slug, ref.name), existing.latest_version if existing else 0)
            if not 1 <= ref.version <= latest:
                raise UnresolvedPartial(
                    f"{where}: prompt {slug}:{ref.name} has no version {ref.version}", reference=ref.text
                )


async def _check_sets(known: _Known, data: ImportCreate, work: Work) -> None:
    members = {(s.project, m) for s in data.prompt_sets for m in s.prompts}
    await known.load(members)
    for item in data.prompt_sets:
        missing = []
        for name in sorted(set(item.prompts)):
            row = known.prompts.get((item.project, name))
            active = row.archived_at is None if row is not None else (item.project, name) in work.latest
            if not active:
                missing.append(name)
        if missing:
            raise UnknownPrompt(
                f"prompt set {item.project}/{item.name}: no active prompt named "
                f"{', '.join(repr(n) for n in missing)} in project {item.project!r}",
                missing=missing,
            )


VersionKey = tuple[str, str, int]  # (project, prompt, number)


async def _existing_versions(session: AsyncSession, known: _Known, keys: set[Key]) -> dict[VersionKey, str]:
    """Digest of every existing version of these prompts, in bulk (revisions name few prompts)."""
    ids = {row.id: key for key in keys if (row := known.prompts.get(key)) is not None}
    found: dict[VersionKey, str] = {}
    for batch in chunks(sorted(ids)):
        stmt = select(PromptVersion.prompt_id, PromptVersion.number, PromptVersion.content_hash).where(
            PromptVersion.prompt_id.in_(batch)
        )
        for prompt_id, number, digest in await session.execute(stmt):
            found[(*ids[prompt_id], number)] = digest
    return found


async def _existing_served(session: AsyncSession, environment: Environment, number: int) -> dict[str, str]:
    """What an existing revision serves (name -> digest): the one a rollback restores."""
    stmt = (
        select(RevisionEntry.key, RevisionEntry.content_hash)
        .join(ConfigRevision, ConfigRevision.id == RevisionEntry.revision_id)
        .where(
            ConfigRevision.environment_id == environment.id,
            ConfigRevision.number == number,
            RevisionEntry.served.is_(True),
        )
    )
    return {key: digest for key, digest in await session.execute(stmt)}


class _Revisions:
    """Each imported revision's served version numbers, its number and what a rollback restores."""

    def __init__(self, session: AsyncSession, target: Target, work: Work) -> None:
        self.session = session
        self.target = target
        self.work = work
        self.digests: dict[VersionKey, str] = {}
        self.newest: dict[tuple[str, str, str], int] = {}  # (project, prompt, digest) -> number

    async def load(self, known: _Known, data: ImportCreate) -> None:
        keys = {(e.project, name) for e in data.environments for r in e.revisions for name in r.prompts}
        await known.load(keys)
        self.digests = await _existing_versions(self.session, known, keys)
        for v in self.work.versions:
            self.digests[(v.project, v.name, v.number)] = v.digest
        # Ascending numbers: the newest version with a digest is the one written last.
        for (slug, name, number), digest in sorted(self.digests.items()):
            self.newest[(slug, name, digest)] = number

    def served(self, project: str, revision: RevisionImport, where: str) -> dict[str, int]:
        entry = {}
        for name, digest in sorted(revision.prompts.items()):
            number = revision.versions.get(name) or self.newest.get((project, name, digest))
            if number is None or self.digests.get((project, name, number)) != digest:
                which = f"version {number}" if name in revision.versions else "version"
                raise InvalidImport(f"{where}: prompt {name!r} has no {which} with digest {digest}")
            entry[name] = number
        return entry

    async def restored(
        self, env: EnvironmentImport, written: list[NewRevision], number: int
    ) -> dict[str, str]:
        """What revision ``number`` (earlier than the one being planned) serves: name -> digest."""
        for revision in written:
            if revision.number == number:
                return {n: self.digests[(env.project, n, v)] for n, v in revision.served.items()}
        existing = self.target.environments.get((env.project, env.name))
        assert existing is not None  # numbers below the first written one exist on the target
        return await _existing_served(self.session, existing, number)

    async def plan(self, env: EnvironmentImport) -> list[NewRevision]:
        existing = self.target.environments.get((env.project, env.name))
        base = existing.last_revision if existing is not None else 0
        written: list[NewRevision] = []
        for index, revision in enumerate(env.revisions, start=1):
            number = base + index
            where = f"environment {env.project}/{env.name} revision {index} (number {number})"
            served = self.served(env.project, revision, where)
            if revision.rollback_of is not None:
                if revision.rollback_of >= number:
                    raise InvalidImport(
                        f"{where}: rollback_of {revision.rollback_of} is not an earlier revision"
                    )
                restored = await self.restored(env, written, revision.rollback_of)
                if restored != dict(revision.prompts):
                    raise InvalidImport(
                        f"{where}: a rollback to revision {revision.rollback_of} serves what that revision "
                        "serves, and the prompts listed differ"
                    )
            new = NewRevision(number, served, revision.kind, revision.rollback_of, revision.message)
            written.append(new)
        return written


async def _plan_revisions(
    session: AsyncSession, known: _Known, data: ImportCreate, work: Work, target: Target
) -> None:
    revisions = _Revisions(session, target, work)
    await revisions.load(known, data)
    for env in data.environments:
        work.revisions[(env.project, env.name)] = await revisions.plan(env)


async def validate_import(
    session: AsyncSession, principal: Principal, target: Target, data: ImportCreate, *, max_bytes: int
) -> Work:
    """Check the body against the target and decide what to write (nothing written yet).

    The caller has checked the token's limits (:func:`check_tenancy`) and the plan's
    expectations first: a target that moved is a 409 before any 422 about the body.
    """
    _check_shape(data, target)
    work = Work(contents=_normalize(data, max_bytes))
    _plan_versions(data, target, work)
    known = _Known(session, target)
    await _check_references(known, principal, data, work)
    await _check_sets(known, data, work)
    await _plan_revisions(session, known, data, work, target)
    return work
