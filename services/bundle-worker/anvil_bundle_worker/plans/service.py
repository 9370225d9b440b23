"""Import plans: read, apply (through the registry's one-transaction import, B3) and reject.

Applying calls the registry over HTTP, so no database transaction is held open across the
call: the registry's import is idempotent on ``import_id`` (the plan id: the same body again
replays the first result), which makes two concurrent applies of one plan, or a retry after a
crash between the registry's commit and ours, safe. Whatever the registry committed is what
the plan records, even if the plan was rejected or expired while the apply was in flight.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.db import utcnow
from anvil_common.problems import Problem
from anvil_wire.bundles import Bundle, BundleError

from ..auth import Principal
from ..bundles.errors import bundle_problem
from ..imports.errors import ImportPlanInvalid, UploadGone
from ..imports.service import verify_upload
from ..jobs.errors import registry_problem
from ..models import Plan
from ..planning import Plan as PlanDocument
from ..planning import PlanError, plan_from_json, plan_to_apply
from ..registry_client import ApplyResult, RegistryError, RegistryProblem
from ..state import WorkerState
from .errors import (
    ImportTargetChanged,
    PlanAlreadyApplied,
    PlanExpired,
    PlanNotApplicable,
    PlanNotFound,
    PlanNotOpen,
)

__all__ = ["get_plan", "apply_plan", "reject_plan", "apply_body", "applied_values"]


async def get_plan(
    session: AsyncSession, principal: Principal, plan_id: uuid.UUID, *, lock: bool = False
) -> Plan:
    """A plan the caller may see (its organisation, and its project limit)."""
    stmt = select(Plan).where(Plan.id == plan_id)
    if lock and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = await session.scalar(stmt)
    if row is None or not principal.can_see(row.organisation, row.project):
        raise PlanNotFound(f"plan {plan_id} not found")
    return row


def _ensure_open(row: Plan) -> None:
    if row.status == "expired":
        raise PlanExpired(f"plan {row.id} expired at {row.expires_at.isoformat()}; upload the bundle again")
    if row.status == "stale":
        raise PlanNotOpen(
            f"plan {row.id} is stale: the target changed since it was made; upload the bundle again "
            "to re-plan",
            status=row.status,
        )
    if row.status != "planned":
        raise PlanNotOpen(f"plan {row.id} is {row.status}; it can no longer be applied", status=row.status)


async def apply_plan(state: WorkerState, principal: Principal, plan_id: uuid.UUID) -> tuple[Plan, bool]:
    """Apply a plan through the registry; returns (plan, replayed). Applied again: the first result."""
    principal.ensure_project_wide("apply imports")
    row = await _applicable(state, principal, plan_id)
    if row.status == "applied":
        return row, True
    body = await _apply_body(state, row, plan_from_json(row.plan))
    applied = await _send(state, row, body)
    async with state.db.session() as session:
        await _record_applied(session, row.id, applied.body, actor=principal.actor)
        row = await get_plan(session, principal, plan_id)
    return row, not applied.created


async def _applicable(state: WorkerState, principal: Principal, plan_id: uuid.UUID) -> Plan:
    """The plan, if it is applied already or may be applied now; else the problem saying why."""
    now = utcnow()
    async with state.db.session() as session:
        row = await get_plan(session, principal, plan_id, lock=True)
        if row.status == "applied":
            return row
        if row.status == "planned" and row.expires_at <= now:
            # Recorded (committed) before the refusal below, so GET and retention agree.
            row.status, row.updated_at = "expired", now
    _ensure_open(row)
    reasons = row.plan.get("reasons") or []
    if not row.plan.get("applicable", False):
        raise PlanNotApplicable(
            "the plan is blocked by: " + "; ".join(reasons) + ". Upload the bundle again with "
            "another strategy or per-prompt overrides.",
            blocked=list(reasons),
        )
    return row


async def _send(state: WorkerState, row: Plan, body: dict[str, Any]) -> ApplyResult:
    """B3; a moved target makes the plan stale, a body the registry refuses makes it failed."""
    try:
        return await state.registry.apply_import(row.organisation, body, project=row.project)
    except RegistryProblem as exc:
        if exc.code == "import-target-changed":
            stale = ImportTargetChanged(
                "the target changed since this plan was made; nothing was written. Upload the bundle "
                "again to make a new plan.",
                registry=exc.problem.get("detail"),
            )
            await _close(state, row.id, "stale", stale)
            raise stale from exc
        problem = registry_problem(exc)
        if exc.status == 422:
            await _close(state, row.id, "failed", problem)  # the registry will never take this body
        raise problem from exc
    except RegistryError as exc:
        raise registry_problem(exc) from exc


async def _apply_body(state: WorkerState, row: Plan, plan: PlanDocument) -> dict[str, Any]:
    async with state.db.session(write=False) as session:
        upload = await state.store.get(session, row.upload)
    if upload is None:
        raise UploadGone(f"the bundle plan {row.id} was made from is gone; upload it again")
    try:
        # Verified again, with the organisation's trust as it is now (a peer removed since the
        # plan was made makes it refuse).
        bundle = await verify_upload(upload.data, state, row.organisation)
    except BundleError as exc:
        raise bundle_problem(exc) from exc
    if bundle.digest != row.bundle_digest:
        raise ImportPlanInvalid(f"the stored upload is bundle {bundle.digest}, not {row.bundle_digest}")
    return await apply_body(plan, bundle, plan_id=row.id)


async def apply_body(plan: PlanDocument, bundle: Bundle, *, plan_id: uuid.UUID) -> dict[str, Any]:
    """The registry's import body (B3) for a plan of ``bundle``: ``import_id`` is the plan id."""
    try:
        body: dict[str, Any] = await asyncio.to_thread(
            plan_to_apply, plan, bundle.manifest, bundle.contents, import_id=str(plan_id)
        )
    except PlanError as exc:
        raise ImportPlanInvalid(str(exc)) from exc
    return body


def applied_values(result: dict[str, Any], *, actor: str) -> dict[str, Any]:
    """What an applied plan records: the registry's answer, who applied it and when."""
    now = utcnow()
    return {
        "status": "applied",
        "result": result,
        "error": None,
        "applied_at": now,
        "applied_by": actor,
        "updated_at": now,
    }


async def _close(state: WorkerState, plan_id: uuid.UUID, status: str, problem: Problem) -> None:
    async with state.db.session() as session:
        now = utcnow()
        await session.execute(
            update(Plan)
            .where(Plan.id == plan_id, Plan.status == "planned")
            .values(status=status, error=problem.to_json(f"/v1/plans/{plan_id}"), updated_at=now)
        )


async def _record_applied(
    session: AsyncSession, plan_id: uuid.UUID, result: dict[str, Any], *, actor: str
) -> None:
    # The registry committed: that is the truth, whatever the plan's status meanwhile; a second
    # apply (a replay) keeps the first record.
    await session.execute(
        update(Plan)
        .where(Plan.id == plan_id, Plan.status != "applied")
        .values(**applied_values(result, actor=actor))
    )


async def reject_plan(session: AsyncSession, principal: Principal, plan_id: uuid.UUID) -> tuple[Plan, bool]:
    """Reject a plan so it can never be applied; returns (plan, replayed)."""
    row = await get_plan(session, principal, plan_id, lock=True)
    if row.status == "rejected":
        return row, True
    if row.status == "applied":
        raise PlanAlreadyApplied(f"plan {plan_id} was applied at {row.applied_at}; it cannot be rejected")
    if row.status != "planned":
        raise PlanNotOpen(f"plan {plan_id} is {row.status}; there is nothing to reject", status=row.status)
    row.status, row.updated_at = "rejected", utcnow()
    await session.flush()
    return row, False
