"""Every /v1 router of the registry, in the order they appear in the OpenAPI document."""

from __future__ import annotations

from fastapi import APIRouter

from .audit.endpoints import router as audit
from .bundles.endpoints import router as bundles
from .environments.endpoints import router as environments
from .events.endpoints import router as events
from .orgs.endpoints import router as orgs
from .projects.endpoints import router as projects
from .prompt_sets.endpoints import router as prompt_sets
from .prompts.endpoints import router as prompts
from .revisions.endpoints import router as revisions
from .tokens.endpoints import router as tokens

ROUTERS: list[APIRouter] = [
    orgs,
    projects,
    prompts,
    prompt_sets,
    environments,
    revisions,
    tokens,
    audit,
    events,
    bundles,
]
