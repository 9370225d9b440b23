"""Push-gateway tables: the fleet view (which client holds which revision of which environment).

Every replica writes the same table (fleet/recorder.py): a row is keyed by the client and the
environment, not by the replica, so when a client moves between replicas the last writer wins.
Organisations, projects and environments live in the registry and are stored by slug and id
(nothing to hold a foreign key to).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, CheckConstraint, Float, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from anvil_common.db import UTCDateTime, make_metadata

__all__ = [
    "metadata",
    "Base",
    "FleetClient",
    "TRANSPORTS",
    "LIST_ORDER",
    "RolloutPolicy",
    "RevisionHealth",
    "VERDICTS",
    "ROLLBACK_OUTCOMES",
]

metadata = make_metadata()

TRANSPORTS = ("websocket", "http")


class Base(DeclarativeBase):
    metadata = metadata
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class FleetClient(Base):
    """One client's state for one environment: its identity, its connection, its last ack and nack."""

    __tablename__ = "fleet_clients"
    __table_args__ = (
        CheckConstraint(f"transport IN ({', '.join(repr(t) for t in TRANSPORTS)})", name="transport"),
        # GET /v1/fleet pages in this order (a unique key: the primary key closes it).
        # (named: the convention's name would pass Postgres's 63 characters)
        Index(
            "ix_fleet_clients_listing",
            "organisation",
            "project",
            "environment",
            "environment_id",
            "client_id",
        ),
        # Rollout counts: who acked (or nacked) revision N of an environment.
        Index(None, "environment_id", "revision"),
        Index(None, "environment_id", "nack_revision"),
        # Expiry of rows nobody refreshed for fleet_ttl_seconds.
        Index(None, "last_seen_at"),
    )

    client_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    environment_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    organisation: Mapped[str] = mapped_column(String(63))
    project: Mapped[str] = mapped_column(String(63))
    environment: Mapped[str] = mapped_column(String(63))
    prompt_set: Mapped[str | None] = mapped_column(String(200))
    sdk_name: Mapped[str] = mapped_column(String(64))
    sdk_version: Mapped[str] = mapped_column(String(64))
    labels: Mapped[dict[str, Any]]
    replica: Mapped[str] = mapped_column(String(200))  # the replica that wrote the row last
    session_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)  # None for HTTP clients
    transport: Mapped[str] = mapped_column(String(10))
    # True while a WebSocket session holds the client (HTTP clients: always False).
    connected: Mapped[bool]
    connected_at: Mapped[datetime | None]
    last_seen_at: Mapped[datetime]
    # The last ack: the revision the client applied.
    revision: Mapped[int | None] = mapped_column(BigInteger)
    manifest_digest: Mapped[str | None] = mapped_column(String(71))
    acked_at: Mapped[datetime | None]
    # The last nack: a revision the client refused, and why.
    nack_revision: Mapped[int | None] = mapped_column(BigInteger)
    nack_code: Mapped[str | None] = mapped_column(String(40))
    nack_detail: Mapped[str | None] = mapped_column(Text)
    nacked_at: Mapped[datetime | None]


LIST_ORDER = (
    FleetClient.organisation,
    FleetClient.project,
    FleetClient.environment,
    FleetClient.environment_id,
    FleetClient.client_id,
)


# -- rollout safety (rollout/) ---------------------------------------------------------------

VERDICTS = ("pending", "healthy", "failing")
# What the registry answered to an automatic rollback: one is recorded per failing revision.
ROLLBACK_OUTCOMES = ("rolled-back", "superseded")


class RolloutPolicy(Base):
    """An environment's rollout policy: when its current revision counts as failing, and whether
    the gateway then rolls the environment back by itself."""

    __tablename__ = "rollout_policies"
    __table_args__ = (
        CheckConstraint("max_nack_ratio > 0 AND max_nack_ratio <= 1", name="max_nack_ratio"),
        CheckConstraint("min_reports >= 1", name="min_reports"),
    )

    environment_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    organisation: Mapped[str] = mapped_column(String(63))
    project: Mapped[str] = mapped_column(String(63))
    environment: Mapped[str] = mapped_column(String(63))
    max_nack_ratio: Mapped[float] = mapped_column(Float)
    min_reports: Mapped[int] = mapped_column(Integer)
    auto_rollback: Mapped[bool]
    row_version: Mapped[int] = mapped_column(Integer)  # the ETag: "r<row_version>"
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(200))  # the token's sub


class RevisionHealth(Base):
    """A revision's acks and standing nacks as last counted while it was current (fleet-wide),
    and the automatic rollback it caused, if any. Written by every replica alike."""

    __tablename__ = "revision_health"
    __table_args__ = (
        CheckConstraint(f"verdict IN ({', '.join(repr(v) for v in VERDICTS)})", name="verdict"),
        CheckConstraint(
            f"rollback_outcome IN ({', '.join(repr(o) for o in ROLLBACK_OUTCOMES)})", name="rollback_outcome"
        ),
    )

    environment_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    rollback_of: Mapped[int | None] = mapped_column(BigInteger)  # from the signed manifest
    acks: Mapped[int] = mapped_column(Integer)
    nacks: Mapped[int] = mapped_column(Integer)
    verdict: Mapped[str] = mapped_column(String(10))  # under the policy when it was counted
    counted_at: Mapped[datetime]
    # The automatic rollback of this revision: to which revision, the revision it made, and
    # what the registry answered (rolled back, or superseded: the environment had moved on).
    rollback_to: Mapped[int | None] = mapped_column(BigInteger)
    rollback_revision: Mapped[int | None] = mapped_column(BigInteger)
    rollback_outcome: Mapped[str | None] = mapped_column(String(20))
    decided_at: Mapped[datetime | None]
