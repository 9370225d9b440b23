"""The fleet writer and its SQL, against a migrated database (SQLite or Postgres): sessions'
reports are kept in memory and written in batches, several replicas share the rows (the last
writer wins, guarded where order matters), rows go stale and expire, and the rollout counts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, text

from anvil_common.db import Database
from anvil_common.testing import TestDatabase, snapshot_database
from anvil_push_gateway.fleet import repository
from anvil_push_gateway.fleet.recorder import FleetWriter
from anvil_push_gateway.fleet.repository import FleetFilter
from anvil_push_gateway.fleet.schemas import NackCode
from anvil_push_gateway.models import FleetClient
from anvil_push_gateway.settings import GatewaySettings
from anvil_wire.push import NACK_CODES, Ack, Hello, Nack, Sdk, Subscription

ENV = "7d3c1c52-63f8-4c1e-9a55-3f1f0b9b3a01"
OTHER_ENV = "0b6a1c2e-2f0a-4c55-8e8e-9c0d7e6a5b02"
DIGEST = "sha256:" + "a" * 64
DIGEST_2 = "sha256:" + "b" * 64
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clock:
    """The writer's clock, moved by the test (never the wall clock)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass(frozen=True)
class Channel:
    environment_id: str = ENV
    key: tuple[str, str, str] = ("acme", "web", "prod")


@dataclass
class FakeSession:
    """What the writer reads of a stream session (sessions.Session): id, hello, channel, prompt set."""

    hello: Hello
    channel: Channel = field(default_factory=Channel)
    prompt_set: str | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


def hello(client_id: str | None = None, *, version: str = "1.2.0", **labels: str) -> Hello:
    return Hello(
        client_id=client_id or str(uuid.uuid4()),
        sdk=Sdk("anvil-python", version),
        subscription=Subscription("acme", "web", "prod"),
        labels=labels,
    )


def session_of(client_id: str | None = None, **kwargs: Any) -> FakeSession:
    return FakeSession(hello(client_id), **kwargs)


def settings(**overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "fleet_flush_seconds": 1.0,
        "fleet_seen_seconds": 60.0,
        "fleet_ttl_seconds": 3600.0,
    }
    return GatewaySettings(**(values | overrides))


@pytest.fixture
async def db(database: TestDatabase) -> AsyncIterator[Database]:
    db = Database(database.url, schema=database.schema)
    yield db
    await db.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def writer(db: Database, clock: Clock) -> FleetWriter:
    return FleetWriter(db, replica="gw-a", settings=settings(), clock=clock)


async def rows(db: Database) -> dict[tuple[str, str], FleetClient]:
    async with db.session(write=False) as session:
        found = (await session.scalars(select(FleetClient))).all()
    return {(str(r.client_id), str(r.environment_id)): r for r in found}


async def row(db: Database, session: FakeSession) -> FleetClient:
    return (await rows(db))[(session.hello.client_id, session.channel.environment_id)]


async def eventually(db: Database, holds: Callable[[dict[tuple[str, str], FleetClient]], bool]) -> None:
    """Poll the table until ``holds(rows)`` (the writer's loop runs beside the test); 10 s at most."""
    async with asyncio.timeout(10):
        while not holds(await rows(db)):  # noqa: ASYNC110 - a table has no event to wait on
            await asyncio.sleep(0.01)


# -- batching ------------------------------------------------------------------------------------


async def test_reports_are_written_only_when_flushed(writer, db, database):
    before = await snapshot_database(database)
    s = session_of()
    writer.connected(s)
    writer.acked(s, Ack(ENV, 3, DIGEST))
    assert await snapshot_database(database) == before
    await writer.flush()
    assert set(await rows(db)) == {(s.hello.client_id, ENV)}


async def test_a_thousand_connections_are_written_in_one_statement(writer, db):
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "fleet_clients" in statement:
            statements.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        for _ in range(1000):
            writer.connected(session_of())
        await writer.flush()
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    assert len(await rows(db)) == 1000
    assert len(statements) == 1
    assert statements[0].lstrip().upper().startswith("INSERT")


async def test_a_connected_session_is_written_with_its_client_and_session(writer, db, clock):
    s = FakeSession(hello(version="2.0.1", region="eu", tier="gold"), prompt_set="checkout")
    writer.connected(s)
    await writer.flush()
    r = await row(db, s)
    assert (r.organisation, r.project, r.environment, r.prompt_set) == ("acme", "web", "prod", "checkout")
    assert (r.sdk_name, r.sdk_version, r.labels) == (
        "anvil-python",
        "2.0.1",
        {"region": "eu", "tier": "gold"},
    )
    assert (r.replica, str(r.session_id), r.transport, r.connected) == ("gw-a", s.id, "websocket", True)
    assert r.connected_at == r.last_seen_at == T0
    assert r.revision is None
    assert r.nack_revision is None


async def test_the_last_ack_and_the_last_nack_are_both_kept(writer, db, clock):
    s = session_of()
    writer.connected(s)
    writer.acked(s, Ack(ENV, 3, DIGEST))
    await writer.flush()
    clock.advance(5)
    writer.nacked(s, Nack(ENV, 4, DIGEST_2, "digest-mismatch", "greeting does not hash to its digest"))
    await writer.flush()
    r = await row(db, s)
    assert (r.revision, r.manifest_digest, r.acked_at) == (3, DIGEST, T0)
    assert (r.nack_revision, r.nack_code, r.nack_detail) == (
        4,
        "digest-mismatch",
        "greeting does not hash to its digest",
    )
    assert r.nacked_at == r.last_seen_at == T0 + timedelta(seconds=5)
    assert r.connected


async def test_a_later_ack_replaces_the_earlier_one(writer, db, clock):
    s = session_of()
    writer.connected(s)
    writer.acked(s, Ack(ENV, 3, DIGEST))
    clock.advance(1)
    writer.acked(s, Ack(ENV, 4, DIGEST_2))  # same batch: the newer one is written
    await writer.flush()
    clock.advance(1)
    writer.acked(s, Ack(ENV, 5, DIGEST))
    await writer.flush()
    r = await row(db, s)
    assert (r.revision, r.manifest_digest, r.acked_at) == (5, DIGEST, T0 + timedelta(seconds=2))


# -- connections -------------------------------------------------------------------------------


async def test_a_disconnect_keeps_the_row_and_what_the_client_held(writer, db, clock):
    s = session_of()
    writer.connected(s)
    writer.acked(s, Ack(ENV, 3, DIGEST))
    await writer.flush()
    clock.advance(10)
    writer.disconnected(s)
    await writer.flush()
    r = await row(db, s)
    assert not r.connected
    assert r.revision == 3
    assert r.connected_at == T0
    assert r.last_seen_at == T0 + timedelta(seconds=10)


async def test_an_ack_after_the_disconnect_does_not_make_the_client_connected_again(writer, db, clock):
    s = session_of()
    writer.connected(s)
    await writer.flush()
    writer.disconnected(s)
    await writer.flush()
    clock.advance(1)
    writer.acked(s, Ack(ENV, 3, DIGEST))
    writer.nacked(s, Nack(ENV, 4, DIGEST_2, "rollback", "below the floor"))
    await writer.flush()
    r = await row(db, s)
    assert not r.connected
    assert (r.revision, r.nack_revision) == (3, 4)


async def test_an_ack_and_a_disconnect_in_one_batch_leave_the_client_disconnected(writer, db):
    s = session_of()
    writer.connected(s)
    await writer.flush()
    writer.disconnected(s)
    writer.acked(s, Ack(ENV, 3, DIGEST))  # arrived late, in the same batch
    await writer.flush()
    r = await row(db, s)
    assert (r.connected, r.revision) == (False, 3)


async def test_a_session_that_came_and_went_within_one_batch_is_written_disconnected(writer, db):
    s = session_of()
    writer.connected(s)
    writer.acked(s, Ack(ENV, 2, DIGEST))
    writer.disconnected(s)
    await writer.flush()
    r = await row(db, s)
    assert (r.connected, r.revision, str(r.session_id)) == (False, 2, s.id)


async def test_the_old_sessions_disconnect_does_not_disconnect_the_client_that_reconnected(writer, db):
    client = str(uuid.uuid4())
    old, new = session_of(client), session_of(client)
    writer.connected(old)
    await writer.flush()
    writer.connected(new)  # the client reconnected before the old connection's end was noticed
    writer.disconnected(old)
    await writer.flush()
    r = await row(db, new)
    assert (r.connected, str(r.session_id)) == (True, new.id)

    writer.disconnected(old)  # once more, in a batch of its own
    await writer.flush()
    assert (await row(db, new)).connected


async def test_a_client_in_two_environments_has_a_row_for_each(writer, db):
    client = str(uuid.uuid4())
    a, b = session_of(client), session_of(client, channel=Channel(OTHER_ENV, ("acme", "web", "staging")))
    writer.connected(a)
    writer.connected(b)
    writer.acked(b, Ack(OTHER_ENV, 9, DIGEST))
    await writer.flush()
    found = await rows(db)
    assert set(found) == {(client, ENV), (client, OTHER_ENV)}
    assert (found[(client, ENV)].revision, found[(client, OTHER_ENV)].revision) == (None, 9)


# -- several replicas --------------------------------------------------------------------------


async def test_a_client_that_moved_belongs_to_the_replica_that_wrote_last(db, clock):
    a = FleetWriter(db, replica="gw-a", settings=settings(), clock=clock)
    b = FleetWriter(db, replica="gw-b", settings=settings(), clock=clock)
    client = str(uuid.uuid4())
    on_a, on_b = session_of(client), session_of(client)
    a.connected(on_a)
    a.acked(on_a, Ack(ENV, 3, DIGEST))
    await a.flush()
    clock.advance(1)
    b.connected(on_b)  # gw-a's connection broke; the client came back through gw-b
    await b.flush()
    a.disconnected(on_a)  # gw-a notices later
    await a.flush()
    r = await row(db, on_b)
    assert (r.replica, str(r.session_id), r.connected) == ("gw-b", on_b.id, True)
    assert r.revision == 3  # what the client held is not lost when it moves


async def test_a_late_batch_does_not_overwrite_a_newer_ack_or_last_seen(db, clock):
    a = FleetWriter(db, replica="gw-a", settings=settings(), clock=clock)
    b = FleetWriter(db, replica="gw-b", settings=settings(), clock=clock)
    client = str(uuid.uuid4())
    on_a, on_b = session_of(client), session_of(client)
    a.connected(on_a)
    a.acked(on_a, Ack(ENV, 3, DIGEST))  # gw-a holds this batch...
    clock.advance(5)
    b.connected(on_b)
    b.acked(on_b, Ack(ENV, 4, DIGEST_2))
    await b.flush()
    a.disconnected(on_a)
    await a.flush()  # ... and writes it after gw-b's newer one
    r = await row(db, on_b)
    assert (r.revision, r.manifest_digest) == (4, DIGEST_2)
    assert r.last_seen_at == T0 + timedelta(seconds=5)


async def test_a_restarted_replica_disconnects_what_its_earlier_run_left_connected(db, clock):
    crashed = FleetWriter(db, replica="gw-a", settings=settings(), clock=clock)
    other = FleetWriter(db, replica="gw-b", settings=settings(), clock=clock)
    mine, theirs = session_of(), session_of()
    crashed.connected(mine)
    other.connected(theirs)
    await crashed.flush()
    await other.flush()

    restarted = FleetWriter(db, replica="gw-a", settings=settings(), clock=clock)
    await restarted.forget_previous_run()
    assert not (await row(db, mine)).connected
    assert (await row(db, theirs)).connected


# -- last seen, stale, expiry ------------------------------------------------------------------


async def test_connected_sessions_get_their_last_seen_rewritten_by_refresh(writer, db, clock):
    s, gone = session_of(), session_of()
    writer.connected(s)
    writer.connected(gone)
    writer.acked(s, Ack(ENV, 3, DIGEST))
    await writer.flush()
    writer.disconnected(gone)
    await writer.flush()
    clock.advance(60)
    writer.refresh()
    await writer.flush()
    r = await row(db, s)
    assert (r.connected_at, r.last_seen_at, r.revision) == (T0, T0 + timedelta(seconds=60), 3)
    assert (await row(db, gone)).last_seen_at == T0  # only sessions this replica holds


async def test_a_row_its_replica_stopped_refreshing_turns_stale(db, clock):
    live = FleetWriter(db, replica="gw-a", settings=settings(), clock=clock)
    dead = FleetWriter(db, replica="gw-b", settings=settings(), clock=clock)
    on_live, on_dead, left = session_of(), session_of(), session_of()
    live.connected(on_live)
    live.connected(left)
    dead.connected(on_dead)
    await live.flush()
    await dead.flush()
    live.disconnected(left)
    await live.flush()
    clock.advance(live.fresh_for.total_seconds() + 1)  # gw-b died: it refreshes nothing
    live.refresh()
    await live.flush()

    cutoff = clock() - live.fresh_for
    async with db.session(write=False) as session:
        found = {
            status: {
                str(r.client_id)
                for r in await repository.list_clients(
                    session, FleetFilter(status=status), cutoff=cutoff, after=None, limit=10
                )
            }
            for status in repository.STATUSES
        }
        every = await repository.list_clients(session, FleetFilter(), cutoff=cutoff, after=None, limit=10)
    assert found == {
        "connected": {on_live.hello.client_id},
        "stale": {on_dead.hello.client_id},
        "disconnected": {left.hello.client_id},
    }
    # The SQL and the Python status agree.
    assert {str(r.client_id): repository.status_of(r, cutoff) for r in every} == {
        c: s for s, clients in found.items() for c in clients
    }


def test_the_fresh_window_is_two_refreshes_and_a_flush():
    writer = FleetWriter(
        Database("sqlite+aiosqlite://"),
        replica="x",
        settings=settings(fleet_seen_seconds=30, fleet_flush_seconds=2),
    )
    assert writer.fresh_for == timedelta(seconds=62)


async def test_rows_nobody_refreshed_for_the_ttl_are_deleted(db, clock):
    writer = FleetWriter(db, replica="gw-a", settings=settings(fleet_ttl_seconds=600), clock=clock)
    old, young, kept = session_of(), session_of(), session_of()
    for s in (old, young, kept):
        writer.connected(s)
    await writer.flush()
    writer.disconnected(old)
    await writer.flush()
    clock.advance(300)
    writer.disconnected(young)
    await writer.flush()
    clock.advance(301)  # old: 601 s unseen; young: 301 s; kept: refreshed now
    writer.refresh()
    await writer.flush()
    assert await writer.expire() == 1
    assert set(await rows(db)) == {(young.hello.client_id, ENV), (kept.hello.client_id, ENV)}


# -- the loop and shutdown ---------------------------------------------------------------------


async def test_run_flushes_refreshes_and_expires_until_cancelled(db, clock):
    writer = FleetWriter(
        db,
        replica="gw-a",
        settings=settings(fleet_flush_seconds=0.01, fleet_seen_seconds=0.05, fleet_ttl_seconds=30),
        clock=clock,
    )
    left = session_of()
    writer.connected(left)
    writer.disconnected(left)
    task = asyncio.create_task(writer.run())
    try:
        s = session_of()
        writer.connected(s)
        await eventually(db, lambda found: (s.hello.client_id, ENV) in found)
        clock.advance(31)  # the next refresh rewrites s; left is past the ttl
        await eventually(db, lambda found: set(found) == {(s.hello.client_id, ENV)})
        await eventually(db, lambda found: found[(s.hello.client_id, ENV)].last_seen_at == clock())
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_aclose_writes_every_held_session_disconnected_and_ignores_later_reports(writer, db):
    a, b = session_of(), session_of()
    writer.connected(a)
    writer.connected(b)
    await writer.flush()
    writer.acked(a, Ack(ENV, 3, DIGEST))  # not flushed yet: the final flush writes it
    await writer.aclose()
    found = await rows(db)
    assert [r.connected for r in found.values()] == [False, False]
    assert found[(a.hello.client_id, ENV)].revision == 3

    writer.connected(session_of())
    writer.acked(b, Ack(ENV, 4, DIGEST))
    await writer.flush()
    assert len(await rows(db)) == 2
    assert (await row(db, b)).revision is None


async def test_a_failed_flush_keeps_the_batch_for_the_next_one(writer, db, database, clock):
    s = session_of()
    writer.connected(s)
    writer.acked(s, Ack(ENV, 3, DIGEST))
    async with db.session() as session:  # a real failure: the table is not there
        await session.execute(text("ALTER TABLE fleet_clients RENAME TO fleet_clients_away"))
    await writer.flush()
    async with db.session() as session:
        await session.execute(text("ALTER TABLE fleet_clients_away RENAME TO fleet_clients"))
    assert await rows(db) == {}
    clock.advance(1)
    writer.nacked(s, Nack(ENV, 4, DIGEST_2, "invalid-prompt", "undeclared variable"))
    await writer.flush()
    r = await row(db, s)
    assert (r.connected, r.revision, r.nack_revision) == (True, 3, 4)


# -- HTTP clients ------------------------------------------------------------------------------


async def test_an_http_report_is_written_as_an_http_client(writer, db, clock):
    h = hello(region="eu")
    writer.reported(h, Nack(ENV, 4, DIGEST, "bad-signature", "unknown kid"))
    await writer.flush()
    r = (await rows(db))[(h.client_id, ENV)]
    assert (r.transport, r.connected, r.connected_at, r.session_id, r.replica) == (
        "http",
        False,
        None,
        None,
        "gw-a",
    )
    assert (r.nack_revision, r.nack_code, r.nack_detail, r.nacked_at) == (
        4,
        "bad-signature",
        "unknown kid",
        T0,
    )
    assert r.labels == {"region": "eu"}
    clock.advance(3)
    writer.reported(h, Ack(ENV, 5, DIGEST_2))
    await writer.flush()
    r = (await rows(db))[(h.client_id, ENV)]
    assert (r.revision, r.nack_revision, r.last_seen_at) == (5, 4, T0 + timedelta(seconds=3))


# -- rollout counts and the summary ------------------------------------------------------------


async def test_revision_counts_are_fleet_wide_last_acks_and_standing_nacks(db, clock):
    a = FleetWriter(db, replica="gw-a", settings=settings(), clock=clock)
    b = FleetWriter(db, replica="gw-b", settings=settings(), clock=clock)
    acked, moved_on, refused, retried, broke, elsewhere = (session_of() for _ in range(6))
    other_env = session_of(channel=Channel(OTHER_ENV, ("acme", "web", "staging")))
    on_a, on_b = (acked, moved_on, broke, elsewhere), (refused, retried, other_env)
    for writer, sessions in ((a, on_a), (b, on_b)):
        for s in sessions:
            writer.connected(s)
    for s in (acked, moved_on, broke):
        a.acked(s, Ack(ENV, 3, DIGEST))
    a.acked(elsewhere, Ack(ENV, 2, DIGEST_2))
    b.nacked(refused, Nack(ENV, 3, DIGEST, "digest-mismatch", ""))
    b.nacked(retried, Nack(ENV, 3, DIGEST, "internal", "disk full"))
    b.acked(other_env, Ack(OTHER_ENV, 3, DIGEST))
    await a.flush()
    await b.flush()
    clock.advance(1)
    a.nacked(moved_on, Nack(ENV, 4, DIGEST_2, "rollback", ""))  # its floor is at or above 4 already
    a.nacked(broke, Nack(ENV, 3, DIGEST, "bad-signature", ""))  # refused 3 after applying it once
    b.acked(retried, Ack(ENV, 3, DIGEST))  # applied 3 after all: its nack no longer stands
    await a.flush()
    await b.flush()

    async with db.session(write=False) as session:
        assert await repository.revision_counts(session, ENV, 3) == (4, 2)
        # moved_on's nack of 4 is an anti-rollback refusal, not a verdict on 4's content.
        assert await repository.revision_counts(session, ENV, 4) == (0, 0)
        assert await repository.revision_counts(session, uuid.UUID(ENV), 2) == (1, 0)
        assert await repository.revision_counts(session, ENV, 5) == (0, 0)
        assert await repository.revision_counts(session, OTHER_ENV, 3) == (1, 0)


async def test_the_summary_counts_clients_by_environment_status_and_revision(db, clock):
    writer = FleetWriter(db, replica="gw-a", settings=settings(), clock=clock)
    staging = Channel(OTHER_ENV, ("acme", "web", "staging"))
    on3, also3, left3, refused, fresh = (session_of() for _ in range(5))
    in_staging = session_of(channel=staging)
    for s in (on3, also3, left3, refused, fresh, in_staging):
        writer.connected(s)
    for s in (on3, also3, left3):
        writer.acked(s, Ack(ENV, 3, DIGEST))
    writer.acked(refused, Ack(ENV, 2, DIGEST_2))
    writer.nacked(refused, Nack(ENV, 3, DIGEST, "invalid-prompt", ""))
    writer.acked(in_staging, Ack(OTHER_ENV, 7, DIGEST))
    await writer.flush()
    writer.disconnected(left3)
    await writer.flush()

    async with db.session(write=False) as session:
        cutoff = clock() - writer.fresh_for
        tallies = await repository.summarize(session, FleetFilter(organisation="acme"), cutoff=cutoff)
        only_prod = await repository.summarize(session, FleetFilter("acme", "web", "prod"), cutoff=cutoff)
        none = await repository.summarize(session, FleetFilter(organisation="other"), cutoff=cutoff)
    assert [t.environment for t in tallies] == ["prod", "staging"]
    prod = tallies[0]
    assert (prod.clients, prod.connected, prod.stale, prod.disconnected, prod.without_revision) == (
        5,
        4,
        0,
        1,
        1,
    )
    assert {n: (r.clients, r.connected, r.nacks) for n, r in prod.revisions.items()} == {
        3: (3, 2, 1),
        2: (1, 1, 0),
    }
    assert str(prod.environment_id) == ENV
    assert {n: r.clients for n, r in tallies[1].revisions.items()} == {7: 1}
    assert [t.environment for t in only_prod] == ["prod"]
    assert none == []


def test_the_nack_codes_of_the_api_are_the_protocols():
    assert set(NackCode.__args__) == NACK_CODES
