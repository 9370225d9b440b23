"""Registry tables. Rows are never updated in place where history matters: prompt versions and
config revisions are immutable; environments and prompts carry counters used as ETags."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from anvil_common.db import UTCDateTime, make_metadata, utcnow
from anvil_wire import canonical_json

metadata = make_metadata()
# BIGINT on Postgres, INTEGER (the rowid alias) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class CanonicalJSON(TypeDecorator[dict[str, Any]]):
    """A JSON column whose stored text is the canonical JSON (RFC 8785) of its value.

    A prompt version's stored text is then exactly the bytes its content hash was taken of, so
    an export can splice it into a bundle without decoding and encoding it again (the bundle
    worker checks each against its digest). The column stays JSON (``json`` on Postgres keeps
    the text as written), so rows written before this type read back unchanged.
    """

    impl = JSON
    cache_ok = True

    @staticmethod
    def serialize(value: Any) -> str:
        return canonical_json(value).decode()

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], str | None]:
        def process(value: Any) -> str | None:
            return None if value is None else self.serialize(value)

        return process


class Base(DeclarativeBase):
    metadata = metadata
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


def _uuid() -> uuid.UUID:
    return uuid.uuid4()


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    archived_at: Mapped[datetime | None]
    row_version: Mapped[int] = mapped_column(default=1)


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("organisation_id", "slug"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id"))
    slug: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    archived_at: Mapped[datetime | None]
    row_version: Mapped[int] = mapped_column(default=1)

    organisation: Mapped[Organisation] = relationship(lazy="joined")


class Prompt(Base):
    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    latest_version: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    archived_at: Mapped[datetime | None]


class PromptVersion(Base):
    __tablename__ = "prompt_versions"
    __table_args__ = (
        UniqueConstraint("prompt_id", "number"),
        Index(None, "prompt_id", "content_hash"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    prompt_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prompts.id"))
    number: Mapped[int]
    content_hash: Mapped[str] = mapped_column(String(71))
    content: Mapped[dict[str, Any]] = mapped_column(CanonicalJSON)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("prompt_versions.id"))
    origin_instance: Mapped[str | None] = mapped_column(String(500))
    origin_digest: Mapped[str | None] = mapped_column(String(71))
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))


class PromptSet(Base):
    __tablename__ = "prompt_sets"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    prompts: Mapped[list[Any]] = mapped_column(default=list)  # sorted prompt names
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    archived_at: Mapped[datetime | None]
    row_version: Mapped[int] = mapped_column(default=1)


class Environment(Base):
    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    # Made by this instance, never imported: a restored instance cannot collide with what
    # clients hold (their anti-rollback floor is kept per environment id).
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(63))
    description: Mapped[str] = mapped_column(Text, default="")
    last_revision: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    archived_at: Mapped[datetime | None]


class ConfigRevision(Base):
    __tablename__ = "config_revisions"
    __table_args__ = (UniqueConstraint("environment_id", "number"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    environment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("environments.id"))
    number: Mapped[int]
    kind: Mapped[str] = mapped_column(String(20))  # publish | promote | rollback
    rollback_of: Mapped[int | None]
    promoted_from: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    message: Mapped[str] = mapped_column(Text, default="")
    document: Mapped[str] = mapped_column(Text)  # canonical JSON of the signed revision document
    manifest_digest: Mapped[str] = mapped_column(String(71))
    content_key: Mapped[str] = mapped_column(String(71))  # digest of (prompts, dependencies) only
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))


class RevisionEntry(Base):
    """One served prompt or dependency of a revision (for diff and "who uses this version")."""

    __tablename__ = "revision_entries"

    revision_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("config_revisions.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    served: Mapped[bool]
    version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prompt_versions.id"), index=True)
    content_hash: Mapped[str] = mapped_column(String(71))


class EventSequence(Base):
    """The last event id handed out; read and bumped under a lock inside each publishing
    transaction, so ids are gap-free and in commit order."""

    __tablename__ = "event_sequence"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigId)
    pruned_through: Mapped[int] = mapped_column(BigId, default=0)


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(60))
    organisation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    project_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    environment_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Token(Base):
    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the jti
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200), default="")
    subject: Mapped[str] = mapped_column(String(200))
    organisation_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    project: Mapped[str | None] = mapped_column(String(63))
    environment: Mapped[str | None] = mapped_column(String(63))
    scopes: Mapped[list[Any]]
    audience: Mapped[list[Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(index=True)
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(200))


class AuditEntry(Base):
    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    actor_token: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(60))
    organisation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    target: Mapped[str] = mapped_column(String(500))
    details: Mapped[dict[str, Any]]
    request_id: Mapped[str | None] = mapped_column(String(128))


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("actor", "scope", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    actor: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(500))  # method + path
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(71))
    status_code: Mapped[int]
    response: Mapped[dict[str, Any]]
    headers: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Import(Base):
    """An applied bundle import, by the plan's id: applying it again replays ``result``."""

    __tablename__ = "imports"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)  # the import_id (plan id)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id"), index=True)
    origin_instance: Mapped[str] = mapped_column(String(500))
    origin_bundle: Mapped[str] = mapped_column(String(71))
    request_hash: Mapped[str] = mapped_column(String(71))
    result: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
