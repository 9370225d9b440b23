"""Applying an import plan (docs/api.md section 8.3) in the request's one transaction.

Order matters: the organisation is locked first (two imports into one organisation run one
after the other, so an import id is recorded exactly once); a replay is answered before
anything is compared; the token's limits, then the plan's expectations (409, nothing written),
then the body (422, nothing written) are checked before the first write.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_wire import sha256_digest
from anvil_wire.bundles.fastjson import canonical_bytes

from ..audit.service import record
from ..auth import Principal
from ..lookup import ensure_active
from ..models import Import, Organisation
from ..state import RegistryState
from .errors import ImportIdReused
from .schemas import ImportCreate, ImportPublic
from .target import check_expectations, load_target
from .validate import check_tenancy, validate_import
from .write import write_import

__all__ = ["apply_import", "request_hash"]


def request_hash(data: ImportCreate) -> str:
    """What makes two bodies the same import: their parsed form, defaults applied, member order
    aside; each content counts by its digest (which names it: a content that does not hash to
    its digest is refused), sparing the hash of megabytes of templates."""
    payload = data.model_dump(mode="json", exclude={"contents"})
    payload["contents"] = sorted(data.contents)
    return sha256_digest(canonical_bytes(payload))


async def _replay(
    session: AsyncSession, org: Organisation, data: ImportCreate, digest: str
) -> ImportPublic | None:
    row = await session.get(Import, data.import_id)
    if row is None:
        return None
    if row.organisation_id != org.id or row.request_hash != digest:
        raise ImportIdReused(
            f"import {data.import_id} was applied already with another body; plan the import again "
            "for a new import id",
            import_id=str(data.import_id),
        )
    return ImportPublic.model_validate(row.result)


async def apply_import(
    session: AsyncSession,
    state: RegistryState,
    principal: Principal,
    *,
    org: Organisation,
    data: ImportCreate,
) -> tuple[ImportPublic, bool]:
    """Apply an import; (result, True) when applied now, (first result, False) on a replay."""
    # FOR NO KEY UPDATE: serialises imports into this organisation without blocking the
    # inserts that reference it (their foreign-key checks take KEY SHARE).
    await session.execute(
        select(Organisation.id).where(Organisation.id == org.id).with_for_update(key_share=True)
    )
    digest = request_hash(data)
    replayed = await _replay(session, org, data, digest)
    if replayed is not None:
        return replayed, False
    ensure_active(org, f"organisation {org.slug!r}")
    target = await load_target(session, org, data, project_limit=principal.claims.project)
    check_tenancy(data, target, principal)
    check_expectations(data, target)
    work = await validate_import(session, principal, target, data, max_bytes=state.settings.max_prompt_bytes)
    result = await write_import(session, state, principal, target=target, data=data, work=work)
    body: dict[str, Any] = result.model_dump(mode="json")
    session.add(
        Import(
            id=data.import_id,
            organisation_id=org.id,
            origin_instance=data.origin.instance,
            origin_bundle=data.origin.bundle,
            request_hash=digest,
            result=body,
            created_by=principal.actor,
        )
    )
    record(
        session,
        principal,
        action="import.apply",
        target=org.slug,
        organisation_id=org.id,
        details={"import_id": str(data.import_id), "origin": data.origin.model_dump(), **body["created"]},
    )
    return result, True
