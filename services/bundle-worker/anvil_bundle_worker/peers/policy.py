"""The incoming policy: a plan of a bundle sealed by an ``auto_apply`` peer of the organisation,
pushed by that peer (with its peer token) or pulled from it, is applied right after planning
when it is applicable; any other plan (an operator's upload included) is held (``planned``) for
approval (``POST /v1/plans/{id}/apply``) or rejection, and expires after ``plan_ttl_hours``."""

from __future__ import annotations

import logging

from sqlalchemy import select

from anvil_wire.bundles import Bundle

from .. import queue
from ..jobs.errors import registry_problem
from ..jobs.runtime import JobFailed, Persist
from ..models import Peer, Plan
from ..planning import Plan as PlanDocument
from ..plans.errors import ImportTargetChanged
from ..plans.service import applied_values, apply_body
from ..registry_client import RegistryError, RegistryProblem
from ..state import WorkerState
from ..trust import normal_issuer

__all__ = ["auto_apply_peer", "apply_by_policy"]

log = logging.getLogger("anvil.bundle_worker.peers")


async def auto_apply_peer(state: WorkerState, organisation: str, issuer: str) -> Peer | None:
    """The organisation's peer for ``issuer`` if its bundles are applied without approval."""
    async with state.db.session(write=False) as session:
        peer = await session.scalar(
            select(Peer).where(Peer.organisation == organisation, Peer.issuer == normal_issuer(issuer))
        )
    return peer if peer is not None and peer.auto_apply else None


async def apply_by_policy(
    state: WorkerState,
    lease: queue.Lease,
    bundle: Bundle,
    plan: PlanDocument,
    row: Plan,
    *,
    cleanup: Persist | None,
) -> None:
    """Apply ``row`` (not stored yet) through the registry if the policy says so, recording the
    result on it; otherwise leave it held.

    The registry's import is idempotent on the plan id, and a retried job makes a new plan of
    the target as it then is: an apply whose job is lost is never applied twice. A target that
    moved between planning and applying retries the job (it plans again); a body the registry
    refuses (422) records the plan ``failed``.
    """
    if not plan.applicable:
        return
    if lease.kind == "import" and not lease.payload.get("from_peer"):
        return  # an operator's upload: held for review, whoever sealed the bundle
    peer = await auto_apply_peer(state, lease.organisation, row.origin)
    if peer is None:
        return
    body = await apply_body(plan, bundle, plan_id=row.id)
    try:
        applied = await state.registry.apply_import(lease.organisation, body, project=lease.project)
    except RegistryProblem as exc:
        if exc.code == "import-target-changed":
            moved = ImportTargetChanged(
                "the target changed between planning and applying; the job plans again",
                registry=exc.problem.get("detail"),
            )
            raise JobFailed(moved, retryable=True, cleanup=cleanup) from exc
        if exc.retryable:
            raise JobFailed(registry_problem(exc), retryable=True, cleanup=cleanup) from exc
        row.status, row.error = "failed", registry_problem(exc).to_json(f"/v1/plans/{row.id}")
        log.info("plan %s of peer %s was refused by the registry: %s", row.id, peer.name, exc)
        return
    except RegistryError as exc:
        raise JobFailed(registry_problem(exc), retryable=True, cleanup=cleanup) from exc
    for column, value in applied_values(applied.body, actor=f"auto-apply:{peer.name}").items():
        setattr(row, column, value)
    log.info("plan %s applied by the auto-apply policy of peer %s", row.id, peer.name)
