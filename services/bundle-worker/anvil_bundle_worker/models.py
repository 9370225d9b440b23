"""Bundle-worker tables: the job queue, stored bundle files, import plans and peers.

Organisations and projects are referred to by slug: they live in the registry, which the
worker only reaches over HTTP, so there is nothing to hold a foreign key to.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from anvil_common.db import UTCDateTime, make_metadata, utcnow

__all__ = [
    "metadata",
    "Base",
    "Job",
    "StoredBundle",
    "Plan",
    "Peer",
    "JOB_KINDS",
    "JOB_STATUSES",
    "PLAN_STATUSES",
    "OPEN_PLAN_STATUSES",
    "BUNDLE_KINDS",
]

metadata = make_metadata()

JOB_KINDS = ("export", "import", "push", "pull")
JOB_STATUSES = ("queued", "running", "succeeded", "failed")
PLAN_STATUSES = ("planned", "applied", "rejected", "expired", "stale", "failed")
# Plans that may still be applied or rejected (the others are final).
OPEN_PLAN_STATUSES = ("planned",)
BUNDLE_KINDS = ("export", "import")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = metadata
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


def _uuid() -> uuid.UUID:
    return uuid.uuid4()


class Job(Base):
    """One unit of background work, claimed under a lease (queue.py)."""

    __tablename__ = "jobs"
    __table_args__ = (
        # docs/api.md 4.3: a key belongs to the caller (sub) and the operation (the job kind).
        UniqueConstraint("organisation", "kind", "created_by", "idempotency_key"),
        CheckConstraint(_in("status", JOB_STATUSES), name="status"),
        # The claim query: queued (or lease-expired running) jobs in run_after order.
        Index(None, "status", "run_after"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    kind: Mapped[str] = mapped_column(String(20))
    organisation: Mapped[str] = mapped_column(String(63))
    # The creator's project limit: a project-limited token sees only its own project's jobs.
    project: Mapped[str | None] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(20), default="queued")
    payload: Mapped[dict[str, Any]]
    result: Mapped[dict[str, Any] | None]
    error: Mapped[dict[str, Any] | None]  # a problem+json document
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int]
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(71))
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_token: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    lease_expires_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    run_after: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(index=True)
    created_by: Mapped[str] = mapped_column(String(200))


class StoredBundle(Base):
    """A bundle file in the database store (storage.py): exports by bundle digest, uploads for
    import (not yet verified) by ``upload:<job id hex>``, their own row per upload."""

    __tablename__ = "bundles"
    __table_args__ = (CheckConstraint(_in("kind", BUNDLE_KINDS), name="kind"),)

    digest: Mapped[str] = mapped_column(String(71), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    organisation: Mapped[str] = mapped_column(String(63))
    project: Mapped[str | None] = mapped_column(String(63))
    size: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    manifest: Mapped[dict[str, Any] | None]  # a summary: selection, options, counts
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Plan(Base):
    """An import plan: what applying a bundle would do, against the target state it saw."""

    __tablename__ = "plans"
    __table_args__ = (CheckConstraint(_in("status", PLAN_STATUSES), name="status"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    organisation: Mapped[str] = mapped_column(String(63))
    project: Mapped[str | None] = mapped_column(String(63))
    bundle_digest: Mapped[str] = mapped_column(String(71))
    upload: Mapped[str] = mapped_column(String(71))  # the stored file's key
    origin: Mapped[str] = mapped_column(String(500))  # the exporter instance
    strategy: Mapped[str] = mapped_column(String(20))
    overrides: Mapped[dict[str, Any]]
    plan: Mapped[dict[str, Any]]
    # The registry's import state the plan was made against (B2): re-planning with another
    # strategy uses it, so the heads the apply expects stay the ones the user reviewed.
    target_state: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(20), default="planned")
    result: Mapped[dict[str, Any] | None]  # the registry's answer to the apply (ImportPublic)
    error: Mapped[dict[str, Any] | None]  # why the plan went stale or failed (a problem document)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    applied_at: Mapped[datetime | None]
    applied_by: Mapped[str | None] = mapped_column(String(200))


class Peer(Base):
    """Another Anvil instance an organisation trusts (its keys) and transfers bundles with.

    ``token`` is the bearer token the peer's registry issued to us: write-only (the API shows
    only whether one is set) and sent only to ``url``.
    """

    __tablename__ = "peers"
    __table_args__ = (
        UniqueConstraint("organisation", "name"),
        # Trust is looked up by the bundle's issuer: one peer per issuer in an organisation.
        UniqueConstraint("organisation", "issuer"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    organisation: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(63))
    issuer: Mapped[str] = mapped_column(String(500))  # the peer registry's public URL
    url: Mapped[str | None] = mapped_column(String(500))  # the peer's bundle worker
    remote_organisation: Mapped[str] = mapped_column(String(63))
    jwks: Mapped[dict[str, Any]]  # the peer's public keys (EC P-256, ES256 only)
    keys_fetched_at: Mapped[datetime | None]  # None: the keys were given, not fetched
    token: Mapped[str | None] = mapped_column(Text)
    auto_apply: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
