from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Response

from anvil_common.pagination import Page, PageParams, page_params
from anvil_wire.prompts import SLUG_PATTERN

from ..auth import Exporter, Importer, PeerAdmin, Principal
from ..deps import Session, State
from ..jobs.schemas import JobPublic
from ..jobs.service import idempotency_key
from . import service
from .schemas import PeerCreate, PeerPublic, PeerTransfer, PeerUpdate

__all__ = ["router", "SCOPE"]

router = APIRouter(tags=["peers"])
SCOPE = "peers:admin"
Slug = Annotated[str, Path(pattern=f"^{SLUG_PATTERN}$")]
Key = Annotated[
    str | None,
    Header(alias="Idempotency-Key", description="Same key and body: the same job (1-200 characters)."),
]


@router.post("/peers", status_code=201, operation_id="create_peer")
async def create_peer(data: PeerCreate, state: State, principal: PeerAdmin, response: Response) -> PeerPublic:
    """Register a peer instance: its keys (given, or fetched from its issuer), URL and token."""
    row = await service.create_peer(state, principal, data)
    response.headers["Location"] = f"/v1/peers/{row.organisation}/{row.name}"
    return PeerPublic.of(row)


@router.get("/peers", operation_id="list_peers")
async def list_peers(
    session: Session,
    principal: PeerAdmin,
    organisation: Annotated[str, Query(pattern=f"^{SLUG_PATTERN}$", description="The organisation.")],
    page: Annotated[PageParams, Depends(page_params)],
) -> Page[PeerPublic]:
    """An organisation's peers, by name (never their tokens)."""
    rows, token = await service.list_peers(session, principal, organisation, page)
    return Page(items=[PeerPublic.of(r) for r in rows], next_page_token=token)


@router.get("/peers/{organisation}/{name}", operation_id="get_peer")
async def get_peer(organisation: Slug, name: Slug, session: Session, principal: PeerAdmin) -> PeerPublic:
    """One peer (never its token)."""
    return PeerPublic.of(await service.get_peer(session, principal, organisation, name))


@router.patch("/peers/{organisation}/{name}", operation_id="update_peer")
async def update_peer(
    organisation: Slug, name: Slug, data: PeerUpdate, session: Session, state: State, principal: PeerAdmin
) -> PeerPublic:
    """Change a peer's URL, remote organisation, token, auto-apply or keys."""
    row = await service.update_peer(
        session, principal, state=state, organisation=organisation, name=name, data=data
    )
    return PeerPublic.of(row)


@router.delete("/peers/{organisation}/{name}", status_code=204, operation_id="delete_peer")
async def delete_peer(organisation: Slug, name: Slug, session: Session, principal: PeerAdmin) -> Response:
    """Remove a peer: its bundles are no longer trusted, its token is forgotten."""
    await service.delete_peer(session, principal, organisation, name)
    return Response(status_code=204)


@router.post("/peers/{organisation}/{name}/refresh-keys", operation_id="refresh_peer_keys")
async def refresh_peer_keys(organisation: Slug, name: Slug, state: State, principal: PeerAdmin) -> PeerPublic:
    """Fetch the peer's JWKS from its issuer again (after it rotated its keys)."""
    return PeerPublic.of(await service.refresh_peer_keys(state, principal, organisation, name))


@router.post("/peers/{organisation}/{name}/push", status_code=202, operation_id="push_to_peer")
async def push_to_peer(
    organisation: Slug,
    name: Slug,
    data: PeerTransfer,
    session: Session,
    state: State,
    principal: PeerAdmin,
    _: Exporter,
    response: Response,
    key: Key = None,
) -> JobPublic:
    """Export a selection and import it on the peer (a job, kind push); poll the job."""
    return await _transfer("push", organisation, name, data, session, state, principal, response, key)


@router.post("/peers/{organisation}/{name}/pull", status_code=202, operation_id="pull_from_peer")
async def pull_from_peer(
    organisation: Slug,
    name: Slug,
    data: PeerTransfer,
    session: Session,
    state: State,
    principal: PeerAdmin,
    _: Importer,
    response: Response,
    key: Key = None,
) -> JobPublic:
    """Export a selection on the peer and import it here (a job, kind pull); poll the job."""
    return await _transfer("pull", organisation, name, data, session, state, principal, response, key)


async def _transfer(
    kind: str,
    organisation: str,
    name: str,
    data: PeerTransfer,
    session: Session,
    state: State,
    principal: Principal,
    response: Response,
    key: str | None,
) -> JobPublic:
    job, created = await service.create_transfer(
        session,
        principal,
        state=state,
        kind=kind,
        organisation=organisation,
        name=name,
        data=data,
        idempotency_key=idempotency_key(key),
    )
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return JobPublic.of(job)
