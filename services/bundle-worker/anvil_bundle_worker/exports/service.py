"""Exports: queue an export job; the job reads the registry's snapshot, builds and signs the
bundle, and stores it."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.db import utcnow
from anvil_wire import digest_of
from anvil_wire.bundles import BundleError, assemble_manifest, write_bundle

from .. import __version__, queue
from ..auth import Principal
from ..bundles.errors import BundleTooLarge, bundle_problem
from ..jobs.errors import registry_problem
from ..jobs.runtime import JobFailed, JobOutcome
from ..models import Job
from ..registry_client import RegistryError, SnapshotAnswer, SnapshotRequest
from ..state import WorkerState
from ..storage import NewBundle
from .schemas import ExportCreate

__all__ = ["create_export", "run_export", "single_project", "manifest_summary", "SOFTWARE"]

SOFTWARE = f"anvil-bundle-worker/{__version__}"


async def create_export(
    session: AsyncSession,
    principal: Principal,
    *,
    state: WorkerState,
    data: ExportCreate,
    idempotency_key: str | None,
) -> tuple[Job, bool]:
    """Queue an export of ``data.selection``; the same Idempotency-Key and body give the same job."""
    principal.ensure_org(data.organisation)
    projects = data.selection.projects()
    if principal.project is not None:
        if len(projects) != 1:
            principal.ensure_project(None, what="export more than its project")
        principal.ensure_project(next(iter(projects)), what="export another project")
    if data.environments:
        principal.ensure_project_wide("export every environment of a project")
    payload = data.model_dump(mode="json", exclude={"organisation"})
    return await queue.enqueue(
        session,
        kind="export",
        organisation=data.organisation,
        project=principal.project,
        payload=payload,
        created_by=principal.actor,
        max_attempts=state.settings.max_attempts,
        idempotency_key=idempotency_key,
        request_hash=digest_of({"kind": "export", **data.model_dump(mode="json")}),
    )


async def run_export(lease: queue.Lease, state: WorkerState) -> JobOutcome:
    """The export job: registry snapshot -> manifest -> signed bundle -> store."""
    request: SnapshotRequest = {
        "selection": lease.payload["selection"],
        "history": lease.payload["history"],
        "environments": lease.payload["environments"],
    }
    try:
        snapshot = await state.registry.read_snapshot(lease.organisation, request, project=lease.project)
    except RegistryError as exc:
        raise JobFailed(registry_problem(exc), retryable=exc.retryable) from exc
    exporter = {"instance": state.settings.issuer, "software": SOFTWARE}
    # Compressing and hashing is CPU work: off the event loop, so the lease heartbeat keeps beating.
    data, digest, manifest = await asyncio.to_thread(_build, snapshot, exporter, state)
    if len(data) > state.store.max_bytes:
        raise JobFailed(
            BundleTooLarge(f"the bundle is {len(data)} bytes; the limit is {state.store.max_bytes} bytes")
        )
    bundle = NewBundle(
        digest=digest,
        data=data,
        kind="export",
        organisation=lease.organisation,
        project=single_project(manifest),
        created_by=lease.created_by,
        expires_at=utcnow() + timedelta(days=state.settings.retention_days),
        manifest=manifest_summary(manifest),
    )

    async def persist(session: AsyncSession) -> None:
        await state.store.put(session, bundle)

    return JobOutcome(result={"bundle": digest, "size": len(data)}, persist=persist)


def _build(
    snapshot: SnapshotAnswer, exporter: dict[str, str], state: WorkerState
) -> tuple[bytes, str, dict[str, Any]]:
    try:
        # plain: the client's parser saw every value in the answer (so every content) is plain.
        manifest, contents = assemble_manifest(
            snapshot.body, exporter=exporter, plain=snapshot.plain, texts=snapshot.texts
        )
        written = write_bundle(manifest, contents, state.keyset.active)
    except BundleError as exc:
        raise JobFailed(bundle_problem(exc)) from exc
    return written.data, written.digest, manifest


def single_project(manifest: dict[str, Any]) -> str | None:
    """The project a bundle is confined to (a project-limited token may download it), if one."""
    slugs = {p.get("slug") for p in manifest.get("projects", [])}
    return str(slugs.pop()) if len(slugs) == 1 else None


def manifest_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """What a listing shows of a bundle without opening it."""
    projects = manifest.get("projects", [])
    return {
        "exporter": manifest.get("exporter"),
        "selection": manifest.get("selection"),
        "options": manifest.get("options"),
        "organisation": manifest.get("organisation"),
        "projects": [p.get("slug") for p in projects],
        "prompts": sum(len(p.get("prompts", [])) for p in projects),
        "objects": len(manifest.get("objects", [])),
    }
