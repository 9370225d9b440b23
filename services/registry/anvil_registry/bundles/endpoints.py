"""The bulk endpoints the bundle worker calls (docs/api.md section 7): snapshot, import state, apply."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from ..auth import Principal, require
from ..deps import Session, State
from ..lookup import get_org
from ..state import RegistryState
from .apply import apply_import as apply
from .schemas import ImportCreate, ImportPublic, ImportStateRequest, SnapshotCreate
from .snapshot import read_snapshot as snapshot
from .state import read_import_state as import_state

__all__ = ["router", "IMPORTS_PATH"]

router = APIRouter(tags=["bundles"])
# The one path whose body may exceed max_body_bytes (BodyGuardMiddleware path_limits).
IMPORTS_PATH = r"/v1/orgs/[^/]+/imports"
Exporter = Annotated[Principal, Depends(require("bundles:export"))]
Importer = Annotated[Principal, Depends(require("bundles:import"))]


@asynccontextmanager
async def _consistent_read(state: RegistryState) -> AsyncIterator[AsyncSession]:
    """A read transaction that sees one state throughout, whatever commits meanwhile.

    These are POSTs (their questions are bodies) that only read: on SQLite a deferred
    transaction, which takes no write lock; on Postgres REPEATABLE READ, so the many bulk
    queries of one answer all read the same snapshot.
    """
    async with state.db.session(write=False) as session:
        if state.db.dialect == "postgresql":
            await session.connection(
                execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
            )
        yield session


@router.post("/orgs/{org}/snapshot", operation_id="read_snapshot")
async def read_snapshot(org: str, data: SnapshotCreate, state: State, principal: Exporter) -> Response:
    """What an export carries: the manifest members of docs/bundle-format.md section 4 and every content."""
    async with _consistent_read(state) as session:
        organisation = await get_org(session, principal, org)
        body = await snapshot(session, principal, org=organisation, data=data)
    return Response(body.to_bytes(), media_type="application/json")


@router.post("/orgs/{org}/import-state", operation_id="read_import_state")
async def read_import_state(
    org: str, data: ImportStateRequest, state: State, principal: Importer
) -> dict[str, Any]:
    """The target's projects, prompts (each version's digest), sets and environments a plan compares."""
    async with _consistent_read(state) as session:
        organisation = await get_org(session, principal, org)
        return await import_state(session, principal, org=organisation, data=data)


@router.post(
    "/orgs/{org}/imports",
    status_code=201,
    operation_id="apply_import",
    response_model=ImportPublic,
    responses={
        200: {"description": "This import_id was applied already with the same body: its first result."}
    },
)
async def apply_import(
    org: str, data: ImportCreate, session: Session, state: State, principal: Importer
) -> Response:
    """Apply an import plan in one transaction (409 import-target-changed when the target moved)."""
    organisation = await get_org(session, principal, org)
    result, created = await apply(session, state, principal, org=organisation, data=data)
    # Serialised by pydantic: a restore lists tens of thousands of versions.
    return Response(
        result.model_dump_json(), status_code=201 if created else 200, media_type="application/json"
    )
