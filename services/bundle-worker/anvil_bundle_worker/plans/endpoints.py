from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from anvil_common.db import utcnow

from ..auth import Importer
from ..deps import Session, State
from . import service
from .schemas import PlanPublic

__all__ = ["router"]

router = APIRouter(tags=["plans"])


@router.get("/plans/{plan_id}", operation_id="get_plan")
async def get_plan(plan_id: uuid.UUID, session: Session, principal: Importer) -> PlanPublic:
    """An import plan: per object what applying it would do, and its status."""
    return PlanPublic.of(await service.get_plan(session, principal, plan_id), now=utcnow())


@router.post("/plans/{plan_id}/apply", operation_id="apply_plan")
async def apply_plan(plan_id: uuid.UUID, state: State, principal: Importer, response: Response) -> PlanPublic:
    """Apply a plan in one registry transaction; 409 import-target-changed if the target moved."""
    row, replayed = await service.apply_plan(state, principal, plan_id)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return PlanPublic.of(row, now=utcnow())


@router.post("/plans/{plan_id}/reject", operation_id="reject_plan")
async def reject_plan(
    plan_id: uuid.UUID, session: Session, principal: Importer, response: Response
) -> PlanPublic:
    """Reject a plan: it can never be applied."""
    row, replayed = await service.reject_plan(session, principal, plan_id)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return PlanPublic.of(row, now=utcnow())
