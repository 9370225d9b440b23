"""Config revisions: publish, promote, roll back. Each creates a new, higher-numbered, signed
revision in one transaction together with its outbox event."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.db import utcnow
from anvil_wire import (
    ManifestEntry,
    RevisionManifest,
    canonical_json,
    digest_of,
    sha256_digest,
    sign_revision,
)
from anvil_wire.b64 import b64url_decode

from ..audit.service import project_target, record
from ..auth import Principal
from ..events.service import append_event
from ..lookup import ensure_active
from ..models import ConfigRevision, Environment, Project, Prompt, PromptVersion, RevisionEntry
from ..state import RegistryState
from .errors import (
    ArchivedPrompt,
    CrossProjectPromotion,
    InvalidRollbackTarget,
    RevisionNotFound,
    UnknownPrompt,
)
from .resolve import resolve_closure, served_versions
from .schemas import EntryPublic, PromotionCreate, RevisionCreate, RevisionPublic

__all__ = [
    "Created",
    "publish_revision",
    "promote_revision",
    "roll_back",
    "get_revision",
    "revision_manifest",
    "to_public",
]

Kind = Literal["publish", "promote", "rollback"]


@dataclass(frozen=True)
class Created:
    revision: ConfigRevision
    created: bool  # False: the content equals the current revision, nothing was written
    manifest: RevisionManifest | None = None  # when just built: spares re-reading the document


def revision_manifest(revision: ConfigRevision) -> RevisionManifest:
    """The manifest inside a stored (and therefore already verified) revision document."""
    document = json.loads(revision.document)
    payload = document["manifest"].split(".")[1]
    return RevisionManifest.from_json(json.loads(b64url_decode(payload)))


def _entry_public(entry: ManifestEntry) -> EntryPublic:
    return EntryPublic(**entry.to_json())


def to_public(
    revision: ConfigRevision, environment: Environment, manifest: RevisionManifest | None = None
) -> RevisionPublic:
    manifest = manifest or revision_manifest(revision)
    return RevisionPublic(
        environment_id=str(environment.id),
        environment=environment.name,
        number=revision.number,
        kind=revision.kind,
        rollback_of=revision.rollback_of,
        promoted_from=revision.promoted_from,
        message=revision.message,
        manifest_digest=revision.manifest_digest,
        created_at=revision.created_at,
        created_by=revision.created_by,
        prompts={k: _entry_public(v) for k, v in manifest.prompts.items()},
        dependencies={k: _entry_public(v) for k, v in manifest.dependencies.items()},
    )


async def get_revision(session: AsyncSession, environment: Environment, number: int) -> ConfigRevision:
    revision = await session.scalar(
        select(ConfigRevision).where(
            ConfigRevision.environment_id == environment.id, ConfigRevision.number == number
        )
    )
    if revision is None:
        raise RevisionNotFound(f"environment {environment.name!r} has no revision {number}")
    return revision


def _content_key(prompts: dict[str, ManifestEntry], dependencies: dict[str, ManifestEntry]) -> str:
    return digest_of(
        {
            "prompts": {k: v.to_json() for k, v in prompts.items()},
            "dependencies": {k: v.to_json() for k, v in dependencies.items()},
        }
    )


async def _create(
    session: AsyncSession,
    state: RegistryState,
    principal: Principal,
    *,
    project: Project,
    environment: Environment,
    kind: Kind,
    prompts: dict[str, ManifestEntry],
    dependencies: dict[str, ManifestEntry],
    contents: dict[str, dict[str, Any]],
    version_ids: dict[str, uuid.UUID],
    message: str,
    rollback_of: int | None = None,
    promoted_from: dict[str, Any] | None = None,
    always: bool = False,
) -> Created:
    content_key = _content_key(prompts, dependencies)
    if kind != "rollback" and environment.last_revision and not always:
        current = await get_revision(session, environment, environment.last_revision)
        if current.content_key == content_key:
            return Created(current, created=False)
    number = environment.last_revision + 1
    org = project.organisation
    manifest = RevisionManifest(
        issuer=state.settings.issuer,
        organisation={"id": str(org.id), "slug": org.slug},
        project={"id": str(project.id), "slug": project.slug},
        environment={"id": str(environment.id), "name": environment.name},
        revision=number,
        rollback_of=rollback_of,
        created_at=utcnow().isoformat(timespec="seconds").replace("+00:00", "Z"),
        prompts=prompts,
        dependencies=dependencies,
    )
    used = manifest.digests()
    document = sign_revision(manifest, {d: c for d, c in contents.items() if d in used}, state.keyset.active)
    revision = ConfigRevision(
        environment_id=environment.id,
        number=number,
        kind=kind,
        rollback_of=rollback_of,
        promoted_from=promoted_from,
        message=message,
        document=canonical_json(document).decode("utf-8"),
        manifest_digest=sha256_digest(document["manifest"].encode("ascii")),
        content_key=content_key,
        created_by=principal.actor,
    )
    session.add(revision)
    await session.flush()
    for key, entry in (*prompts.items(), *dependencies.items()):
        session.add(
            RevisionEntry(
                revision_id=revision.id,
                key=key,
                served=key in prompts,
                version_id=version_ids[key],
                content_hash=entry.digest,
            )
        )
    environment.last_revision = number
    target = f"{project_target(project, environment.name)}@{number}"
    details = {
        "kind": kind,
        "rollback_of": rollback_of,
        "promoted_from": promoted_from,
        "prompts": len(prompts),
    }
    record(
        session, principal, action=f"revision.{kind}", target=target, organisation_id=org.id, details=details
    )
    await append_event(
        session,
        kind="revision.created",
        payload={
            "organisation": org.slug,
            "project": project.slug,
            "environment": {"id": str(environment.id), "name": environment.name},
            "revision": number,
            "rollback_of": rollback_of,
            "kind": kind,
            "manifest_digest": revision.manifest_digest,
        },
        organisation_id=org.id,
        project_id=project.id,
        environment_id=environment.id,
    )
    return Created(revision, created=True, manifest=manifest)


async def _pick_versions(
    session: AsyncSession, project: Project, wanted: dict[str, int | str]
) -> dict[str, PromptVersion]:
    """The chosen version of each named prompt, in two queries whatever the count."""
    if not wanted:
        return {}
    prompts = {
        p.name: p
        for p in await session.scalars(
            select(Prompt).where(Prompt.project_id == project.id, Prompt.name.in_(sorted(wanted)))
        )
    }
    missing = sorted(set(wanted) - set(prompts))
    if missing:
        raise UnknownPrompt(f"project {project.slug!r} has no prompt(s): {', '.join(missing)}")
    archived = sorted(name for name, p in prompts.items() if p.archived_at is not None)
    if archived:
        raise ArchivedPrompt(f"archived prompts cannot be published: {', '.join(archived)}")
    numbers = {
        name: prompts[name].latest_version if isinstance(spec, str) else spec for name, spec in wanted.items()
    }
    pairs = [(prompts[name].id, number) for name, number in sorted(numbers.items())]
    found: dict[tuple[uuid.UUID, int], PromptVersion] = {}
    for start in range(0, len(pairs), 200):  # bounded OR chains: SQLite caps expression depth
        chunk = pairs[start : start + 200]
        stmt = select(PromptVersion).where(
            or_(*(and_(PromptVersion.prompt_id == pid, PromptVersion.number == n) for pid, n in chunk))
        )
        found.update({(v.prompt_id, v.number): v for v in await session.scalars(stmt)})
    result: dict[str, PromptVersion] = {}
    for name, number in sorted(numbers.items()):
        version = found.get((prompts[name].id, number))
        if version is None:
            raise UnknownPrompt(f"prompt {name!r} has no version {number}")
        result[name] = version
    return result


async def publish_revision(
    session: AsyncSession,
    state: RegistryState,
    principal: Principal,
    *,
    project: Project,
    environment: Environment,
    data: RevisionCreate,
    kind: Literal["publish", "promote"] = "publish",
    always: bool = False,
) -> Created:
    """Publish prompt versions to an environment as its next revision (partials resolved).

    An import replaying a revision history passes the ``kind`` the history recorded and
    ``always``: each replayed revision is written even when it equals the current one, so the
    numbers the import plan announced hold.
    """
    ensure_active(project, f"project {project.slug!r}")
    ensure_active(environment, f"environment {environment.name!r}")
    served = {} if data.replace else await served_versions(session, environment)
    unknown = sorted(set(data.remove) - set(served))
    if unknown:
        raise UnknownPrompt(f"cannot remove what is not served: {', '.join(unknown)}")
    for name in data.remove:
        served.pop(name)
    served.update(await _pick_versions(session, project, dict(data.prompts)))
    archived = await session.scalars(
        select(Prompt.name).where(
            Prompt.id.in_({v.prompt_id for v in served.values()}), Prompt.archived_at.is_not(None)
        )
    )
    archived_names = sorted(archived)
    if archived_names:
        raise ArchivedPrompt(
            f"archived prompts cannot be published; remove them: {', '.join(archived_names)}"
        )
    closure = await resolve_closure(
        session,
        project=project,
        environment_name=environment.name,
        served=served,
        visible_project=principal.claims.project,
    )
    return await _create(
        session,
        state,
        principal,
        project=project,
        environment=environment,
        kind=kind,
        prompts=closure.prompts,
        dependencies=closure.dependencies,
        contents=closure.contents,
        version_ids=closure.version_ids,
        message=data.message,
        always=always,
    )


async def _copy(
    session: AsyncSession, source: ConfigRevision
) -> tuple[RevisionManifest, dict[str, Any], dict[str, uuid.UUID]]:
    manifest = revision_manifest(source)
    contents = json.loads(source.document)["contents"]
    rows = await session.execute(
        select(RevisionEntry.key, RevisionEntry.version_id).where(RevisionEntry.revision_id == source.id)
    )
    return manifest, contents, {key: version_id for key, version_id in rows.all()}


async def promote_revision(
    session: AsyncSession,
    state: RegistryState,
    principal: Principal,
    *,
    project: Project,
    source: Environment,
    target: Environment,
    data: PromotionCreate,
) -> Created:
    """Copy a revision's exact content (partials included) from one environment to another."""
    ensure_active(project, f"project {project.slug!r}")
    ensure_active(target, f"environment {target.name!r}")
    if source.project_id != target.project_id:
        raise CrossProjectPromotion("promotion copies between environments of one project")
    number = data.revision or source.last_revision
    if number == 0:
        raise RevisionNotFound(f"environment {source.name!r} has no revision to promote")
    revision = await get_revision(session, source, number)
    manifest, contents, version_ids = await _copy(session, revision)
    # Promotion is a new publication: like publish (and unlike rollback) it may not serve
    # an archived prompt, directly or through a partial.
    archived = sorted(
        await session.scalars(
            select(Prompt.name)
            .join(PromptVersion, PromptVersion.prompt_id == Prompt.id)
            .where(PromptVersion.id.in_(set(version_ids.values())), Prompt.archived_at.is_not(None))
        )
    )
    if archived:
        raise ArchivedPrompt(f"revision {number} serves archived prompts: {', '.join(archived)}")
    return await _create(
        session,
        state,
        principal,
        project=project,
        environment=target,
        kind="promote",
        prompts=dict(manifest.prompts),
        dependencies=dict(manifest.dependencies),
        contents=contents,
        version_ids=version_ids,
        message=data.message,
        promoted_from={"environment": source.name, "environment_id": str(source.id), "revision": number},
    )


async def roll_back(
    session: AsyncSession,
    state: RegistryState,
    principal: Principal,
    *,
    project: Project,
    environment: Environment,
    to_revision: int,
    message: str,
) -> Created:
    """Serve revision K's content again as a new revision N+1 that records ``rollback_of=K``."""
    ensure_active(project, f"project {project.slug!r}")
    ensure_active(environment, f"environment {environment.name!r}")
    if to_revision >= environment.last_revision:
        raise InvalidRollbackTarget(
            f"roll back to a revision before the current {environment.last_revision}, not {to_revision}"
        )
    revision = await get_revision(session, environment, to_revision)
    manifest, contents, version_ids = await _copy(session, revision)
    return await _create(
        session,
        state,
        principal,
        project=project,
        environment=environment,
        kind="rollback",
        prompts=dict(manifest.prompts),
        dependencies=dict(manifest.dependencies),
        contents=contents,
        version_ids=version_ids,
        message=message,
        rollback_of=to_revision,
    )
