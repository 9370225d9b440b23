"""Audit log: who published, promoted, rolled back, imported, issued or revoked a token."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Select, false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.db import utcnow
from anvil_common.observability import request_id_var

from ..auth import Principal
from ..bulk import insert_rows
from ..models import AuditEntry, Organisation, Project

__all__ = ["record", "record_many", "audit_entries", "org_slugs"]


def project_target(project: Project, *names: str) -> str:
    """How audit entries name a project or something in it: ``org/project[/name...]``
    (project-limited tokens read entries by this prefix)."""
    return "/".join((project.organisation.slug, project.slug, *names))


def record(
    session: AsyncSession,
    principal: Principal | None,
    *,
    action: str,
    target: str,
    organisation_id: uuid.UUID | None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add an audit entry to the current transaction (it commits or rolls back with it)."""
    session.add(
        AuditEntry(
            actor=principal.actor if principal else "system",
            actor_token=principal.token_id if principal else None,
            action=action,
            organisation_id=organisation_id,
            target=target,
            details=details or {},
            request_id=request_id_var.get(),
        )
    )


async def record_many(
    session: AsyncSession,
    principal: Principal,
    entries: Iterable[tuple[str, str, dict[str, Any]]],
    *,
    organisation_id: uuid.UUID,
) -> None:
    """Insert many (action, target, details) entries in one statement (an import writes thousands)."""
    at = utcnow()
    rows = [
        {
            "at": at,
            "actor": principal.actor,
            "actor_token": principal.token_id,
            "action": action,
            "organisation_id": organisation_id,
            "target": target,
            "details": details,
            "request_id": request_id_var.get(),
        }
        for action, target, details in entries
    ]
    await insert_rows(session, AuditEntry, rows)


async def audit_entries(
    session: AsyncSession,
    principal: Principal,
    *,
    action: str | None = None,
    target: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
) -> Select[AuditEntry]:
    """The statement selecting the entries this caller may read (its organisation's only)."""
    stmt = select(AuditEntry)
    if not principal.is_instance_admin:
        org_id = None
        if principal.claims.org is not None:
            org_id = await session.scalar(
                select(Organisation.id).where(Organisation.slug == principal.claims.org)
            )
        stmt = stmt.where(AuditEntry.organisation_id == org_id) if org_id else stmt.where(false())
    if principal.claims.project is not None:
        # A project-limited token reads only entries about its project (slugs hold no LIKE wildcards).
        base = f"{principal.claims.org}/{principal.claims.project}"
        stmt = stmt.where(or_(AuditEntry.target == base, AuditEntry.target.like(base + "/%")))
    if action is not None:
        stmt = stmt.where(AuditEntry.action == action)
    if target is not None:
        stmt = stmt.where(AuditEntry.target == target)
    if actor is not None:
        stmt = stmt.where(AuditEntry.actor == actor)
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    return stmt


async def org_slugs(session: AsyncSession, ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    """Organisation id -> slug, in one query, for rows that only carry the id."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = await session.execute(
        select(Organisation.id, Organisation.slug).where(Organisation.id.in_(wanted))
    )
    return {row.id: row.slug for row in rows}
