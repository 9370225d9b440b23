"""Reading stored bundles with the caller's tenancy."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from anvil_common.db import utcnow

from ..auth import Principal
from ..state import WorkerState
from ..storage import BundleFile
from .errors import BundleNotFound

__all__ = ["get_bundle"]


async def get_bundle(
    session: AsyncSession, principal: Principal, *, state: WorkerState, digest: str
) -> BundleFile:
    """An exported bundle the caller may see (uploads are never served back).

    A bundle's ``project`` is the one project it holds (None for several): a project-limited
    token sees only bundles confined to its project, whoever exported them.
    """
    bundle = await state.store.get(session, digest)
    if (
        bundle is None
        or bundle.kind != "export"
        or bundle.expires_at <= utcnow()  # past retention, even before the next prune
        or not principal.can_see(bundle.organisation, bundle.project)
    ):
        raise BundleNotFound(f"bundle {digest} not found")
    return bundle
