"""Imports: take an uploaded bundle and queue its import job; the job verifies the bundle, reads
the target's state from the registry and stores an import plan (applied later: plans/)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import ClientDisconnect

from anvil_common.db import utcnow
from anvil_common.problems import BadRequest, UnsupportedMediaType, ValidationFailed
from anvil_wire import digest_of
from anvil_wire.bundles import Bundle, BundleError, Limits, TrustedKeys, read_bundle

from .. import queue
from ..auth import Principal
from ..bundles.errors import BundleTooLarge, bundle_problem
from ..jobs.errors import RegistryFailed, registry_problem
from ..jobs.runtime import JobFailed, JobOutcome, Persist
from ..models import Job, Plan, StoredBundle
from ..planning import PlanError, plan_import
from ..registry_client import RegistryError
from ..state import WorkerState
from ..storage import NewBundle
from ..trust import verify_trusted
from .errors import ImportOutsideProject, ImportPlanInvalid, UploadGone
from .schemas import UPLOAD_MEDIA_TYPES
from .target import StateIncomplete, read_target_contents, read_target_state

__all__ = [
    "create_import",
    "run_import",
    "read_upload",
    "verify_bundle",
    "verify_upload",
    "check_bundle",
    "plan_bundle",
    "upload_key",
    "upload_expiry",
]


def upload_key(job_id: uuid.UUID) -> str:
    """The store key of an import job's upload: its own row, whatever its bytes."""
    return f"upload:{job_id.hex}"


def upload_expiry(state: WorkerState) -> timedelta:
    """How long an upload is kept: long enough for its plan to be applied, and for retention."""
    settings = state.settings
    return max(timedelta(days=settings.retention_days), timedelta(hours=settings.plan_ttl_hours))


async def read_upload(
    chunks: AsyncIterator[bytes], *, content_type: str | None, content_length: str | None, max_bytes: int
) -> bytes:
    """The request body, refused (413) as soon as it passes ``max_bytes``, however it is sent."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media and media not in UPLOAD_MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"send the bundle file as application/vnd.anvil.bundle (or application/octet-stream), not {media}"
        )
    if content_length is not None and content_length.isdigit() and int(content_length) > max_bytes:
        raise BundleTooLarge(f"the bundle is {content_length} bytes; the limit is {max_bytes} bytes")
    body = bytearray()
    try:
        async for chunk in chunks:
            body += chunk
            if len(body) > max_bytes:
                raise BundleTooLarge(f"the bundle is larger than the limit of {max_bytes} bytes")
    except ClientDisconnect:
        raise BadRequest("the upload was interrupted before the whole bundle arrived") from None
    if not body:
        raise ValidationFailed("the request body is empty: send the bundle file")
    return bytes(body)


async def create_import(
    session: AsyncSession,
    principal: Principal,
    *,
    state: WorkerState,
    organisation: str,
    strategy: str,
    overrides: dict[str, str],
    data: bytes,
    idempotency_key: str | None,
) -> tuple[Job, bool]:
    """Store an uploaded bundle and queue its import job (same Idempotency-Key and upload: same job)."""
    sha256 = "sha256:" + hashlib.sha256(data).hexdigest()
    request = {"organisation": organisation, "strategy": strategy, "overrides": overrides, "upload": sha256}
    job, created = await queue.enqueue(
        session,
        kind="import",
        organisation=organisation,
        project=principal.project,
        payload={
            "strategy": strategy,
            "overrides": overrides,
            "sha256": sha256,
            "size": len(data),
            # Only a bundle a peer pushes (with the peer token it was issued) may be applied by
            # that peer's auto_apply policy; an operator's upload (`anvil import`) is always held.
            "from_peer": principal.claims.kind == "peer",
        },
        created_by=principal.actor,
        max_attempts=state.settings.max_attempts,
        idempotency_key=idempotency_key,
        request_hash=digest_of({"kind": "import", **request}),
    )
    if created:
        # The job row exists (flushed) but no worker sees it before this transaction commits,
        # together with the upload it reads.
        job.payload = {**job.payload, "upload": upload_key(job.id)}
        await state.store.put(
            session,
            NewBundle(
                digest=upload_key(job.id),
                data=data,
                kind="import",
                organisation=organisation,
                project=principal.project,
                created_by=principal.actor,
                expires_at=utcnow() + upload_expiry(state),
            ),
        )
        await session.flush()
    return job, created


def verify_bundle(data: bytes, state: WorkerState, trust: TrustedKeys | None = None) -> Bundle:
    """``read_bundle`` with this instance's limits, against ``trust`` (default: our own keys)."""
    limits = Limits(max_compressed=state.settings.max_bundle_bytes)
    return read_bundle(data, trust=trust if trust is not None else state.trust, limits=limits)


async def verify_upload(data: bytes, state: WorkerState, organisation: str) -> Bundle:
    """Verify a bundle imported into ``organisation``: sealed by us or by one of its peers."""
    # Decompressing, hashing and verifying is CPU work: verify_trusted runs it off the loop, so
    # a job's heartbeat keeps beating.
    return await verify_trusted(state, organisation, lambda trust: verify_bundle(data, state, trust))


async def run_import(lease: queue.Lease, state: WorkerState) -> JobOutcome:
    """The import job: verify the upload, read the target (B2), plan, store the plan."""
    key = upload_key(lease.job_id)
    # Every refusal removes the upload with the failure record: nothing is left but the job.
    cleanup = _forget_upload(state, key)
    async with state.db.session(write=False) as session:
        upload = await state.store.get(session, key)
    if upload is None:
        raise JobFailed(UploadGone(f"the upload of job {lease.job_id} is gone (retention)"))
    bundle = await check_bundle(lease, state, upload.data, cleanup)
    outcome, _ = await plan_bundle(lease, state, bundle, upload=key, cleanup=cleanup)
    return outcome


async def check_bundle(
    lease: queue.Lease, state: WorkerState, data: bytes, cleanup: Persist | None
) -> Bundle:
    """A job's bundle, verified for its organisation and within the caller's project limit."""
    try:
        bundle = await verify_upload(data, state, lease.organisation)
    except BundleError as exc:
        raise JobFailed(bundle_problem(exc), cleanup=cleanup) from exc
    if lease.project is not None:
        outside = sorted({p["slug"] for p in bundle.manifest["projects"]} - {lease.project})
        if outside:
            problem = ImportOutsideProject(
                f"this token is limited to project {lease.project!r}; "
                f"the bundle also holds {', '.join(outside)}"
            )
            raise JobFailed(problem, cleanup=cleanup)
    return bundle


async def plan_bundle(
    lease: queue.Lease,
    state: WorkerState,
    bundle: Bundle,
    *,
    upload: str,
    cleanup: Persist | None,
    store: NewBundle | None = None,
) -> tuple[JobOutcome, Plan]:
    """Read the target (B2), plan a verified bundle, and apply it at once when the organisation's
    policy for the bundle's peer says so; the outcome stores the plan (and ``store``: the upload,
    for a bundle that was not uploaded)."""
    from ..peers.policy import apply_by_policy  # the policy applies plans: plans/ imports this module

    strategy, overrides = lease.payload["strategy"], dict(lease.payload["overrides"])
    try:
        target = await read_target_state(
            state.registry,
            bundle.manifest,
            organisation=lease.organisation,
            limit=lease.project,
            strategy=strategy,
            overrides=overrides,
        )
        target_contents = await read_target_contents(
            state.registry, bundle.manifest, target, organisation=lease.organisation, limit=lease.project
        )
        plan = await asyncio.to_thread(
            plan_import,
            bundle.manifest,
            target,
            strategy=strategy,
            overrides=overrides,
            contents=bundle.contents,
            target_contents=target_contents,
            bundle=bundle.digest,
        )
    except RegistryError as exc:
        raise JobFailed(registry_problem(exc), retryable=exc.retryable, cleanup=cleanup) from exc
    except StateIncomplete as exc:
        raise JobFailed(RegistryFailed(str(exc)), cleanup=cleanup) from exc
    except PlanError as exc:
        raise JobFailed(ImportPlanInvalid(str(exc)), cleanup=cleanup) from exc
    row = _plan_row(lease, state, bundle, plan.to_json(), target, upload=upload)
    await apply_by_policy(state, lease, bundle, plan, row, cleanup=cleanup)

    async def persist(session: AsyncSession) -> None:
        if store is not None:
            await state.store.put(session, store)
        session.add(row)
        await _keep_upload(session, upload, until=row.expires_at)

    return JobOutcome(result={"plan": str(row.id)}, persist=persist), row


def _plan_row(
    lease: queue.Lease,
    state: WorkerState,
    bundle: Bundle,
    plan: dict[str, Any],
    target: dict[str, Any],
    *,
    upload: str,
) -> Plan:
    now = utcnow()
    return Plan(
        id=uuid.uuid4(),
        job_id=lease.job_id,
        organisation=lease.organisation,
        project=lease.project,
        bundle_digest=bundle.digest,
        upload=upload,
        origin=bundle.manifest["exporter"]["instance"],
        strategy=plan["strategy"],
        overrides=plan["overrides"],
        plan=plan,
        target_state=target,
        status="planned",
        expires_at=now + timedelta(hours=state.settings.plan_ttl_hours),
        created_at=now,
        updated_at=now,
        created_by=lease.created_by,
    )


async def _keep_upload(session: AsyncSession, key: str, *, until: datetime) -> None:
    # Applying needs the bundle's contents: the upload outlives the plan that reads it.
    await session.execute(
        update(StoredBundle)
        .where(StoredBundle.digest == key, StoredBundle.expires_at < until)
        .values(expires_at=until)
    )


def _forget_upload(state: WorkerState, key: str) -> Persist:
    async def cleanup(session: AsyncSession) -> None:
        await state.store.delete(session, key)

    return cleanup
