"""Every /v1 router of the registry, in the order they appear in the OpenAPI document."""

from __future__ import annotations

from fastapi import APIRouter

from .orgs.endpoints import router as orgs
from .projects.endpoints import router as projects

ROUTERS: list[APIRouter] = [orgs, projects]
