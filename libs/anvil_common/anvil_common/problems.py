"""RFC 9457 problem details: one exception hierarchy and one set of handlers for every service."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "Problem",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "Gone",
    "PreconditionFailed",
    "PreconditionRequired",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "ValidationFailed",
    "ConcurrentChange",
    "UnstorableValue",
    "ServiceUnavailable",
    "problem_response",
    "install_problem_handlers",
    "PROBLEM_RESPONSES",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("anvil.problems")


class Problem(Exception):
    """A domain error rendered as problem+json; subclasses name what happened."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal server error"

    def __init__(self, detail: str | None = None, *, headers: Mapping[str, str] | None = None, **extra: Any):
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = dict(headers or {})
        self.extra = extra

    @property
    def type(self) -> str:
        return f"urn:anvil:problem:{self.code}"

    def to_json(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(jsonable_encoder(self.extra))
        return body


class BadRequest(Problem):
    status, code, title = 400, "bad-request", "Bad request"


class Unauthorized(Problem):
    status, code, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="anvil"'}, **extra)


class Forbidden(Problem):
    status, code, title = 403, "forbidden", "Not allowed"


class NotFound(Problem):
    status, code, title = 404, "not-found", "Not found"


class Conflict(Problem):
    status, code, title = 409, "conflict", "Conflict"


class Gone(Problem):
    status, code, title = 410, "gone", "Gone"


class PreconditionFailed(Problem):
    status, code, title = 412, "precondition-failed", "Precondition failed"


class PayloadTooLarge(Problem):
    status, code, title = 413, "payload-too-large", "Request body too large"


class UnsupportedMediaType(Problem):
    status, code, title = 415, "unsupported-media-type", "Unsupported media type"


class ValidationFailed(Problem):
    status, code, title = 422, "validation-failed", "Request is not valid"


class ConcurrentChange(Conflict):
    code, title = "concurrent-change", "Concurrent change"


class UnstorableValue(ValidationFailed):
    code, title = "unstorable-value", "Value cannot be stored"


class PreconditionRequired(Problem):
    status, code, title = 428, "precondition-required", "Precondition required"


class ServiceUnavailable(Problem):
    status, code, title = 503, "service-unavailable", "Service unavailable"


def problem_response(problem: Problem, request: Request | None = None) -> JSONResponse:
    instance = request.url.path if request is not None else None
    return JSONResponse(
        problem.to_json(instance),
        status_code=problem.status,
        headers=problem.headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def _from_http_status(status: int, detail: Any, headers: Mapping[str, str] | None) -> Problem:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    problem = Problem(str(detail) if detail else phrase, headers=headers)
    problem.status = status  # type: ignore[misc]
    problem.code = phrase.lower().replace(" ", "-").replace("'", "")  # type: ignore[misc]
    problem.title = phrase  # type: ignore[misc]
    return problem


def _sqlstate(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    for candidate in (orig, getattr(orig, "__cause__", None)):
        state = getattr(candidate, "sqlstate", None)
        if isinstance(state, str):
            return state
    return ""


def install_problem_handlers(app: FastAPI) -> None:
    """Every error, including 404 routes, 405, 422 validation and unhandled 500s, as problem+json."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc, request)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"]) or "request"
        return problem_response(ValidationFailed(f"{where}: {first['msg']}", errors=errors), request)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return problem_response(_from_http_status(exc.status_code, exc.detail, exc.headers), request)

    async def on_unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(Problem("The server failed to handle this request."), request)

    async def on_database(request: Request, exc: Exception) -> JSONResponse:
        # SQLSTATE class 23: a constraint caught a race the service's own checks could not see
        # (two creates of one name, a purge beside a publish). Class 22: the database refused a
        # value (an integer out of range, a NUL in text). The transaction is rolled back either way.
        state = _sqlstate(exc)
        if isinstance(exc, IntegrityError) or state.startswith("23"):
            log.info("integrity conflict on %s %s: %s", request.method, request.url.path, exc)
            problem: Problem = ConcurrentChange(
                "a concurrent request changed the same resource; read it again and retry"
            )
        elif isinstance(exc, DataError) or state.startswith("22"):
            log.info("unstorable value on %s %s: %s", request.method, request.url.path, exc)
            problem = UnstorableValue(
                "a value in this request is out of range or holds characters that cannot be stored"
            )
        else:
            return await on_unhandled(request, exc)
        return problem_response(problem, request)

    async def on_recursion(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(BadRequest("the request is nested too deeply to process"), request)

    app.add_exception_handler(RecursionError, on_recursion)
    app.add_exception_handler(DBAPIError, on_database)
    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unhandled)


_PROBLEM_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "required": ["type", "title", "status"],
}
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"description": "Client error", "content": {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_SCHEMA}}},
    "5XX": {"description": "Server error", "content": {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_SCHEMA}}},
}
