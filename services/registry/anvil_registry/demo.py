"""The demo data `make run` seeds: organisation 'demo', projects 'support' and 'shared',
environments dev/staging/prod, two prompts (one with a cross-project partial), a published
revision in dev and prod. Idempotent: a second run changes nothing."""

from __future__ import annotations

from sqlalchemy import select

from anvil_common.jwt import Claims

from .app import build_state
from .auth import Principal
from .environments.schemas import EnvironmentCreate
from .environments.service import create_environment
from .models import Environment, Organisation
from .orgs.schemas import OrganisationCreate
from .orgs.service import create_organisation
from .projects.schemas import ProjectCreate
from .projects.service import create_project
from .prompts.service import create_version
from .revisions.schemas import RevisionCreate
from .revisions.service import publish_revision
from .settings import RegistrySettings

__all__ = ["seed_demo"]

SYSTEM = Principal(
    Claims(
        jti="demo-seed",
        subject="demo-seed",
        kind="operator",
        issuer="",
        audience=(),
        expires_at=0,
        issued_at=0,
        scopes=frozenset(),
    )
)
GREETING = {
    "template": [
        {"role": "system", "content": "You are Acme's support assistant. {{> shared:legal/footer}}"},
        {"role": "user", "content": "Greet {{ name }} and ask how you can help."},
    ],
    "variables": {"name": {"description": "customer's first name"}},
    "model": {"provider": "openai", "name": "gpt-4o-mini", "parameters": {"temperature": 0.2}},
}
FOOTER = {"template": "Never share internal ticket numbers.", "variables": {}}


async def seed_demo(settings: RegistrySettings) -> list[str]:
    """Create the demo data if missing; return lines describing it."""
    state = build_state(settings)
    try:
        async with state.db.session() as session:
            org = await session.scalar(select(Organisation).where(Organisation.slug == "demo"))
            if org is None:
                org = await create_organisation(
                    session, SYSTEM, data=OrganisationCreate(slug="demo", name="Demo organisation")
                )
                shared = await create_project(
                    session, SYSTEM, org=org, data=ProjectCreate(slug="shared", name="Shared partials")
                )
                support = await create_project(
                    session, SYSTEM, org=org, data=ProjectCreate(slug="support", name="Support assistant")
                )
                await session.refresh(shared, ["organisation"])
                await session.refresh(support, ["organisation"])
                environments: dict[tuple[str, str], Environment] = {}
                for project in (shared, support):
                    for name in ("dev", "staging", "prod"):
                        environments[project.slug, name] = await create_environment(
                            session, SYSTEM, project=project, data=EnvironmentCreate(name=name)
                        )
                limit = settings.max_prompt_bytes
                await create_version(
                    session, SYSTEM, project=shared, name="legal/footer", content=FOOTER, max_bytes=limit
                )
                await create_version(
                    session,
                    SYSTEM,
                    project=support,
                    name="support/greeting",
                    content=GREETING,
                    max_bytes=limit,
                )
                for env in ("dev", "prod"):
                    for project, prompt in ((shared, "legal/footer"), (support, "support/greeting")):
                        await publish_revision(
                            session,
                            state,
                            SYSTEM,
                            project=project,
                            environment=environments[project.slug, env],
                            data=RevisionCreate(prompts={prompt: "latest"}, message="demo seed"),
                        )
    finally:
        await state.db.dispose()
    return [
        "  demo:    organisation 'demo': projects 'support' and 'shared', environments dev/staging/prod",
        "           prompt support/greeting (uses partial shared:legal/footer), published to dev and prod",
        f"           config:  {settings.public_url.rstrip('/')}/v1/orgs/demo/projects/support"
        "/environments/prod/config",
    ]
