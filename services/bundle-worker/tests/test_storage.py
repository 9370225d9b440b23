"""Bundle storage (the database store behind the BundleStore interface) and retention."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from anvil_bundle_worker.bundles.errors import BundleTooLarge
from anvil_bundle_worker.maintenance import prune
from anvil_bundle_worker.models import Job, Plan, StoredBundle
from anvil_bundle_worker.storage import BundleStore, DatabaseBundleStore, NewBundle
from anvil_common.db import utcnow

DIGEST = "sha256:" + "a" * 64


def new_bundle(
    digest: str = DIGEST, *, data: bytes = b"bundle bytes", days: float = 7, **kw: Any
) -> NewBundle:
    values: dict[str, Any] = {
        "digest": digest,
        "data": data,
        "kind": "export",
        "organisation": "acme",
        "project": None,
        "created_by": "operator:tester",
        "expires_at": utcnow() + timedelta(days=days),
        "manifest": {"objects": 1},
        **kw,
    }
    return NewBundle(**values)


def test_the_database_store_implements_the_interface(state):
    store: BundleStore = state.store
    assert isinstance(store, DatabaseBundleStore)
    assert store.max_bytes == state.settings.max_bundle_bytes


async def test_put_get_delete_round_trip(state):
    async with state.db.session() as session:
        await state.store.put(session, new_bundle())
    async with state.db.session(write=False) as session:
        found = await state.store.get(session, DIGEST)
        assert await state.store.exists(session, DIGEST)
    assert found is not None
    assert (found.data, found.size, found.kind, found.manifest) == (
        b"bundle bytes",
        12,
        "export",
        {"objects": 1},
    )
    async with state.db.session() as session:
        assert await state.store.delete(session, DIGEST) is True
        assert await state.store.delete(session, DIGEST) is False
        assert await state.store.get(session, DIGEST) is None


@pytest.mark.parametrize("settings_overrides", [{"max_bundle_bytes": 2048}])
async def test_a_bundle_over_the_limit_is_refused_and_not_stored(state, snapshot):
    before = await snapshot()
    with pytest.raises(BundleTooLarge, match="2048"):
        async with state.db.session() as session:
            await state.store.put(session, new_bundle(data=bytes(2049)))
    assert await snapshot() == before
    async with state.db.session() as session:
        await state.store.put(session, new_bundle(data=bytes(2048)))  # at the limit: stored


async def test_the_same_digest_again_keeps_the_bytes_and_the_later_expiry(state):
    async with state.db.session() as session:
        await state.store.put(session, new_bundle(days=7))
    async with state.db.session() as session:
        await state.store.put(session, new_bundle(days=1, data=b"ignored"))  # earlier: no change
    async with state.db.session(write=False) as session:
        kept = await state.store.get(session, DIGEST)
    assert kept is not None
    assert kept.data == b"bundle bytes"
    async with state.db.session() as session:
        await state.store.put(session, new_bundle(days=30))
    async with state.db.session(write=False) as session:
        extended = await state.store.get(session, DIGEST)
    assert extended is not None
    assert extended.expires_at > kept.expires_at


async def test_expired_bundle_is_not_served_before_retention_removes_it(state, client, acme_headers):
    async with state.db.session() as session:
        await state.store.put(session, new_bundle(days=-1))
    r = await client.get(f"/v1/bundles/{DIGEST}", headers=acme_headers)
    assert r.status_code == 404


def _job(status: str, finished_days_ago: float | None) -> Job:
    now = utcnow()
    finished = None if finished_days_ago is None else now - timedelta(days=finished_days_ago)
    return Job(
        kind="export",
        organisation="acme",
        status=status,
        payload={},
        max_attempts=3,
        created_by="operator:tester",
        finished_at=finished,
    )


def _plan(status: str, *, expires_in_hours: float, updated_days_ago: float) -> Plan:
    now = utcnow()
    return Plan(
        job_id=uuid.uuid4(),
        organisation="acme",
        bundle_digest=DIGEST,
        upload="upload:" + uuid.uuid4().hex,
        origin="http://registry.test",
        strategy="fail",
        overrides={},
        plan={},
        target_state={},
        status=status,
        expires_at=now + timedelta(hours=expires_in_hours),
        created_by="operator:tester",
        updated_at=now - timedelta(days=updated_days_ago),
    )


async def test_retention_removes_what_is_past_its_time_and_keeps_the_rest(state):
    days = state.settings.retention_days
    jobs = {
        "old-succeeded": _job("succeeded", days + 1),
        "old-failed": _job("failed", days + 1),
        "recent": _job("succeeded", 1),
        "queued": _job("queued", None),
    }
    plans = {
        "open-expired": _plan("planned", expires_in_hours=-1, updated_days_ago=0),
        "open": _plan("planned", expires_in_hours=5, updated_days_ago=0),
        "old-applied": _plan("applied", expires_in_hours=-100, updated_days_ago=days + 1),
        "old-stale": _plan("stale", expires_in_hours=-100, updated_days_ago=days + 1),
        "recent-rejected": _plan("rejected", expires_in_hours=-1, updated_days_ago=1),
    }
    async with state.db.session() as session:
        session.add_all([*jobs.values(), *plans.values()])
        await state.store.put(session, new_bundle("sha256:" + "1" * 64, days=-1))
        await state.store.put(session, new_bundle("sha256:" + "2" * 64, days=1))
    ids = {name: row.id for name, row in {**jobs, **plans}.items()}

    async with state.db.session() as session:
        removed = await prune(session, state)
    assert removed == {"bundles": 1, "jobs": 2, "plans_expired": 1, "plans": 2}

    async with state.db.session(write=False) as session:
        left_jobs = set((await session.scalars(select(Job.id))).all())
        left_plans = {row.id: row.status for row in (await session.scalars(select(Plan))).all()}
        left_bundles = set((await session.scalars(select(StoredBundle.digest))).all())
    assert left_jobs == {ids["recent"], ids["queued"]}
    assert left_plans == {
        ids["open-expired"]: "expired",
        ids["open"]: "planned",
        ids["recent-rejected"]: "rejected",
    }
    assert left_bundles == {"sha256:" + "2" * 64}
    async with state.db.session() as session:
        assert await prune(session, state) == {"bundles": 0, "jobs": 0, "plans_expired": 0, "plans": 0}
