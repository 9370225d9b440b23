"""RFC 9457 problem+json for every error a service can answer, including 404, 405, 422 and 500."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from anvil_common.problems import (
    PROBLEM_MEDIA_TYPE,
    PROBLEM_RESPONSES,
    Conflict,
    Forbidden,
    NotFound,
    PreconditionFailed,
    Problem,
    Unauthorized,
    ValidationFailed,
    install_problem_handlers,
)


class WidgetExists(Conflict):
    code, title = "widget-exists", "Widget exists"


class Widget(BaseModel):
    name: str
    size: int


def build_app() -> FastAPI:
    app = FastAPI(responses=PROBLEM_RESPONSES)
    install_problem_handlers(app)

    @app.post("/widgets")
    async def create(widget: Widget) -> Widget:
        if widget.name == "taken":
            raise WidgetExists(f"widget {widget.name!r} exists", widget=widget.name)
        return widget

    @app.get("/secret")
    async def secret() -> None:
        raise Unauthorized("a bearer token is required")

    @app.get("/forbidden")
    async def forbidden() -> None:
        raise Forbidden("missing scope", required_scope="tokens:admin")

    @app.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(status_code=418, detail="short and stout", headers={"X-Kettle": "1"})

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("database password is hunter2")

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # Starlette re-raises unhandled errors after answering; we want the answer.
    transport = httpx.ASGITransport(app=build_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


def assert_problem(response: httpx.Response, status: int, type_: str) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body = response.json()
    assert body["status"] == status
    assert body["type"] == type_
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


async def test_domain_problem_is_rendered_with_its_type_instance_and_extras(client):
    r = await client.post("/widgets", json={"name": "taken", "size": 1})
    body = assert_problem(r, 409, "urn:anvil:problem:widget-exists")
    assert body == {
        "type": "urn:anvil:problem:widget-exists",
        "title": "Widget exists",
        "status": 409,
        "detail": "widget 'taken' exists",
        "instance": "/widgets",
        "widget": "taken",
    }


async def test_validation_error_is_a_422_problem_listing_every_error(client):
    r = await client.post("/widgets", json={"name": 5})
    body = assert_problem(r, 422, "urn:anvil:problem:validation-failed")
    locations = [e["loc"] for e in body["errors"]]
    assert ["body", "name"] in locations
    assert ["body", "size"] in locations
    assert body["detail"].startswith("body.")


async def test_malformed_json_body_is_a_422_problem(client):
    r = await client.post("/widgets", content=b"{not json", headers={"content-type": "application/json"})
    assert_problem(r, 422, "urn:anvil:problem:validation-failed")


async def test_unauthorized_carries_www_authenticate(client):
    r = await client.get("/secret")
    assert_problem(r, 401, "urn:anvil:problem:unauthorized")
    assert r.headers["www-authenticate"] == 'Bearer realm="anvil"'


async def test_extras_are_top_level_members(client):
    body = assert_problem(await client.get("/forbidden"), 403, "urn:anvil:problem:forbidden")
    assert body["required_scope"] == "tokens:admin"


async def test_unknown_route_is_a_404_problem(client):
    body = assert_problem(await client.get("/nowhere"), 404, "urn:anvil:problem:not-found")
    assert body["instance"] == "/nowhere"


async def test_wrong_method_is_a_405_problem_with_allow(client):
    r = await client.delete("/widgets")
    assert_problem(r, 405, "urn:anvil:problem:method-not-allowed")
    assert r.headers["allow"] == "POST"


async def test_http_exception_keeps_its_status_and_headers(client):
    r = await client.get("/teapot")
    body = assert_problem(r, 418, "urn:anvil:problem:im-a-teapot")
    assert body["detail"] == "short and stout"
    assert r.headers["x-kettle"] == "1"


async def test_unhandled_error_is_a_500_problem_that_leaks_nothing(client, caplog):
    r = await client.get("/boom")
    body = assert_problem(r, 500, "urn:anvil:problem:internal-error")
    assert "hunter2" not in r.text
    assert body["detail"] == "The server failed to handle this request."
    assert any("unhandled error on GET /boom" in rec.getMessage() for rec in caplog.records)


def test_problem_classes_have_distinct_statuses_and_urn_types():
    assert (NotFound.status, PreconditionFailed.status, ValidationFailed.status) == (404, 412, 422)
    problem = NotFound()
    assert problem.detail == "Not found"
    assert problem.type == "urn:anvil:problem:not-found"
    assert problem.to_json() == {
        "type": "urn:anvil:problem:not-found",
        "title": "Not found",
        "status": 404,
        "detail": "Not found",
    }
    assert isinstance(problem, Problem)
    assert isinstance(problem, Exception)


def test_openapi_documents_problem_responses():
    schema = build_app().openapi()
    responses = schema["paths"]["/widgets"]["post"]["responses"]
    assert PROBLEM_MEDIA_TYPE in responses["4XX"]["content"]
    assert PROBLEM_MEDIA_TYPE in responses["5XX"]["content"]
