"""The outbox and the ordered feed that reads it.

Ids are gap-free and in commit order: the next id is read and bumped while holding a lock that
is only released at commit (``BEGIN IMMEDIATE`` on SQLite; a transaction-scoped advisory lock
on Postgres), so no transaction can commit id N+1 before id N is committed or rolled back.
Call :func:`append_event` as the last write of a transaction to keep the lock short.

Readers therefore never see id N+1 without N, and ``after=<id>`` can never skip a late commit.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.db import after_commit

from ..auth import Principal
from ..models import Environment, Event, EventSequence, Organisation, Project
from ..state import RegistryState
from .errors import CursorAhead, EventsExpired
from .hub import CHANNEL

__all__ = ["append_event", "head", "list_events", "FeedPage", "EVENT_LOCK_KEY", "SEQUENCE_NAME"]

SEQUENCE_NAME = "events"
EVENT_LOCK_KEY = 0x616E76696C  # "anvil"


async def append_event(
    session: AsyncSession,
    *,
    kind: str,
    payload: dict[str, Any],
    organisation_id: uuid.UUID | None = None,
    project_id: uuid.UUID | None = None,
    environment_id: uuid.UUID | None = None,
) -> Event:
    """Append one event to the feed inside the caller's transaction.

    In-process long-polls are woken after commit through ``session.info["state"]`` (set by the
    request session dependency; set it yourself on a session opened with ``state.db.session()``).
    """
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": EVENT_LOCK_KEY})
    sequence = await session.get(EventSequence, SEQUENCE_NAME, populate_existing=True)
    if sequence is None:
        sequence = EventSequence(name=SEQUENCE_NAME, last_id=0, pruned_through=0)
        session.add(sequence)
    sequence.last_id += 1
    event = Event(
        id=sequence.last_id,
        kind=kind,
        organisation_id=organisation_id,
        project_id=project_id,
        environment_id=environment_id,
        payload=payload,
    )
    session.add(event)
    await session.flush()
    if bind.dialect.name == "postgresql":
        # Delivered by Postgres only when (and if) this transaction commits. The channel is
        # database-wide: the schema in the payload lets other registries' listeners ignore it.
        await session.execute(
            text("SELECT pg_notify(:channel, current_schema() || ':' || :id)"),
            {"channel": CHANNEL, "id": str(event.id)},
        )
    state = session.info.get("state")
    if state is not None:
        after_commit(session, state.hub.notify)
    return event


async def head(session: AsyncSession) -> tuple[int, int]:
    """(last id handed out, highest id removed by retention)."""
    # A query, not session.get(): the identity map would hand back a stale row on a re-read.
    row = (
        await session.execute(
            select(EventSequence.last_id, EventSequence.pruned_through).where(
                EventSequence.name == SEQUENCE_NAME
            )
        )
    ).one_or_none()
    return (row.last_id, row.pruned_through) if row is not None else (0, 0)


@dataclass(frozen=True)
class FeedPage:
    events: list[Event]
    next_after: int  # highest id scanned, visible or not: a filtered consumer still advances
    head: int


def _visible_to(principal: Principal) -> list[ColumnElement[bool]]:
    """Tenancy as SQL: an organisation's token sees its own events only (project/env limits too)."""
    claims = principal.claims
    if claims.org is None:
        return []  # instance-wide tokens (admin, the push gateway) see everything
    org_id = select(Organisation.id).where(Organisation.slug == claims.org).scalar_subquery()
    clauses = [Event.organisation_id == org_id]
    projects = select(Project.id).where(Project.organisation_id == org_id)
    if claims.project is not None:
        projects = projects.where(Project.slug == claims.project)
        clauses.append(Event.project_id.in_(projects))
    if claims.environment is not None:
        environments = select(Environment.id).where(
            Environment.project_id.in_(projects), Environment.name == claims.environment
        )
        clauses.append(Event.environment_id.in_(environments))
    return clauses


def _check_cursor(after: int, last_id: int, pruned_through: int) -> None:
    if after < pruned_through:
        raise EventsExpired(
            f"events up to {pruned_through} were removed by retention; load the current state, "
            f"then follow from head {last_id}",
            head=last_id,
            oldest_available=pruned_through + 1,
        )
    if after > last_id:
        raise CursorAhead(
            f"cursor {after} is past this registry's newest event {last_id}; was it taken from "
            "another or a restored instance? Resync, then follow from head",
            head=last_id,
        )


async def _read_page(
    state: RegistryState, visible: list[ColumnElement[bool]], *, after: int, limit: int
) -> FeedPage:
    # A short read transaction of its own: nothing stays open while a long-poll waits.
    async with state.db.session(write=False) as session:
        # Head first: every id <= last_id has committed, so the events query below sees them all.
        last_id, pruned_through = await head(session)
        _check_cursor(after, last_id, pruned_through)
        stmt = select(Event).where(Event.id > after, *visible).order_by(Event.id).limit(limit)
        events = list(await session.scalars(stmt))
        if len(events) == limit:
            scanned = events[-1].id
        else:
            scanned = max(last_id, events[-1].id) if events else last_id
        # On Postgres each statement reads a new snapshot: a prune that committed after the head
        # read may have removed events this page skipped over, and that must not pass silently.
        last_now, pruned_now = await head(session)
        _check_cursor(after, last_now, pruned_now)
    return FeedPage(events=events, next_after=scanned, head=last_now)


async def list_events(
    state: RegistryState, principal: Principal, *, after: int, limit: int, wait: float
) -> FeedPage:
    """Events after a cursor in id order, as this token may see them; long-polls up to ``wait`` s."""
    visible = _visible_to(principal)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    cursor = after
    while True:
        # Read before querying: a commit between the query and the wait then ends the wait at once.
        generation = state.hub.generation
        page = await _read_page(state, visible, after=cursor, limit=limit)
        remaining = deadline - loop.time()
        if page.events or remaining <= 0:
            return page
        # Nothing visible yet. Events of other tenants were scanned: do not scan them again.
        cursor = page.next_after
        # Woken by the after-commit hook or LISTEN/NOTIFY; the database is not touched meanwhile.
        await state.hub.wait(remaining, since=generation)
