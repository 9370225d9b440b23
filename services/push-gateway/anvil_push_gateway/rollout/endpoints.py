"""An environment's rollout policy over HTTP: ``GET`` and ``PUT
/v1/orgs/{org}/projects/{project}/environments/{environment}/rollout-policy``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response

from ..auth import Principal, require
from ..deps import Session, State
from . import service
from .schemas import RolloutPolicyPublic, RolloutPolicyUpdate

__all__ = ["router"]

router = APIRouter(tags=["rollout"])

PATH = "/orgs/{org}/projects/{project}/environments/{environment}/rollout-policy"
FleetReader = Annotated[Principal, Depends(require("fleet:read"))]
Publisher = Annotated[Principal, Depends(require("revisions:publish"))]
IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", description="Optional: the policy's current ETag (412 when it changed)."),
]


@router.get(PATH, operation_id="get_rollout_policy")
async def get_rollout_policy(
    org: str,
    project: str,
    environment: str,
    session: Session,
    state: State,
    response: Response,
    principal: FleetReader,
) -> RolloutPolicyPublic:
    """The environment's rollout policy: when a revision fails, and whether it is rolled back."""
    row = await service.get_rollout_policy(session, state, principal, (org, project, environment))
    response.headers["ETag"] = service.policy_etag(row)
    return RolloutPolicyPublic.of(row)


@router.put(PATH, operation_id="put_rollout_policy", responses={201: {"description": "Policy created"}})
async def put_rollout_policy(
    org: str,
    project: str,
    environment: str,
    data: RolloutPolicyUpdate,
    session: Session,
    state: State,
    response: Response,
    principal: Publisher,
    if_match: IfMatch = None,
) -> RolloutPolicyPublic:
    """Set the environment's rollout policy (201 when it had none, else 200)."""
    row, created = await service.put_rollout_policy(
        session, state, principal, (org, project, environment), data, if_match=if_match
    )
    response.status_code = 201 if created else 200
    response.headers["ETag"] = service.policy_etag(row)
    return RolloutPolicyPublic.of(row)
