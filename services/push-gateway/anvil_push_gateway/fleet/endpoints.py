"""The fleet view over HTTP: ``GET /v1/fleet``, ``GET /v1/fleet/summary`` and the HTTP clients'
``POST /v1/acks`` (docs/push-protocol.md section 7)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from anvil_common.pagination import Page, PageParams, page_params
from anvil_wire.prompts import SLUG_PATTERN

from ..auth import Principal, require
from ..deps import Session, State
from . import service
from .repository import FleetFilter
from .schemas import AckReport, ClientStatus, FleetClientPublic, FleetSummary, RevisionNumber

__all__ = ["router"]

router = APIRouter(tags=["fleet"])

FleetReader = Annotated[Principal, Depends(require("fleet:read"))]
ConfigReader = Annotated[Principal, Depends(require("config:read"))]
_SLUG = f"^{SLUG_PATTERN}$"
Organisation = Annotated[
    str | None,
    Query(pattern=_SLUG, description="Organisation slug (required unless the token is instance-wide)."),
]
Project = Annotated[str | None, Query(pattern=_SLUG, description="Project slug.")]
Environment = Annotated[str | None, Query(pattern=_SLUG, description="Environment name.")]


@router.get("/fleet", operation_id="list_fleet")
async def list_fleet(
    session: Session,
    state: State,
    principal: FleetReader,
    page: Annotated[PageParams, Depends(page_params)],
    organisation: Organisation = None,
    project: Project = None,
    environment: Environment = None,
    revision: Annotated[
        RevisionNumber | None, Query(description="Only clients whose last ack is this revision.")
    ] = None,
    status: Annotated[ClientStatus | None, Query(description="Only clients with this status.")] = None,
) -> Page[FleetClientPublic]:
    """Which client (id, SDK, labels) holds which revision, with its last nack, across every replica."""
    f = FleetFilter(organisation, project, environment, revision, None if status is None else status.value)
    return await service.list_fleet(session, state.fleet, principal, f, page)


@router.get("/fleet/summary", operation_id="fleet_summary")
async def fleet_summary(
    session: Session,
    state: State,
    principal: FleetReader,
    organisation: Organisation = None,
    project: Project = None,
    environment: Environment = None,
) -> FleetSummary:
    """Per environment: clients by status, and the revisions they hold or refused, with counts."""
    f = FleetFilter(organisation, project, environment)
    return await service.fleet_summary(session, state.fleet, principal, f)


@router.post("/acks", status_code=204, operation_id="report_ack", response_class=Response)
async def report_ack(report: AckReport, state: State, principal: ConfigReader) -> Response:
    """An HTTP client reports the revision it applied (ack) or refused (nack), as on the stream."""
    await service.report_ack(state, principal, report)
    return Response(status_code=204)
