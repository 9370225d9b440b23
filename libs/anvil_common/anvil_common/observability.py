"""JSON logs with request ids, Prometheus metrics (``anvil_`` prefix), /livez and /readyz."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, FastAPI
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import ServiceUnavailable, problem_response

__all__ = [
    "request_id_var",
    "JsonFormatter",
    "configure_logging",
    "Metrics",
    "RequestContextMiddleware",
    "health_router",
]

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("anvil_request_id", default=None)
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id and any extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            doc["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure_logging(service: str, *, level: str = "INFO", as_json: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(service) if as_json else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("alembic").setLevel(max(root.level, logging.WARNING))
    # Service-to-service calls (a gateway's long-polls of the event feed every few seconds) are
    # not news at INFO; their failures are logged by the callers, with what they mean.
    logging.getLogger("httpx").setLevel(max(root.level, logging.WARNING))
    # Our middleware logs requests with their ids; uvicorn's access log would repeat them.
    logging.getLogger("uvicorn.access").disabled = True


class Metrics:
    """A per-application registry, so that several apps in one process never collide."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        ProcessCollector(namespace="anvil", registry=self.registry)
        self.requests = Counter(
            "anvil_http_requests",
            "HTTP requests handled",
            ["service", "method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "anvil_http_request_duration_seconds",
            "HTTP request latency",
            ["service", "method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )

    def counter(self, name: str, documentation: str, labels: list[str] | None = None) -> Counter:
        return Counter(name, documentation, labels or [], registry=self.registry)

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class RequestContextMiddleware:
    """Request id (``X-Request-ID``), access log and metrics, as plain ASGI (no per-request task)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.log = logging.getLogger("anvil.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            method = scope["method"]
            self.metrics.requests.labels(self.metrics.service, method, route, str(status)).inc()
            self.metrics.latency.labels(self.metrics.service, method, route).observe(elapsed)
            if self.log.isEnabledFor(logging.INFO):
                self.log.info(
                    "%s %s %s",
                    method,
                    scope["path"],
                    status,
                    extra={"status": status, "route": route, "duration_ms": round(elapsed * 1000, 2)},
                )
            request_id_var.reset(token)


def _route_template(scope: Scope) -> str:
    """The matched route's path template (``/v1/orgs/{org}``), never the raw path (unbounded labels)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path is None:
        return "unmatched"
    # FastAPI keeps routes of an included router relative to its prefix.
    included = (scope.get("fastapi") or {}).get("included_router")
    prefix = getattr(getattr(included, "include_context", None), "prefix", "") or ""
    return f"{prefix}{path}"


def health_router(ready_check: Callable[[], Awaitable[str | None]]) -> APIRouter:
    """``/livez`` (the process answers) and ``/readyz`` (``ready_check`` returns None when ready)."""
    router = APIRouter(tags=["health"])

    @router.get("/livez", operation_id="livez", summary="The process is alive.")
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", operation_id="readyz", summary="The service can take traffic.")
    async def readyz() -> Response:
        try:
            reason = await ready_check()
        except Exception as exc:  # the check itself failing is "not ready", never a 500
            reason = f"readiness check failed: {type(exc).__name__}"
        if reason:
            return problem_response(ServiceUnavailable(reason))
        return JSONResponse({"status": "ready"})

    return router


def metrics_route(app: FastAPI, metrics: Metrics) -> None:
    @app.get("/metrics", include_in_schema=False)
    async def _metrics() -> Response:
        return metrics.render()
