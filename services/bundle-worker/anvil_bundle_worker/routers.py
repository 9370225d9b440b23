"""Every /v1 router of the bundle worker, in the order they appear in the OpenAPI document."""

from __future__ import annotations

from fastapi import APIRouter

from .bundles.endpoints import router as bundles
from .exports.endpoints import router as exports
from .imports.endpoints import router as imports
from .jobs.endpoints import router as jobs
from .peers.endpoints import router as peers
from .plans.endpoints import router as plans

ROUTERS: list[APIRouter] = [exports, imports, jobs, plans, bundles, peers]
# Paths whose bodies are bundle files, streamed and limited by their endpoint.
RAW_BODY_PREFIXES = ("/v1/imports",)
