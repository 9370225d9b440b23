"""Organisations: the tenants. Only an instance administrator creates them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.problems import Conflict

from ..audit.service import record
from ..auth import Principal
from ..models import Organisation
from .schemas import OrganisationCreate

__all__ = ["create_organisation", "OrganisationExists"]


class OrganisationExists(Conflict):
    code, title = "organisation-exists", "Organisation exists"


async def create_organisation(
    session: AsyncSession, principal: Principal, *, data: OrganisationCreate
) -> Organisation:
    """Create an organisation with a unique slug."""
    if await session.scalar(select(Organisation.id).where(Organisation.slug == data.slug)):
        raise OrganisationExists(f"organisation {data.slug!r} already exists")
    org = Organisation(slug=data.slug, name=data.name)
    session.add(org)
    await session.flush()
    record(session, principal, action="organisation.create", target=data.slug, organisation_id=org.id)
    return org
