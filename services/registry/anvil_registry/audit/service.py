"""Audit log: who published, promoted, rolled back, imported, issued or revoked a token."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.observability import request_id_var

from ..auth import Principal
from ..models import AuditEntry

__all__ = ["record"]


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
