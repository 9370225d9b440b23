"""The ordered event feed: GET /v1/events (order, paging, tenancy, long-poll, retention, errors)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Coroutine
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select, update

from anvil_common.db import utcnow
from anvil_common.testing import backend
from anvil_registry.app import create_app
from anvil_registry.events import service as events_service
from anvil_registry.events.service import append_event
from anvil_registry.maintenance import prune
from anvil_registry.models import Event, EventSequence, Organisation, Project
from anvil_registry.state import RegistryState

PROBLEM = "application/problem+json"
FEED = "/v1/events"


async def append(
    state: RegistryState,
    count: int = 1,
    *,
    org_id: uuid.UUID | None = None,
    project_id: uuid.UUID | None = None,
) -> list[int]:
    """Commit ``count`` events, one transaction each, as a request would (with its wake-up)."""
    ids = []
    for _ in range(count):
        async with state.db.session() as session:
            session.info["state"] = state
            row = await append_event(
                session,
                kind="test.event",
                payload={"n": len(ids)},
                organisation_id=org_id,
                project_id=project_id,
            )
            ids.append(row.id)
    return ids


async def org_id(state: RegistryState, slug: str) -> uuid.UUID:
    async with state.db.session(write=False) as session:
        value = await session.scalar(select(Organisation.id).where(Organisation.slug == slug))
    assert value is not None
    return value


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def watch_waits(monkeypatch: pytest.MonkeyPatch, state: RegistryState) -> asyncio.Event:
    """An asyncio.Event set whenever a long-poll starts waiting on the hub (the test's seam)."""
    waiting = asyncio.Event()
    original = state.hub.wait

    async def wait(timeout: float, *, since: int | None = None) -> bool:
        waiting.set()
        return await original(timeout, since=since)

    monkeypatch.setattr(state.hub, "wait", wait)
    return waiting


@contextlib.asynccontextmanager
async def in_background(
    request: Coroutine[Any, Any, httpx.Response],
) -> AsyncIterator[asyncio.Task[httpx.Response]]:
    """Run a request as a task; cancel it if the test fails before awaiting it."""
    task = asyncio.create_task(request)
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def ids_of(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [e["id"] for e in response.json()["events"]]


async def test_events_come_back_in_order_with_next_after_and_head(client, admin_headers, state):
    await append(state, 5)
    r = await client.get(FEED, headers=admin_headers)
    body = r.json()
    assert ids_of(r) == [1, 2, 3, 4, 5]
    assert (body["next_after"], body["head"]) == (5, 5)
    assert r.headers["cache-control"] == "no-store"
    first = body["events"][0]
    assert set(first) == {
        "id",
        "kind",
        "organisation_id",
        "project_id",
        "environment_id",
        "payload",
        "created_at",
    }
    assert (first["kind"], first["payload"], first["organisation_id"]) == ("test.event", {"n": 0}, None)


async def test_limit_pages_through_the_feed_and_an_empty_page_keeps_the_cursor(client, admin_headers, state):
    await append(state, 5)
    pages, after = [], 0
    while True:
        r = await client.get(FEED, params={"after": after, "limit": 2}, headers=admin_headers)
        pages.append(ids_of(r))
        assert r.json()["head"] == 5
        if not pages[-1]:
            assert r.json()["next_after"] == after
            break
        after = r.json()["next_after"]
        assert after == pages[-1][-1]
    assert pages == [[1, 2], [3, 4], [5], []]


async def test_org_token_sees_only_its_events_and_next_after_still_advances(
    client, admin_headers, make_token, state, acme
):
    r = await client.post("/v1/orgs", json={"slug": "globex", "name": "Globex"}, headers=admin_headers)
    assert r.status_code == 201
    acme_id, globex_id = await org_id(state, "acme"), await org_id(state, "globex")
    await append(state, org_id=acme_id)  # 1
    await append(state, 2, org_id=globex_id)  # 2, 3
    await append(state)  # 4: instance-wide, e.g. revoking an instance token
    await append(state, org_id=acme_id)  # 5
    await append(state, org_id=globex_id)  # 6
    acme_token = bearer(make_token("service", org="acme", scopes=["events:read"]))
    globex_token = bearer(make_token("service", org="globex", scopes=["events:read"]))
    gateway = bearer(make_token("service", org=None, scopes=["events:read"]))

    r = await client.get(FEED, headers=acme_token)
    assert ids_of(r) == [1, 5]
    assert (r.json()["next_after"], r.json()["head"]) == (6, 6)
    seen, after = [], 0
    for expected_after in (1, 5, 6):
        r = await client.get(FEED, params={"after": after, "limit": 1}, headers=acme_token)
        seen += ids_of(r)
        after = r.json()["next_after"]
        assert after == expected_after
    assert seen == [1, 5]
    assert ids_of(await client.get(FEED, headers=globex_token)) == [2, 3, 6]
    assert ids_of(await client.get(FEED, headers=gateway)) == [1, 2, 3, 4, 5, 6]
    assert ids_of(await client.get(FEED, headers=admin_headers)) == [1, 2, 3, 4, 5, 6]
    nobody = await client.get(
        FEED, headers=bearer(make_token("service", org="nobody", scopes=["events:read"]))
    )
    assert ids_of(nobody) == []
    assert nobody.json()["next_after"] == 6


async def test_project_limited_token_sees_only_its_projects_events(
    client, admin_headers, make_token, state, acme
):
    r = await client.post(
        "/v1/orgs/acme/projects", json={"slug": "api", "name": "API"}, headers=admin_headers
    )
    assert r.status_code == 201
    acme_id = await org_id(state, "acme")
    async with state.db.session(write=False) as session:
        projects = {
            slug: id_ for slug, id_ in (await session.execute(select(Project.slug, Project.id))).all()
        }
    await append(state, org_id=acme_id, project_id=projects["web"])  # 1
    await append(state, org_id=acme_id, project_id=projects["api"])  # 2
    await append(state, org_id=acme_id)  # 3: organisation-wide
    web = bearer(make_token("service", org="acme", project="web", scopes=["events:read"]))
    r = await client.get(FEED, headers=web)
    assert ids_of(r) == [1]
    assert r.json()["next_after"] == 3


async def test_concurrent_publishers_get_gap_free_ids_in_commit_order(client, admin_headers, state):
    writers, checked_out, most_checked_out = 20, 0, 0

    def on_checkout(*_: Any) -> None:
        nonlocal checked_out, most_checked_out
        checked_out += 1
        most_checked_out = max(most_checked_out, checked_out)

    def on_checkin(*_: Any) -> None:
        nonlocal checked_out
        checked_out -= 1

    pool = state.db.engine.sync_engine.pool
    sa_event.listen(pool, "checkout", on_checkout)
    sa_event.listen(pool, "checkin", on_checkin)

    async def write(i: int) -> None:
        await asyncio.sleep(random.uniform(0, 0.005))
        async with state.db.session() as session:
            session.info["state"] = state
            await append_event(session, kind="test.concurrent", payload={"writer": i})
            # Hold the lock a little while others queue behind it: a reader must never see a
            # later id before this one commits.
            await asyncio.sleep(random.uniform(0.001, 0.008))

    async def follow() -> list[int]:
        seen: list[int] = []
        after = 0
        while len(seen) < writers:
            r = await client.get(FEED, params={"after": after, "wait": 2, "limit": 7}, headers=admin_headers)
            ids = ids_of(r)
            assert ids == list(range(after + 1, after + 1 + len(ids))), (after, ids)
            seen += ids
            after = r.json()["next_after"]
            assert after == (seen[-1] if seen else 0)
        return seen

    try:
        follower = asyncio.create_task(follow())
        await asyncio.wait_for(asyncio.gather(*(write(i) for i in range(writers))), 60)
        seen = await asyncio.wait_for(follower, 30)
    finally:
        sa_event.remove(pool, "checkout", on_checkout)
        sa_event.remove(pool, "checkin", on_checkin)
    assert seen == list(range(1, writers + 1))
    async with state.db.session(write=False) as session:
        rows = (await session.execute(select(Event.id, Event.payload).order_by(Event.id))).all()
    assert [r.id for r in rows] == list(range(1, writers + 1))
    assert sorted(r.payload["writer"] for r in rows) == list(range(writers))
    # The transactions really overlapped at the database (queued on BEGIN IMMEDIATE or on the
    # advisory lock), rather than being serialized by the test or a one-connection pool.
    assert most_checked_out >= 3


async def test_long_poll_returns_as_soon_as_an_event_commits(
    live_server, admin_headers, state, acme, monkeypatch
):
    waiting = watch_waits(monkeypatch, state)
    http = httpx.AsyncClient(base_url=live_server, headers=admin_headers, timeout=45)
    async with http, in_background(http.get(FEED, params={"after": 0, "wait": 30})) as poll:
        await asyncio.wait_for(waiting.wait(), 20)
        assert not poll.done()
        # A real request commits the event (archiving a project writes one).
        r = await http.delete("/v1/orgs/acme/projects/web", headers={"If-Match": '"p1"'})
        assert r.status_code == 200, r.text
        response = await asyncio.wait_for(poll, 25)  # before the 30 s wait runs out, even on a loaded machine
    events = response.json()["events"]
    assert [(e["id"], e["kind"]) for e in events] == [(1, "project.archived")]
    assert events[0]["payload"] == {"organisation": "acme", "project": "web"}


async def test_long_poll_ignores_other_tenants_events_and_keeps_waiting(
    live_server, client, admin_headers, make_token, state, acme, monkeypatch
):
    r = await client.post("/v1/orgs", json={"slug": "globex", "name": "Globex"}, headers=admin_headers)
    assert r.status_code == 201
    acme_id, globex_id = await org_id(state, "acme"), await org_id(state, "globex")
    waiting = watch_waits(monkeypatch, state)
    acme_token = bearer(make_token("service", org="acme", scopes=["events:read"]))
    http = httpx.AsyncClient(base_url=live_server, headers=acme_token, timeout=45)
    async with http, in_background(http.get(FEED, params={"wait": 30})) as poll:
        await asyncio.wait_for(waiting.wait(), 20)
        waiting.clear()
        await append(state, org_id=globex_id)  # wakes the poll, which finds nothing it may see
        await asyncio.wait_for(waiting.wait(), 20)
        assert not poll.done()
        await append(state, org_id=acme_id)
        response = await asyncio.wait_for(poll, 25)
    assert ids_of(response) == [2]
    assert response.json()["next_after"] == 2


async def test_commit_between_the_query_and_the_wait_is_not_missed(client, admin_headers, state, monkeypatch):
    original, reads = events_service._read_page, 0

    async def read_then_commit(*args: Any, **kwargs: Any) -> events_service.FeedPage:
        nonlocal reads
        page = await original(*args, **kwargs)
        reads += 1
        if reads == 1:
            await append(state)  # commits, and notifies, before the long-poll starts to wait
        return page

    monkeypatch.setattr(events_service, "_read_page", read_then_commit)
    # A missed wake-up would sleep the whole 60 s wait; the bound catches it with room for a loaded machine.
    r = await asyncio.wait_for(client.get(FEED, params={"wait": 60}, headers=admin_headers), 30)
    assert ids_of(r) == [1]
    assert reads == 2


async def test_idle_long_poll_does_not_query_the_database_while_it_waits(client, admin_headers, state):
    listener = state.extras.get("listener")
    if listener is not None:
        await asyncio.wait_for(listener.connected.wait(), 10)
        # Other test runs share the database and its channel: the app's listener ignores them.
        assert listener.schema == state.db.schema
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "tokens" not in statement:  # the revocation cache may refresh at any request
            statements.append(statement)

    engine = state.db.engine.sync_engine
    assert (await client.get(FEED, headers=admin_headers)).status_code == 200
    sa_event.listen(engine, "before_cursor_execute", record)
    try:
        counts = []
        for wait in (0, 0.2, 1):
            statements.clear()
            r = await client.get(FEED, params={"wait": wait}, headers=admin_headers)
            assert r.status_code == 200
            assert r.json()["events"] == []
            counts.append(len(statements))
    finally:
        sa_event.remove(engine, "before_cursor_execute", record)
    one_read = counts[0]
    # One page read before the wait and one after it, however long the wait.
    assert counts[1] == counts[2] == 2 * one_read


@pytest.mark.skipif(
    backend() != "postgres",
    reason="cross-replica wake-ups are LISTEN/NOTIFY: Postgres only (SQLite runs one process)",
)
async def test_long_poll_on_another_replica_wakes_on_notify(settings, admin_headers, state, monkeypatch):
    replica = create_app(settings)
    async with replica.router.lifespan_context(replica):
        state_b: RegistryState = replica.state.registry
        await asyncio.wait_for(state_b.extras["listener"].connected.wait(), 10)
        waiting = watch_waits(monkeypatch, state_b)
        transport = httpx.ASGITransport(app=replica)
        client_b = httpx.AsyncClient(transport=transport, base_url="http://replica-b", timeout=45)
        async with (
            client_b,
            in_background(client_b.get(FEED, params={"wait": 30}, headers=admin_headers)) as poll,
        ):
            await asyncio.wait_for(waiting.wait(), 20)
            # Committed through replica A, with no in-process hook: only NOTIFY can reach B.
            async with state.db.session() as session:
                await append_event(session, kind="test.cross", payload={"from": "a"})
            response = await asyncio.wait_for(poll, 25)
    assert [(e["id"], e["kind"]) for e in response.json()["events"]] == [(1, "test.cross")]


async def test_cursor_older_than_retention_is_410_events_expired(client, admin_headers, state):
    await append(state, 5)
    old = utcnow() - timedelta(days=state.settings.event_retention_days + 1)
    async with state.db.session() as session:
        await session.execute(update(Event).where(Event.id <= 3).values(created_at=old))
    async with state.db.session() as session:
        removed = await prune(session, state)
    assert removed["events"] == 3
    async with state.db.session(write=False) as session:
        assert await session.scalar(select(EventSequence.pruned_through)) == 3
    for after in (0, 2):
        r = await client.get(FEED, params={"after": after, "wait": 10}, headers=admin_headers)
        assert r.status_code == 410
        assert r.headers["content-type"] == PROBLEM
        body = r.json()
        assert body["type"] == "urn:anvil:problem:events-expired"
        assert (body["head"], body["oldest_available"]) == (5, 4)
    r = await client.get(FEED, params={"after": 3}, headers=admin_headers)
    assert ids_of(r) == [4, 5]
    async with state.db.session() as session:  # a second pass finds nothing more to remove
        assert (await prune(session, state))["events"] == 0


@pytest.mark.parametrize(
    ("params", "status", "problem"),
    [
        ({"after": -1}, 422, "validation-failed"),
        ({"after": "abc"}, 422, "validation-failed"),
        ({"limit": 0}, 422, "validation-failed"),
        ({"limit": 1001}, 422, "validation-failed"),
        ({"wait": 999}, 422, "validation-failed"),
        ({"wait": -1}, 422, "validation-failed"),
        ({"wait": "nan"}, 422, "validation-failed"),
        ({"after": 3}, 400, "cursor-ahead"),
    ],
)
async def test_bad_feed_parameters_are_problems_and_write_nothing(
    client, admin_headers, state, snapshot, params, status, problem
):
    await append(state, 2)
    before = await snapshot()
    r = await client.get(FEED, params=params, headers=admin_headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["type"] == f"urn:anvil:problem:{problem}"
    if problem == "cursor-ahead":
        assert r.json()["head"] == 2
    assert await snapshot() == before


async def test_feed_needs_a_token_with_events_read(client, make_token, snapshot):
    before = await snapshot()
    r = await client.get(FEED)
    assert r.status_code == 401
    assert r.headers["content-type"] == PROBLEM
    for kind, scopes in (("operator", ["projects:read"]), ("client", None)):
        r = await client.get(FEED, headers=bearer(make_token(kind, org="acme", scopes=scopes)))
        assert r.status_code == 403
        assert r.json()["type"] == "urn:anvil:problem:forbidden"
        assert r.json()["required_scope"] == "events:read"
    assert await snapshot() == before


async def test_retention_prunes_old_audit_entries_and_idempotency_keys_only(
    client, admin_headers, acme, state
):
    from datetime import timedelta

    from sqlalchemy import func, update

    from anvil_common.db import utcnow
    from anvil_registry.models import AuditEntry, IdempotencyRecord

    r = await client.post(
        "/v1/orgs/acme/projects/web/environments", json={"name": "prod"}, headers=admin_headers
    )
    assert r.status_code == 201
    async with state.db.session() as session:
        session.add(
            IdempotencyRecord(
                actor="x",
                scope="POST /x",
                key="old",
                request_hash="h",
                status_code=201,
                response={},
                headers={},
            )
        )
        session.add(
            IdempotencyRecord(
                actor="x",
                scope="POST /x",
                key="new",
                request_hash="h",
                status_code=201,
                response={},
                headers={},
            )
        )
    old = utcnow() - timedelta(days=400)
    async with state.db.session() as session:
        total_audit = await session.scalar(select(func.count()).select_from(AuditEntry))
        await session.execute(update(AuditEntry).where(AuditEntry.action == "project.create").values(at=old))
        await session.execute(
            update(IdempotencyRecord).where(IdempotencyRecord.key == "old").values(created_at=old)
        )
    async with state.db.session() as session:
        removed = await prune(session, state)
    assert removed["audit_entries"] == 1
    assert removed["idempotency_keys"] == 1
    async with state.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(AuditEntry)) == total_audit - 1
        keys = (await session.scalars(select(IdempotencyRecord.key))).all()
    assert keys == ["new"]
