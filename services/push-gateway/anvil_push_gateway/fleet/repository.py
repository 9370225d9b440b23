"""SQL of the fleet view: the writer's batched upserts and guarded updates, the list, the
summary and the rollout counts. Upserts are ``INSERT .. ON CONFLICT DO UPDATE`` on both dialects.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Insert,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    not_,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.db import UTCDateTime

from ..models import LIST_ORDER, FleetClient

__all__ = [
    "STATUSES",
    "Changes",
    "FleetFilter",
    "Cursor",
    "RevisionTally",
    "EnvironmentTally",
    "write_changes",
    "delete_unseen_since",
    "disconnect_replica",
    "status_of",
    "status_condition",
    "list_clients",
    "summarize",
    "revision_counts",
]

TABLE = cast(Table, FleetClient.__table__)
STATUSES = ("connected", "stale", "disconnected")
_IDENTITY = (
    "organisation",
    "project",
    "environment",
    "prompt_set",
    "sdk_name",
    "sdk_version",
    "labels",
    "replica",
    "session_id",
    "transport",
)
# (organisation, project, environment, environment id, client id): the list's keyset position.
Cursor = tuple[str, str, str, uuid.UUID, uuid.UUID]


@dataclass
class Changes:
    """One flush: rows by how they are written (recorder.py builds them)."""

    live: list[dict[str, Any]] = field(default_factory=list)  # sessions of this replica: connected
    http: list[dict[str, Any]] = field(default_factory=list)  # HTTP clients' reports
    reports: list[dict[str, Any]] = field(default_factory=list)  # acks and nacks alone
    gone: list[dict[str, Any]] = field(default_factory=list)  # ended sessions (guarded update)


def _insert(session: AsyncSession) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(TABLE)


def _if_newer(stamp: str, columns: tuple[str, ...], excluded: Any) -> dict[str, ColumnElement[Any]]:
    """Take ``columns`` from the new row when its ``stamp`` is set and not older than the stored one."""
    stored = TABLE.c[stamp]
    newer = and_(excluded[stamp].is_not(None), or_(stored.is_(None), excluded[stamp] >= stored))
    return {name: case((newer, excluded[name]), else_=TABLE.c[name]) for name in (stamp, *columns)}


def _upsert(session: AsyncSession, overwrite: tuple[str, ...]) -> Insert:
    stmt = _insert(session)
    excluded = stmt.excluded
    values: dict[str, Any] = {name: excluded[name] for name in overwrite}
    values |= _if_newer("acked_at", ("revision", "manifest_digest"), excluded)
    values |= _if_newer("nacked_at", ("nack_revision", "nack_code", "nack_detail"), excluded)
    seen = TABLE.c.last_seen_at
    values["last_seen_at"] = case((excluded.last_seen_at > seen, excluded.last_seen_at), else_=seen)
    upsert: Insert = stmt.on_conflict_do_update(
        index_elements=[TABLE.c.client_id, TABLE.c.environment_id], set_=values
    )
    return upsert


async def write_changes(session: AsyncSession, changes: Changes) -> None:
    """Write one flush: connected sessions, HTTP reports, lone acks and nacks, then disconnects."""
    connection = (*_IDENTITY, "connected", "connected_at")
    for rows, overwrite in ((changes.live, connection), (changes.http, connection), (changes.reports, ())):
        if rows:
            await session.execute(_upsert(session, overwrite), rows)
    if changes.gone:
        seen = bindparam("k_seen", type_=UTCDateTime())
        stmt = (
            update(TABLE)
            .where(
                TABLE.c.client_id == bindparam("k_client"),
                TABLE.c.environment_id == bindparam("k_environment"),
                # Only while the session that ended still owns the row: a newer one keeps it.
                TABLE.c.session_id == bindparam("k_session"),
            )
            .values(
                connected=False,
                last_seen_at=case((seen > TABLE.c.last_seen_at, seen), else_=TABLE.c.last_seen_at),
            )
        )
        await session.execute(stmt, changes.gone)


async def delete_unseen_since(session: AsyncSession, cutoff: datetime) -> int:
    """Delete the rows last seen before ``cutoff``; how many."""
    result = await session.execute(delete(TABLE).where(TABLE.c.last_seen_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)


async def disconnect_replica(session: AsyncSession, replica: str) -> None:
    """Mark every row ``replica`` holds connected as disconnected (an earlier run's leftovers)."""
    await session.execute(
        update(TABLE).where(TABLE.c.replica == replica, TABLE.c.connected.is_(True)).values(connected=False)
    )


# -- reading ---------------------------------------------------------------------------------


def status_of(row: FleetClient, cutoff: datetime) -> str:
    """A row's status: a WebSocket row connected and refreshed since ``cutoff`` (an HTTP row heard
    from since then) is connected; one that stopped being refreshed is stale (its replica died);
    a WebSocket row whose session ended is disconnected."""
    if not row.connected and row.transport != "http":
        return "disconnected"
    return "connected" if row.last_seen_at >= cutoff else "stale"


def status_condition(status: str, cutoff: datetime) -> ColumnElement[bool]:
    """The SQL twin of :func:`status_of`."""
    tracked = or_(FleetClient.connected.is_(True), FleetClient.transport == "http")
    if status == "disconnected":
        return not_(tracked)
    fresh = FleetClient.last_seen_at >= cutoff
    return and_(tracked, fresh if status == "connected" else not_(fresh))


@dataclass(frozen=True)
class FleetFilter:
    """What a list or summary is limited to (None: any)."""

    organisation: str | None = None
    project: str | None = None
    environment: str | None = None
    revision: int | None = None
    status: str | None = None


def _where(f: FleetFilter, cutoff: datetime) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    for column, value in (
        (FleetClient.organisation, f.organisation),
        (FleetClient.project, f.project),
        (FleetClient.environment, f.environment),
    ):
        if value is not None:
            where.append(column == value)
    if f.revision is not None:
        where.append(FleetClient.revision == f.revision)
    if f.status is not None:
        where.append(status_condition(f.status, cutoff))
    return where


async def list_clients(
    session: AsyncSession, f: FleetFilter, *, cutoff: datetime, after: Cursor | None, limit: int
) -> Sequence[FleetClient]:
    """Up to ``limit`` rows matching ``f`` in list order, after the ``after`` position."""
    stmt = select(FleetClient).where(*_where(f, cutoff))
    if after is not None:
        position = [literal(value, column.type) for value, column in zip(after, LIST_ORDER, strict=True)]
        stmt = stmt.where(tuple_(*LIST_ORDER) > tuple_(*position))
    return (await session.scalars(stmt.order_by(*LIST_ORDER).limit(limit))).all()


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _nack_stands(revision: Any) -> ColumnElement[bool]:
    """A nack of ``revision`` counts unless the client acked that same revision after it."""
    return or_(
        FleetClient.revision.is_(None),
        FleetClient.revision != revision,
        FleetClient.acked_at < FleetClient.nacked_at,
    )


@dataclass
class RevisionTally:
    clients: int = 0  # clients whose last ack is this revision
    connected: int = 0  # of those, connected now
    nacks: int = 0  # clients whose standing nack is this revision


@dataclass
class EnvironmentTally:
    organisation: str
    project: str
    environment: str
    environment_id: uuid.UUID
    clients: int = 0
    connected: int = 0
    stale: int = 0
    disconnected: int = 0
    without_revision: int = 0  # clients that acked nothing yet
    revisions: dict[int, RevisionTally] = field(default_factory=dict)


async def summarize(session: AsyncSession, f: FleetFilter, *, cutoff: datetime) -> list[EnvironmentTally]:
    """Per environment matching ``f``: clients by status, and per revision who holds or nacked it."""
    where = _where(FleetFilter(f.organisation, f.project, f.environment), cutoff)
    environment = (FleetClient.organisation, FleetClient.project, FleetClient.environment)
    held = (
        select(
            *environment,
            FleetClient.environment_id,
            FleetClient.revision,
            func.count(),
            *(_count(status_condition(s, cutoff)) for s in STATUSES),
        )
        .where(*where)
        .group_by(*environment, FleetClient.environment_id, FleetClient.revision)
    )
    tallies: dict[uuid.UUID, EnvironmentTally] = {}
    rows: list[Any] = list(await session.execute(held))
    for org, project, name, env_id, revision, clients, connected, stale, gone in rows:
        tally = tallies.setdefault(env_id, EnvironmentTally(org, project, name, env_id))
        tally.clients += clients
        tally.connected, tally.stale, tally.disconnected = (
            tally.connected + connected,
            tally.stale + stale,
            tally.disconnected + gone,
        )
        if revision is None:
            tally.without_revision += clients
        else:
            tally.revisions[revision] = RevisionTally(clients=clients, connected=connected)
    nacked = (
        select(FleetClient.environment_id, FleetClient.nack_revision, func.count())
        .where(*where, FleetClient.nack_revision.is_not(None), _nack_stands(FleetClient.nack_revision))
        .group_by(FleetClient.environment_id, FleetClient.nack_revision)
    )
    nacks: list[Any] = list(await session.execute(nacked))
    for env_id, revision, count in nacks:
        tallies[env_id].revisions.setdefault(revision, RevisionTally()).nacks = count
    return sorted(
        tallies.values(), key=lambda t: (t.organisation, t.project, t.environment, t.environment_id)
    )


async def revision_counts(
    session: AsyncSession, environment_id: str | uuid.UUID, revision: int
) -> tuple[int, int]:
    """Fleet-wide, for revision ``revision`` of an environment: (clients whose last ack is it,
    clients whose last nack is it and who did not ack it since). A ``rollback`` nack (the client
    holds a higher revision already) says nothing about the content and is not counted."""
    acked = _count(FleetClient.revision == revision)
    nacked = _count(
        and_(
            FleetClient.nack_revision == revision,
            FleetClient.nack_code != "rollback",
            _nack_stands(revision),
        )
    )
    stmt = select(acked, nacked).where(
        FleetClient.environment_id == uuid.UUID(str(environment_id)),
        or_(FleetClient.revision == revision, FleetClient.nack_revision == revision),
    )
    row = (await session.execute(stmt)).one()
    return int(row[0]), int(row[1])
