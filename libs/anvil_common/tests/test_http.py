"""Shared HTTP conventions: the body guard (413/415), page tokens and entity tags."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI

from anvil_common.http import BodyGuardMiddleware, decode_page_token, encode_page_token, etag_for, parse_etags
from anvil_common.problems import PROBLEM_MEDIA_TYPE, BadRequest, install_problem_handlers

LIMIT = 1024


class Echo:
    """An ASGI app that reads the whole body and answers with its length."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        self.calls += 1
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = json.dumps({"received": size}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def call(
    app: Any,
    method: str,
    path: str = "/v1/things",
    headers: dict[str, str] | None = None,
    chunks: list[bytes] = (),
) -> tuple[int, dict[str, str], bytes]:
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    pending = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]
    pending = pending or [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[dict] = []

    async def receive() -> dict:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


@pytest.fixture
def echo() -> Echo:
    return Echo()


@pytest.fixture
def guard(echo) -> BodyGuardMiddleware:
    return BodyGuardMiddleware(echo, max_bytes=LIMIT, raw_prefixes=("/v1/bundles",))


def assert_problem(status: int, headers: dict[str, str], body: bytes, expected: int, code: str) -> None:
    assert status == expected
    assert headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert json.loads(body)["type"] == f"urn:anvil:problem:{code}"


async def test_json_body_within_the_limit_passes(guard, echo):
    status, _, body = await call(
        guard,
        "POST",
        headers={"content-type": "application/json", "content-length": "10"},
        chunks=[b"x" * 10],
    )
    assert status == 200
    assert json.loads(body) == {"received": 10}


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/merge-patch+json",
    ],
)
async def test_json_media_types_are_accepted(guard, content_type):
    status, _, _ = await call(
        guard, "PATCH", headers={"content-type": content_type, "content-length": "2"}, chunks=[b"{}"]
    )
    assert status == 200


async def test_declared_oversized_body_is_413_before_the_handler_runs(guard, echo):
    result = await call(
        guard,
        "POST",
        headers={"content-type": "application/json", "content-length": str(LIMIT + 1)},
        chunks=[b"{}"],
    )
    assert_problem(*result, 413, "payload-too-large")
    assert echo.calls == 0


@pytest.mark.parametrize("length", ["-1", "ten", "1e3", ""])
async def test_non_numeric_content_length_is_a_400(guard, echo, length):
    result = await call(guard, "POST", headers={"content-type": "application/json", "content-length": length})
    assert_problem(*result, 400, "bad-request")
    assert echo.calls == 0


async def test_a_streamed_body_that_lies_about_its_length_is_413(guard):
    chunks = [b"x" * 600, b"x" * 600]
    result = await call(
        guard, "POST", headers={"content-type": "application/json", "content-length": "10"}, chunks=chunks
    )
    assert_problem(*result, 413, "payload-too-large")


async def test_a_chunked_body_past_the_limit_is_413(guard):
    chunks = [b"x" * 512] * 3
    result = await call(
        guard,
        "PUT",
        headers={"content-type": "application/json", "transfer-encoding": "chunked"},
        chunks=chunks,
    )
    assert_problem(*result, 413, "payload-too-large")


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
    ],
)
async def test_a_body_that_is_not_json_is_415(guard, echo, content_type):
    headers = {"content-length": "2"}
    if content_type:
        headers["content-type"] = content_type
    result = await call(guard, "POST", headers=headers, chunks=[b"{}"])
    assert_problem(*result, 415, "unsupported-media-type")
    assert echo.calls == 0


async def test_a_post_without_a_body_needs_no_content_type(guard):
    for headers in ({}, {"content-length": "0"}):
        status, _, _ = await call(guard, "POST", headers=headers)
        assert status == 200


async def test_reads_and_raw_prefixes_are_not_guarded(guard):
    status, _, _ = await call(guard, "GET", headers={"content-length": str(LIMIT * 10)}, chunks=[b"x"])
    assert status == 200
    status, _, body = await call(
        guard,
        "POST",
        "/v1/bundles/import",
        headers={"content-type": "application/zip"},
        chunks=[b"x" * (LIMIT * 2)],
    )
    assert status == 200
    assert json.loads(body) == {"received": LIMIT * 2}


@pytest.fixture
def sized_guard(echo) -> BodyGuardMiddleware:
    return BodyGuardMiddleware(echo, max_bytes=LIMIT, path_limits={r"/v1/orgs/[^/]+/imports": LIMIT * 4})


async def test_a_path_limit_lets_its_path_take_a_larger_body(sized_guard, echo):
    status, _, body = await call(
        sized_guard,
        "POST",
        "/v1/orgs/acme/imports",
        headers={"content-type": "application/json", "content-length": str(LIMIT * 3)},
        chunks=[b"x" * (LIMIT * 3)],
    )
    assert status == 200
    assert json.loads(body) == {"received": LIMIT * 3}


@pytest.mark.parametrize("declared", [True, False])
async def test_a_path_limit_is_still_a_limit(sized_guard, echo, declared):
    headers = {"content-type": "application/json"}
    if declared:
        headers["content-length"] = str(LIMIT * 4 + 1)
    else:
        headers["transfer-encoding"] = "chunked"
    result = await call(
        sized_guard, "POST", "/v1/orgs/acme/imports", headers=headers, chunks=[b"x" * (LIMIT * 4 + 1)]
    )
    assert_problem(*result, 413, "payload-too-large")
    assert json.loads(result[2])["detail"] == f"request body exceeds {LIMIT * 4} bytes"


@pytest.mark.parametrize("path", ["/v1/orgs/acme/imports/x", "/v1/orgs/a/b/imports", "/v1/things"])
async def test_a_path_limit_applies_only_to_the_paths_it_matches(sized_guard, echo, path):
    result = await call(
        sized_guard,
        "POST",
        path,
        headers={"content-type": "application/json", "content-length": str(LIMIT + 1)},
        chunks=[b"x" * (LIMIT + 1)],
    )
    assert_problem(*result, 413, "payload-too-large")
    assert echo.calls == 0


@pytest.fixture
def fastapi_app() -> Any:
    """A FastAPI app with the problem handlers behind the guard, as every service has it."""
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/v1/things")
    async def things(body: dict[str, Any]) -> dict[str, int]:
        return {"keys": len(body)}

    app.add_middleware(BodyGuardMiddleware, max_bytes=LIMIT)
    return app


@pytest.mark.parametrize("declared", [None, "10"])
async def test_a_body_passing_the_limit_while_fastapi_reads_it_is_a_413_not_a_400(fastapi_app, declared):
    # No Content-Length (chunked), or one that lies: the guard only learns as the bytes arrive,
    # by which time FastAPI is reading the body (and turns most exceptions into a 400).
    headers = {"content-type": "application/json"}
    if declared is None:
        headers["transfer-encoding"] = "chunked"
    else:
        headers["content-length"] = declared
    body = json.dumps({"pad": "x" * LIMIT}).encode()
    chunks = [body[: LIMIT // 2], body[LIMIT // 2 :]]
    result = await call(fastapi_app, "POST", headers=headers, chunks=chunks)
    assert_problem(*result, 413, "payload-too-large")
    assert json.loads(result[2])["detail"] == f"request body exceeds {LIMIT} bytes"


async def test_a_body_within_the_limit_reaches_a_fastapi_route(fastapi_app):
    headers = {"content-type": "application/json", "transfer-encoding": "chunked"}
    status, _, body = await call(fastapi_app, "POST", headers=headers, chunks=[b'{"a":', b"1}"])
    assert (status, json.loads(body)) == (200, {"keys": 1})


def test_page_token_round_trips_and_is_opaque_base64url():
    position = {"after": "2026-11-25T09:00:00Z", "id": "0b7d5c1e", "n": 3}
    token = encode_page_token(position)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_page_token(token) == position
    assert decode_page_token(None) is None


@pytest.mark.parametrize("token", ["!!", "", "e30=", "WzFd", "bm90IGpzb24", "Zh"])
def test_a_page_token_that_is_not_ours_is_a_400_problem(token):
    with pytest.raises(BadRequest) as caught:
        decode_page_token(token)
    assert caught.value.status == 400


def test_etags_are_quoted_and_parsed_back():
    assert etag_for(3) == '"3"'
    assert etag_for("p1") == '"p1"'
    assert parse_etags(None) is None
    assert parse_etags('"p1"') == ['"p1"']
    assert parse_etags(' "a", W/"b" ,,"c" ') == ['"a"', '"b"', '"c"']
    assert parse_etags(' "a", W/"b" ', weak=False) == ['"a"', 'W/"b"']
    assert parse_etags("*") == ["*"]
    assert parse_etags("") == []
