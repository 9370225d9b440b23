"""Push and pull jobs: bundles between this instance and a peer, over the peer's worker API.

push: export here (the export job's code) -> upload to the peer's ``/v1/imports`` -> follow the
peer's import job until it has a plan -> ``{bundle, remote: {job, plan, status, applied}}``.

pull: the peer's ``/v1/exports`` -> follow -> download -> verify and plan here exactly as an
upload is (imports/service.py, the incoming policy included) -> ``{bundle, plan, status}``.

Both send an ``Idempotency-Key`` derived from the job id, so a retried attempt finds the
peer's job of the previous attempt instead of making another one. The peer's problems fail the
job with the peer's type and detail; an unreachable or failing peer (5xx, 429) is retried.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from anvil_common.db import utcnow
from anvil_common.problems import Problem

from .. import queue
from ..bundles.errors import BundleUntrustedKey
from ..exports.service import run_export
from ..imports.service import check_bundle, plan_bundle, upload_expiry, upload_key
from ..jobs.runtime import JobFailed, JobOutcome
from ..models import Peer
from ..state import WorkerState
from ..storage import NewBundle
from ..trust import normal_issuer
from .client import PeerClient, retryable
from .errors import PeerNotFound, PeerRefused

__all__ = ["run_push", "run_pull"]


async def _peer(lease: queue.Lease, state: WorkerState) -> tuple[Peer, PeerClient]:
    async with state.db.session(write=False) as session:
        peer = await session.scalar(select(Peer).where(Peer.id == uuid.UUID(lease.payload["peer"])))
    if peer is None:
        name = lease.payload.get("peer_name")
        raise JobFailed(PeerNotFound(f"peer {name} of organisation {lease.organisation!r} was removed"))
    settings = state.settings
    try:
        client = PeerClient(
            peer.name,
            peer.url,
            peer.token,
            timeout=settings.peer_timeout_seconds,
            allow_insecure=settings.allow_insecure_peers,
            poll_seconds=settings.peer_poll_seconds,
            wait_seconds=settings.peer_wait_seconds,
        )
    except Problem as exc:
        raise JobFailed(exc) from exc
    return peer, client


def _failed(exc: Problem) -> JobFailed:
    return JobFailed(exc, retryable=retryable(exc))


async def _exported(lease: queue.Lease, state: WorkerState) -> tuple[str, bytes]:
    """This job's selection exported here (the export job's code), stored, and its bytes."""
    outcome = await run_export(lease, state)
    digest = str(outcome.result["bundle"])
    # Stored now (content-addressed: an export of the same content keeps the first file), so a
    # retried push sends the very bytes it sent before and the peer's Idempotency-Key matches.
    async with state.db.session() as session:
        await outcome.persist(session)
        stored = await state.store.get(session, digest)
    if stored is None:  # written just above, in the same transaction
        raise RuntimeError(f"the exported bundle {digest} is not in the store")
    return digest, stored.data


async def run_push(lease: queue.Lease, state: WorkerState) -> JobOutcome:
    """The push job: export here, import on the peer, report the peer's plan."""
    peer, client = await _peer(lease, state)
    payload = lease.payload
    async with client:
        digest, data = await _exported(lease, state)
        try:
            job = await client.create_import(
                data,
                organisation=peer.remote_organisation,
                strategy=payload["strategy"],
                overrides=dict(payload["overrides"]),
                key=f"push:{lease.job_id.hex}:{digest}",
            )
            job = await client.follow_job(job)
            plan_id = str((job.get("result") or {}).get("plan") or "")
            if not plan_id:
                raise PeerRefused(peer.name, 502, {"detail": f"its import job {job.get('id')} made no plan"})
            plan = await client.get_plan(plan_id)
        except Problem as exc:
            raise _failed(exc) from exc
    remote: dict[str, Any] = {
        "job": job.get("id"),
        "plan": plan_id,
        "status": plan.get("status"),
        "applied": plan.get("status") == "applied",
        "applicable": plan.get("applicable"),
        "changes": plan.get("changes"),
    }
    return JobOutcome(result={"bundle": digest, "peer": peer.name, "remote": remote})


async def run_pull(lease: queue.Lease, state: WorkerState) -> JobOutcome:
    """The pull job: export on the peer, download, import here as an upload is imported."""
    peer, client = await _peer(lease, state)
    payload = lease.payload
    body = {
        "organisation": peer.remote_organisation,
        "selection": payload["selection"],
        "history": payload["history"],
        "environments": payload["environments"],
    }
    async with client:
        try:
            job = await client.create_export(body, key=f"pull:{lease.job_id.hex}")
            job = await client.follow_job(job)
            digest = str((job.get("result") or {}).get("bundle") or "")
            if not digest:
                raise PeerRefused(
                    peer.name, 502, {"detail": f"its export job {job.get('id')} made no bundle"}
                )
            data = await client.download_bundle(digest, max_bytes=state.settings.max_bundle_bytes)
        except Problem as exc:
            raise _failed(exc) from exc
    bundle = await check_bundle(lease, state, data, None)
    if bundle.digest != digest:
        raise JobFailed(
            PeerRefused(peer.name, 502, {"detail": f"it sent bundle {bundle.digest} for {digest}"})
        )
    sealed_by = normal_issuer(bundle.manifest["exporter"]["instance"])
    if sealed_by != peer.issuer:
        raise JobFailed(
            BundleUntrustedKey(f"peer {peer.name} ({peer.issuer}) sent a bundle exported by {sealed_by}")
        )
    key = upload_key(lease.job_id)
    upload = NewBundle(
        digest=key,
        data=data,
        kind="import",
        organisation=lease.organisation,
        project=lease.project,
        created_by=lease.created_by,
        expires_at=utcnow() + upload_expiry(state),
    )
    outcome, row = await plan_bundle(lease, state, bundle, upload=key, cleanup=None, store=upload)
    result = {"bundle": digest, "peer": peer.name, "plan": str(row.id), "status": row.status}
    return JobOutcome(result=result, persist=outcome.persist)
