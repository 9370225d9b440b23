"""HTTP conventions every service shares: body limits, JSON-only bodies, ETags, page tokens."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from anvil_wire.b64 import b64url_decode, b64url_encode

from .problems import BadRequest, PayloadTooLarge, Problem, UnsupportedMediaType, problem_response

__all__ = ["BodyGuardMiddleware", "encode_page_token", "decode_page_token", "etag_for", "parse_etags"]

MAX_PAGE_TOKEN_LENGTH = 1024
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _BodyTooLarge(PayloadTooLarge, HTTPException):
    """Raised from ``receive`` once a body passes its limit.

    FastAPI turns any exception met while it reads a body into a 400, except HTTPExceptions,
    which it re-raises; the app's problem handler then renders it as the 413 problem it is
    (``Problem`` comes before ``HTTPException`` in the method resolution order). For any other
    app the middleware itself answers (below).
    """

    headers: dict[str, str]  # Problem's (HTTPException's is optional; this one is always set)

    def __init__(self, limit: int) -> None:
        PayloadTooLarge.__init__(self, f"request body exceeds {limit} bytes")
        self.status_code = self.status


class BodyGuardMiddleware:
    """Refuse oversized bodies (413) and non-JSON bodies (415) before any handler runs.

    The limit is enforced on the bytes actually received, so a missing or lying
    ``Content-Length`` cannot get past it. ``raw_prefixes`` lists paths that take other media
    types (and set their own limits). ``path_limits`` maps regular expressions (matched against
    the whole path, first match wins) to the limit of the paths they match, for the few
    endpoints whose bodies are larger by design (an import carries every prompt version).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        raw_prefixes: Sequence[str] = (),
        path_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.raw_prefixes = tuple(raw_prefixes)
        self.path_limits = [(re.compile(pattern), limit) for pattern, limit in (path_limits or {}).items()]

    def limit_for(self, path: str) -> int:
        """The body limit of ``path``: its ``path_limits`` entry, else ``max_bytes``."""
        for pattern, limit in self.path_limits:
            if pattern.fullmatch(path):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in _BODY_METHODS
            or scope["path"].startswith(self.raw_prefixes)
        ):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        max_bytes = self.limit_for(scope["path"])
        problem: Problem | None = None
        length = headers.get(b"content-length")
        if length is not None and not length.isdigit():
            problem = BadRequest("Content-Length must be a decimal number of bytes")
        elif length is not None and int(length) > max_bytes:
            problem = PayloadTooLarge(f"request body exceeds {max_bytes} bytes")
        elif (length not in (None, b"0") or b"transfer-encoding" in headers) and not _is_json(
            headers.get(b"content-type", b"")
        ):
            problem = UnsupportedMediaType("request bodies must be application/json")
        if problem is not None:
            await problem_response(problem)(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise _BodyTooLarge(max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge as exc:
            if not started:
                await problem_response(exc)(scope, receive, send)


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


def encode_page_token(position: dict[str, Any]) -> str:
    return b64url_encode(json.dumps(position, separators=(",", ":"), sort_keys=True).encode())


def decode_page_token(token: str | None) -> dict[str, Any] | None:
    """Decode an opaque page token; a token that is not ours is a 400 problem."""
    if token is None:
        return None
    if len(token) > MAX_PAGE_TOKEN_LENGTH:
        raise BadRequest("page_token is not valid; pass back a next_page_token unchanged")
    try:
        value = json.loads(b64url_decode(token))
    except (ValueError, RecursionError) as exc:
        raise BadRequest("page_token is not valid; pass back a next_page_token unchanged") from exc
    if not isinstance(value, dict):
        raise BadRequest("page_token is not valid; pass back a next_page_token unchanged")
    return value


def etag_for(version: int | str) -> str:
    return f'"{version}"'


def parse_etags(header: str | None, *, weak: bool = True) -> list[str] | None:
    """Parse If-Match / If-None-Match into a list of entity tags (``*`` kept as is).

    ``weak=True`` (If-None-Match) compares weakly: ``W/"x"`` matches ``"x"``. ``weak=False``
    (If-Match, RFC 9110 section 13.1.1) compares strongly: a weak tag never matches.
    """
    if header is None:
        return None
    tags = [t.strip() for t in header.split(",") if t.strip()]
    if weak:
        return [t[2:] if t.startswith("W/") else t for t in tags]
    return tags
