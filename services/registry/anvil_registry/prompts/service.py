"""Prompts and their immutable, content-hashed versions.

A prompt's ``latest_version`` is its ETag; new versions are numbered under a row lock on the
prompt so that concurrent writers get consecutive numbers. Archiving keeps every version (config
revisions are immutable and keep serving them); purging deletes them and is refused while
anything still uses one.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.db import utcnow
from anvil_common.problems import NotFound, PreconditionFailed
from anvil_wire import canonical_json, sha256_digest
from anvil_wire.prompts import PromptFormatError, is_prompt_name, normalize_content

from ..audit.service import project_target, record
from ..auth import Principal
from ..conditional import check_if_match
from ..events.service import append_event
from ..lookup import ensure_active, get_prompt
from ..models import Project, Prompt, PromptVersion, RevisionEntry
from .errors import InvalidPrompt, InvalidPromptName, PromptExists, PromptInUse, PromptTooLarge
from .references import check_references, pinned_users
from .schemas import PromptCreate, has_reserved_segment

__all__ = [
    "prompt_etag",
    "create_prompt",
    "create_version",
    "archive_prompt",
    "purge_prompt",
    "parent_numbers",
]


def prompt_etag(prompt: Prompt) -> str:
    return f'"v{prompt.latest_version}"'


async def create_prompt(
    session: AsyncSession, principal: Principal, *, project: Project, data: PromptCreate
) -> Prompt:
    """Create a prompt with no versions yet."""
    ensure_active(project, f"project {project.slug!r}")
    exists = await session.scalar(
        select(Prompt.id).where(Prompt.project_id == project.id, Prompt.name == data.name)
    )
    if exists:
        raise PromptExists(f"prompt {data.name!r} already exists in project {project.slug!r}")
    prompt = Prompt(project_id=project.id, name=data.name, description=data.description)
    session.add(prompt)
    await session.flush()
    record(
        session,
        principal,
        action="prompt.create",
        target=project_target(project, data.name),
        organisation_id=project.organisation_id,
    )
    return prompt


def _normalize(content: Mapping[str, Any], max_bytes: int) -> tuple[dict[str, Any], str]:
    try:
        normal = normalize_content(content)
    except PromptFormatError as exc:
        raise InvalidPrompt(str(exc)) from exc
    encoded = canonical_json(normal)
    if len(encoded) > max_bytes:
        raise PromptTooLarge(
            f"canonical content is {len(encoded)} bytes; the limit is {max_bytes}",
            size=len(encoded),
            limit=max_bytes,
        )
    return normal, sha256_digest(encoded)


async def _lock_or_create(
    session: AsyncSession, principal: Principal, project: Project, name: str, if_match: str | None
) -> Prompt:
    try:
        return await get_prompt(session, project, name, for_update=True)
    except NotFound:
        if if_match is not None:
            raise PreconditionFailed(f"prompt {name!r} does not exist", current_etag=None) from None
    if not is_prompt_name(name) or has_reserved_segment(name):
        raise InvalidPromptName(f"{name!r} is not a valid prompt name (docs/prompt-format.md)")
    try:
        # A concurrent creator of the same name wins the unique constraint; take its row instead.
        async with session.begin_nested():
            prompt = Prompt(project_id=project.id, name=name, description="")
            session.add(prompt)
    except IntegrityError:
        return await get_prompt(session, project, name, for_update=True)
    record(
        session,
        principal,
        action="prompt.create",
        target=project_target(project, name),
        organisation_id=project.organisation_id,
    )
    return prompt


async def create_version(
    session: AsyncSession,
    principal: Principal,
    *,
    project: Project,
    name: str,
    content: Mapping[str, Any],
    message: str = "",
    origin: tuple[str, str] | None = None,
    if_match: str | None = None,
    max_bytes: int,
    locked: tuple[Prompt, PromptVersion | None] | None = None,
) -> tuple[Prompt, PromptVersion, bool]:
    """Add a version (creating the prompt if needed); identical content is a no-op.

    ``locked`` is the prompt, already locked, with its latest version, when the caller read them
    (``lookup.get_prompt_for_update``, one query on the hot path). Returns (prompt, version,
    created): ``created`` is False when the latest version already had this content and nothing
    was written.
    """
    ensure_active(project, f"project {project.slug!r}")
    normal, content_hash = _normalize(content, max_bytes)
    if locked is not None:
        prompt, latest = locked
    else:
        prompt = await _lock_or_create(session, principal, project, name, if_match)
        latest = None
        if prompt.latest_version:
            latest = await session.scalar(
                select(PromptVersion).where(
                    PromptVersion.prompt_id == prompt.id, PromptVersion.number == prompt.latest_version
                )
            )
    check_if_match(if_match, prompt_etag(prompt))
    ensure_active(prompt, f"prompt {name!r}")
    if latest is not None and latest.content_hash == content_hash:
        return prompt, latest, False
    await check_references(
        session, project=project, name=name, content=normal, visible_project=principal.claims.project
    )
    version = PromptVersion(
        id=uuid.uuid4(),
        prompt_id=prompt.id,
        number=prompt.latest_version + 1,
        content_hash=content_hash,
        content=normal,
        parent_id=latest.id if latest is not None else None,
        origin_instance=origin[0] if origin else None,
        origin_digest=origin[1] if origin else None,
        message=message,
        created_at=utcnow(),
        created_by=principal.actor,
    )
    prompt.latest_version = version.number
    # Flushed with the audit entry at commit: one round trip fewer than an explicit flush here.
    session.add(version)
    record(
        session,
        principal,
        action="prompt.version.create",
        target=f"{project_target(project, name)}@{version.number}",
        organisation_id=project.organisation_id,
        details={"number": version.number, "content_hash": content_hash},
    )
    return prompt, version, True


async def archive_prompt(
    session: AsyncSession, principal: Principal, *, project: Project, prompt: Prompt
) -> Prompt:
    """Archive a prompt: no new versions; revisions that use it keep serving it."""
    ensure_active(project, f"project {project.slug!r}")
    if prompt.archived_at is not None:
        return prompt
    prompt.archived_at = utcnow()
    record(
        session,
        principal,
        action="prompt.archive",
        target=project_target(project, prompt.name),
        organisation_id=project.organisation_id,
    )
    await append_event(
        session,
        kind="prompt.archived",
        payload={
            "organisation": project.organisation.slug,
            "project": project.slug,
            "prompt": prompt.name,
        },
        organisation_id=project.organisation_id,
        project_id=project.id,
    )
    return prompt


async def _uses(session: AsyncSession, project: Project, prompt: Prompt) -> list[str]:
    versions = {
        row.id: row.number
        for row in await session.execute(
            select(PromptVersion.id, PromptVersion.number).where(PromptVersion.prompt_id == prompt.id)
        )
    }
    if not versions:
        return []
    uses: list[str] = []
    served = select(RevisionEntry.version_id).where(RevisionEntry.version_id.in_(versions)).limit(1)
    if await session.scalar(served) is not None:
        uses.append("config revisions serve it")
    # Imports may record a parent in another prompt (a renamed copy); its FK would dangle.
    descendant = select(PromptVersion.id).where(
        PromptVersion.parent_id.in_(versions), PromptVersion.prompt_id != prompt.id
    )
    if await session.scalar(descendant.limit(1)) is not None:
        uses.append("versions of other prompts descend from it")
    pins = await pinned_users(session, project=project, prompt=prompt, numbers=set(versions.values()))
    if pins:
        uses.append("pinned by " + ", ".join(pins))
    return uses


async def purge_prompt(
    session: AsyncSession, principal: Principal, *, project: Project, prompt: Prompt
) -> None:
    """Delete a prompt and its versions for good; refused while anything uses a version."""
    ensure_active(project, f"project {project.slug!r}")
    uses = await _uses(session, project, prompt)
    if uses:
        raise PromptInUse(f"prompt {prompt.name!r} is in use: {'; '.join(uses)}", uses=uses)
    await session.execute(delete(PromptVersion).where(PromptVersion.prompt_id == prompt.id))
    await session.delete(prompt)
    await session.flush()
    record(
        session,
        principal,
        action="prompt.purge",
        target=project_target(project, prompt.name),
        organisation_id=project.organisation_id,
    )
    await append_event(
        session,
        kind="prompt.purged",
        payload={"organisation": project.organisation.slug, "project": project.slug, "prompt": prompt.name},
        organisation_id=project.organisation_id,
        project_id=project.id,
    )


async def parent_numbers(session: AsyncSession, versions: Sequence[PromptVersion]) -> dict[uuid.UUID, int]:
    """Version number of each parent id (parents are shown by number, not id)."""
    ids = {v.parent_id for v in versions if v.parent_id is not None}
    if not ids:
        return {}
    rows = await session.execute(
        select(PromptVersion.id, PromptVersion.number).where(PromptVersion.id.in_(ids))
    )
    return {row.id: row.number for row in rows}
