"""The demo data `make run` seeds: organisation 'demo', project 'support'."""

from __future__ import annotations

from sqlalchemy import select

from .app import build_state
from .models import Organisation, Project
from .settings import RegistrySettings

__all__ = ["seed_demo"]


async def seed_demo(settings: RegistrySettings) -> list[str]:
    """Create the demo organisation and project if missing; return lines describing them."""
    state = build_state(settings)
    try:
        async with state.db.session() as session:
            org = await session.scalar(select(Organisation).where(Organisation.slug == "demo"))
            if org is None:
                org = Organisation(slug="demo", name="Demo organisation")
                session.add(org)
                await session.flush()
                session.add(Project(organisation_id=org.id, slug="support", name="Support assistant"))
    finally:
        await state.db.dispose()
    return ["  demo:    organisation 'demo', project 'support'"]
