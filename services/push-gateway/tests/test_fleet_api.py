"""The fleet view over HTTP against a real gateway and registry on loopback: ``GET /v1/fleet``
(filters, keyset pages, statuses, tenancy), ``GET /v1/fleet/summary`` and the HTTP clients'
``POST /v1/acks`` — every refusal with its exact problem type, and nothing written by one."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from anvil_common.db import utcnow
from anvil_common.http import encode_page_token
from anvil_wire.push import (
    SUBPROTOCOL,
    Ack,
    Hello,
    Nack,
    Sdk,
    Snapshot,
    Subscription,
    encode,
    parse_server_message,
)

DIGEST = "sha256:" + "c" * 64


@dataclass(frozen=True)
class Env:
    organisation: str
    project: str
    name: str
    id: str
    revision: int | None = None  # the published revision, if any
    digest: str | None = None

    def subscription(self) -> dict[str, Any]:
        return {"organisation": self.organisation, "project": self.project, "environment": self.name}


@dataclass(frozen=True)
class World:
    prod: Env  # acme/web/prod, revision 1 published
    staging: Env  # acme/web/staging
    shop: Env  # acme/shop/prod
    elsewhere: Env  # other/web/prod


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:anvil:problem:{code}", body
    assert body["status"] == status
    return body


async def environment_id(seed: Any, org: str, project: str, name: str) -> str:
    r = await seed.http.get(f"/v1/orgs/{org}/projects/{project}/environments/{name}", headers=seed.headers)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


@pytest.fixture
async def world(gateway, seed, make_token) -> World:
    await seed.org("acme", "web", "shop")
    await seed.org("other", "web")
    for org, project, name in (("acme", "web", "prod"), ("acme", "web", "staging"), ("acme", "shop", "prod")):
        await seed.environment(org, project, name)
    await seed.environment("other", "web", "prod")
    await seed.version("acme", "web", "greeting", "Hello {{name}}")
    await seed.publish("acme", "web", "prod", {"greeting": 1})
    r = await gateway.client.get(
        "/v1/orgs/acme/projects/web/environments/prod/config", headers=auth(make_token(org=None))
    )
    assert r.status_code == 200, r.text
    prod = Env(
        "acme", "web", "prod", r.headers["anvil-environment-id"], 1, r.headers["anvil-manifest-digest"]
    )
    envs = [
        Env(org, project, name, await environment_id(seed, org, project, name))
        for org, project, name in (
            ("acme", "web", "staging"),
            ("acme", "shop", "prod"),
            ("other", "web", "prod"),
        )
    ]
    return World(prod, *envs)


@pytest.fixture
def admin(make_token) -> str:
    """An instance administrator (no organisation): sees every organisation."""
    return make_token("operator", org=None)


def report_body(env: Env, client_id: str | None = None, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "client_id": client_id or str(uuid.uuid4()),
        "sdk": {"name": "anvil-js", "version": "0.9.1"},
        "labels": {"region": "eu"},
        "subscription": {**env.subscription(), "prompt_set": None},
        "status": "ack",
        "environment_id": env.id,
        "revision": env.revision or 1,
        "manifest_digest": env.digest or DIGEST,
    }
    return body | changes


async def report(gateway: Any, token: str, body: dict[str, Any]) -> httpx.Response:
    return await gateway.client.post("/v1/acks", json=body, headers=auth(token))


async def reported(gateway: Any, token: str, env: Env, client_id: str | None = None, **changes: Any) -> str:
    """POST an ack (or what ``changes`` say) and flush the writer; the client id."""
    body = report_body(env, client_id, **changes)
    r = await report(gateway, token, body)
    assert r.status_code == 204, r.text
    await gateway.state.fleet.flush()
    return str(body["client_id"])


async def fleet(gateway: Any, token: str, **params: Any) -> httpx.Response:
    return await gateway.client.get("/v1/fleet", params=params, headers=auth(token))


async def listed(gateway: Any, token: str, **params: Any) -> list[dict[str, Any]]:
    r = await fleet(gateway, token, **params)
    assert r.status_code == 200, r.text
    assert r.json()["next_page_token"] is None
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def eventually(
    gateway: Any, token: str, holds: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """The fleet list once ``holds(items)`` (a session's ack reaches the writer asynchronously)."""
    async with asyncio.timeout(10):
        while True:
            await gateway.state.fleet.flush()
            items = await listed(gateway, token)
            if holds(items):
                return items
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def stream_client(
    gateway: Any, token: str, client_id: str, **labels: str
) -> AsyncIterator[tuple[ClientConnection, Snapshot]]:
    """A WebSocket client of acme/web/prod, past hello and welcome, with the snapshot it was sent."""
    headers = auth(token)
    async with connect(gateway.stream_url, subprotocols=[SUBPROTOCOL], additional_headers=headers) as ws:
        hello = Hello(
            client_id, Sdk("anvil-python", "1.4.0"), Subscription("acme", "web", "prod"), labels=labels
        )
        await ws.send(encode(hello).decode())
        parse_server_message(await ws.recv())  # welcome
        snapshot = parse_server_message(await ws.recv())
        assert isinstance(snapshot, Snapshot)
        yield ws, snapshot


# -- the view ------------------------------------------------------------------------------------


async def test_stream_clients_appear_with_their_revision_nack_and_status(gateway, world, admin):
    acker, nacker = str(uuid.uuid4()), str(uuid.uuid4())
    async with stream_client(gateway, admin, acker, region="eu") as (ws, snapshot):
        await ws.send(encode(Ack.of(snapshot)).decode())
        async with stream_client(gateway, admin, nacker) as (ws2, snapshot2):
            await ws2.send(encode(Nack.of(snapshot2, "bad-signature", "kid not in the key set")).decode())
            items = await eventually(
                gateway,
                admin,
                lambda items: len(items) == 2 and all(i["revision"] or i["last_nack"] for i in items),
            )
        by_id = {i["client_id"]: i for i in items}
        ack = by_id[acker]
        assert ack["environment"] == {
            "organisation": "acme",
            "project": "web",
            "name": "prod",
            "id": world.prod.id,
        }
        assert (ack["sdk"], ack["labels"], ack["prompt_set"]) == (
            {"name": "anvil-python", "version": "1.4.0"},
            {"region": "eu"},
            None,
        )
        assert (ack["replica"], ack["transport"], ack["status"]) == ("test-replica", "websocket", "connected")
        assert ack["revision"]["number"] == world.prod.revision
        assert ack["revision"]["manifest_digest"] == world.prod.digest
        assert ack["last_nack"] is None
        nack = by_id[nacker]
        assert nack["revision"] is None
        assert {k: nack["last_nack"][k] for k in ("revision", "code", "detail")} == {
            "revision": 1,
            "code": "bad-signature",
            "detail": "kid not in the key set",
        }
        # The nacker left; the acker is still connected.
        items = await eventually(
            gateway, admin, lambda items: {i["status"] for i in items} == {"connected", "disconnected"}
        )
        assert {i["client_id"]: i["status"] for i in items} == {acker: "connected", nacker: "disconnected"}
        assert [i["client_id"] for i in await listed(gateway, admin, status="disconnected")] == [nacker]
        assert [i["client_id"] for i in await listed(gateway, admin, status="connected")] == [acker]

        # This replica stops refreshing (as if it had died): its client turns stale.
        later = utcnow() + timedelta(hours=1)
        gateway.state.fleet.clock = lambda: later
        assert [i["client_id"] for i in await listed(gateway, admin, status="stale")] == [acker]
        assert await listed(gateway, admin, status="connected") == []


async def test_an_http_clients_report_is_shown_like_a_stream_client(gateway, world, admin, make_token):
    client = make_token("client", org="acme", project="web", environment="prod")
    client_id = await reported(gateway, client, world.prod)
    [item] = await listed(gateway, admin)
    assert item["client_id"] == client_id
    assert (item["transport"], item["status"], item["connected_at"]) == ("http", "connected", None)
    assert (item["sdk"], item["labels"]) == ({"name": "anvil-js", "version": "0.9.1"}, {"region": "eu"})
    assert item["revision"]["number"] == 1
    assert item["revision"]["manifest_digest"] == world.prod.digest

    reason = {"code": "invalid-prompt", "detail": "undeclared variable name"}
    await reported(
        gateway,
        client,
        world.prod,
        client_id,
        status="nack",
        revision=2,
        manifest_digest=DIGEST,
        reason=reason,
    )
    [item] = await listed(gateway, admin)
    assert item["revision"]["number"] == 1  # still what it applied
    assert {k: item["last_nack"][k] for k in ("revision", "code", "detail")} == {"revision": 2, **reason}

    # An HTTP client holds no connection: not heard from within the window, it is stale.
    later = utcnow() + timedelta(hours=1)
    gateway.state.fleet.clock = lambda: later
    assert [i["status"] for i in await listed(gateway, admin)] == ["stale"]


async def test_the_list_filters_by_organisation_project_environment_and_revision(gateway, world, admin):
    in_prod = await reported(gateway, admin, world.prod)
    on_two = await reported(gateway, admin, world.staging, revision=2)
    in_shop = await reported(gateway, admin, world.shop)
    in_other = await reported(gateway, admin, world.elsewhere)

    def ids(items: list[dict[str, Any]]) -> set[str]:
        return {i["client_id"] for i in items}

    assert ids(await listed(gateway, admin)) == {in_prod, on_two, in_shop, in_other}
    assert ids(await listed(gateway, admin, organisation="acme")) == {in_prod, on_two, in_shop}
    assert ids(await listed(gateway, admin, organisation="acme", project="web")) == {in_prod, on_two}
    assert ids(await listed(gateway, admin, organisation="acme", environment="prod")) == {in_prod, in_shop}
    assert ids(await listed(gateway, admin, project="web", environment="prod")) == {in_prod, in_other}
    assert ids(await listed(gateway, admin, revision=2)) == {on_two}
    assert await listed(gateway, admin, organisation="nobody") == []
    # Ordered by organisation, project, environment, then environment id and client id.
    assert [i["client_id"] for i in await listed(gateway, admin)] == [in_shop, in_prod, on_two, in_other]


async def test_pages_are_keyset_pages_that_never_repeat_or_skip(gateway, world, admin):
    written = {await reported(gateway, admin, world.prod) for _ in range(5)}
    seen: list[str] = []
    token = None
    for _ in range(3):
        r = await fleet(gateway, admin, page_size=2, **({"page_token": token} if token else {}))
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [i["client_id"] for i in page["items"]]
        token = page["next_page_token"]
        if len(seen) == 2:  # a client that sorts first arrives between two pages: not repeated
            await reported(gateway, admin, world.prod, "00000000-0000-4000-8000-000000000000")
    assert token is None
    assert seen == sorted(written)
    assert len(await listed(gateway, admin, page_size=500)) == 6


async def test_bad_filters_are_422_and_bad_page_tokens_400(gateway, world, admin):
    for params, where in (
        ({"page_size": 0}, "page_size"),
        ({"page_size": 501}, "page_size"),
        ({"page_size": "ten"}, "page_size"),
        ({"status": "online"}, "status"),
        ({"revision": 0}, "revision"),
        ({"revision": "latest"}, "revision"),
        ({"revision": 2**53}, "revision"),
        ({"organisation": "Acme"}, "organisation"),
        ({"project": "web_app"}, "project"),
        ({"environment": "-prod"}, "environment"),
    ):
        body = problem(await fleet(gateway, admin, **params), 422, "validation-failed")
        assert body["errors"][0]["loc"] == ["query", where], params

    valid = encode_page_token({"after": ["acme", "web", "prod", world.prod.id, str(uuid.uuid4())]})
    assert (await fleet(gateway, admin, page_token=valid)).status_code == 200
    for token in (
        "not a token!",
        encode_page_token({"after": 3}),
        encode_page_token({"after": ["acme", "web", "prod", world.prod.id]}),
        encode_page_token({"after": ["acme", "web", "prod", "not-a-uuid", str(uuid.uuid4())]}),
        encode_page_token({"after": ["acme", "web", "prod", world.prod.id, str(uuid.uuid4())], "more": 1}),
        encode_page_token({"after": ["acme", "web", "pr\x00od", world.prod.id, str(uuid.uuid4())]}),
        "x" * 5000,
    ):
        body = problem(await fleet(gateway, admin, page_token=token), 400, "bad-request")
        assert "page_token" in body["detail"]


# -- who may see what --------------------------------------------------------------------------


async def test_reading_the_fleet_needs_a_token_with_fleet_read(gateway, world, make_token):
    r = await gateway.client.get("/v1/fleet")
    problem(r, 401, "invalid-token")
    assert r.headers["www-authenticate"] == 'Bearer realm="anvil"'
    for token in (
        make_token("client", org="acme", project="web", environment="prod"),
        make_token("operator", scopes=["config:read", "projects:read"]),
        make_token("service", org=None, scopes=["config:read"]),
    ):
        for path in ("/v1/fleet", "/v1/fleet/summary"):
            r = await gateway.client.get(path, params={"organisation": "acme"}, headers=auth(token))
            assert problem(r, 403, "forbidden")["required_scope"] == "fleet:read"
    problem(await fleet(gateway, "not-a-jwt"), 401, "invalid-token")
    problem(await fleet(gateway, make_token(audience="anvil-registry")), 401, "invalid-token")


async def test_a_token_sees_only_its_organisation_project_and_environment(gateway, world, admin, make_token):
    in_prod = await reported(gateway, admin, world.prod)
    in_staging = await reported(gateway, admin, world.staging)
    in_shop = await reported(gateway, admin, world.shop)
    await reported(gateway, admin, world.elsewhere)

    def ids(items: list[dict[str, Any]]) -> set[str]:
        return {i["client_id"] for i in items}

    org = make_token(scopes=["fleet:read"])  # org acme
    assert ids(await listed(gateway, org, organisation="acme")) == {in_prod, in_staging, in_shop}
    problem(await fleet(gateway, org, organisation="other"), 404, "not-found")
    body = problem(await fleet(gateway, org), 422, "validation-failed")
    assert body["errors"][0]["loc"] == ["query", "organisation"]

    project = make_token(scopes=["fleet:read"], project="web")
    assert ids(await listed(gateway, project, organisation="acme")) == {in_prod, in_staging}
    problem(await fleet(gateway, project, organisation="acme", project="shop"), 404, "not-found")

    env = make_token("service", scopes=["fleet:read"], project="web", environment="prod")
    assert ids(await listed(gateway, env, organisation="acme")) == {in_prod}
    assert ids(await listed(gateway, env, organisation="acme", project="web", environment="prod")) == {
        in_prod
    }
    problem(await fleet(gateway, env, organisation="acme", environment="staging"), 403, "forbidden")
    problem(await fleet(gateway, env, organisation="other"), 404, "not-found")

    summary = await gateway.client.get(
        "/v1/fleet/summary", params={"organisation": "acme"}, headers=auth(env)
    )
    assert summary.status_code == 200, summary.text
    assert [e["environment"]["id"] for e in summary.json()["environments"]] == [world.prod.id]
    for params, status, code in (
        ({"organisation": "other"}, 404, "not-found"),
        ({"organisation": "acme", "environment": "staging"}, 403, "forbidden"),
        ({}, 422, "validation-failed"),
    ):
        r = await gateway.client.get("/v1/fleet/summary", params=params, headers=auth(env))
        problem(r, status, code)


# -- the summary -------------------------------------------------------------------------------


async def test_the_summary_counts_revisions_nacks_and_statuses_per_environment(gateway, world, admin):
    for _ in range(2):
        await reported(gateway, admin, world.prod)
    refusing = await reported(gateway, admin, world.prod, revision=1, manifest_digest=world.prod.digest)
    await reported(
        gateway,
        admin,
        world.prod,
        refusing,
        status="nack",
        revision=2,
        manifest_digest=DIGEST,
        reason={"code": "digest-mismatch", "detail": ""},
    )
    await reported(
        gateway, admin, world.staging, status="nack", reason={"code": "bad-signature", "detail": "no key"}
    )
    await reported(gateway, admin, world.elsewhere)

    r = await gateway.client.get("/v1/fleet/summary", params={"organisation": "acme"}, headers=auth(admin))
    assert r.status_code == 200, r.text
    prod, staging = r.json()["environments"]
    assert prod == {
        "environment": {"organisation": "acme", "project": "web", "name": "prod", "id": world.prod.id},
        "clients": 3,
        "connected": 3,
        "stale": 0,
        "disconnected": 0,
        "without_revision": 0,
        "revisions": [
            {"revision": 2, "clients": 0, "connected": 0, "nacks": 1},
            {"revision": 1, "clients": 3, "connected": 3, "nacks": 0},
        ],
    }
    assert (staging["environment"]["name"], staging["clients"], staging["without_revision"]) == (
        "staging",
        1,
        1,
    )
    assert staging["revisions"] == [{"revision": 1, "clients": 0, "connected": 0, "nacks": 1}]

    r = await gateway.client.get("/v1/fleet/summary", headers=auth(admin))
    assert len(r.json()["environments"]) == 3
    r = await gateway.client.get("/v1/fleet/summary", params={"project": "Web"}, headers=auth(admin))
    assert problem(r, 422, "validation-failed")["errors"][0]["loc"] == ["query", "project"]


# -- POST /v1/acks -----------------------------------------------------------------------------


async def test_bad_reports_are_422_and_write_nothing(gateway, world, admin):
    await reported(gateway, admin, world.prod)  # something already there, which must not change
    before = await gateway.snapshot()
    nack_reason = {"code": "rollback", "detail": ""}
    cases: list[tuple[dict[str, Any], list[Any]]] = [
        (report_body(world.prod, "5F0C3B7E-1C2D-4E5F-8A9B-0C1D2E3F4A5B"), ["body", "client_id"]),
        (report_body(world.prod, "not-a-uuid"), ["body", "client_id"]),
        (report_body(world.prod, sdk={"name": "", "version": "1"}), ["body", "sdk", "name"]),
        (report_body(world.prod, sdk={"name": "x" * 65, "version": "1"}), ["body", "sdk", "name"]),
        (report_body(world.prod, sdk={"name": "x"}), ["body", "sdk", "version"]),
        (report_body(world.prod, labels={"Region": "eu"}), ["body"]),
        (report_body(world.prod, labels={f"k{i}": "v" for i in range(17)}), ["body"]),
        (report_body(world.prod, labels={"region": "x" * 257}), ["body"]),
        (report_body(world.prod, labels={"region": 3}), ["body", "labels", "region"]),
        (report_body(world.prod, status="maybe"), ["body", "status"]),
        (report_body(world.prod, reason=nack_reason), ["body"]),
        (report_body(world.prod, status="nack"), ["body"]),
        (
            report_body(world.prod, status="nack", reason={"code": "nope", "detail": ""}),
            ["body", "reason", "code"],
        ),
        (
            report_body(world.prod, status="nack", reason={"code": "internal", "detail": "x" * 1001}),
            ["body", "reason", "detail"],
        ),
        (
            report_body(world.prod, status="nack", reason={"code": "internal", "detail": "", "x": 1}),
            ["body", "reason", "x"],
        ),
        (report_body(world.prod, status="nack", reason={"code": "internal"}), ["body", "reason", "detail"]),
        (report_body(world.prod, revision=0), ["body", "revision"]),
        (report_body(world.prod, revision=2**53), ["body", "revision"]),
        (report_body(world.prod, revision="1"), ["body", "revision"]),
        (report_body(world.prod, revision=True), ["body", "revision"]),
        (report_body(world.prod, revision=1.5), ["body", "revision"]),
        (report_body(world.prod, manifest_digest="sha256:" + "A" * 64), ["body", "manifest_digest"]),
        (report_body(world.prod, environment_id="prod"), ["body", "environment_id"]),
        (
            report_body(
                world.prod, subscription={"organisation": "Acme", "project": "web", "environment": "prod"}
            ),
            ["body", "subscription", "organisation"],
        ),
        (
            report_body(world.prod, subscription={"organisation": "acme", "project": "web"}),
            ["body", "subscription", "environment"],
        ),
        (report_body(world.prod, holds=None), ["body", "holds"]),
        ({k: v for k, v in report_body(world.prod).items() if k != "client_id"}, ["body", "client_id"]),
    ]
    for body, loc in cases:
        response = await report(gateway, admin, body)
        errors = problem(response, 422, "validation-failed")["errors"]
        assert errors[0]["loc"] == loc, (body, errors)
    for content in (b"{not json", b"[]", b""):
        headers = {**auth(admin), "Content-Type": "application/json"}
        problem(
            await gateway.client.post("/v1/acks", content=content, headers=headers), 422, "validation-failed"
        )
    headers = {**auth(admin), "Content-Type": "text/plain"}
    problem(
        await gateway.client.post("/v1/acks", content=b"{}", headers=headers), 415, "unsupported-media-type"
    )
    await gateway.state.fleet.flush()
    assert await gateway.snapshot() == before


async def test_reports_that_contradict_the_environment_are_refused_and_write_nothing(gateway, world, admin):
    before = await gateway.snapshot()
    for body, status, code in (
        (report_body(world.prod, environment_id=world.staging.id), 422, "environment-mismatch"),
        (report_body(world.prod, manifest_digest=DIGEST), 422, "unknown-revision"),
        (
            report_body(
                world.prod, status="nack", manifest_digest=DIGEST, reason={"code": "internal", "detail": ""}
            ),
            422,
            "unknown-revision",
        ),
        (
            report_body(world.prod, subscription={**world.prod.subscription(), "environment": "qa"}),
            404,
            "not-found",
        ),
        (
            report_body(world.prod, subscription={**world.prod.subscription(), "prompt_set": "nope"}),
            404,
            "not-found",
        ),
    ):
        problem(await report(gateway, admin, body), status, code)
    await gateway.state.fleet.flush()
    assert await gateway.snapshot() == before


async def test_reports_need_config_read_within_the_tokens_limits(gateway, world, make_token):
    before = await gateway.snapshot()
    prod_client = make_token("client", org="acme", project="web", environment="prod")
    for token, env, status, code in (
        (prod_client, world.staging, 403, "forbidden"),
        (prod_client, world.shop, 404, "not-found"),
        (prod_client, world.elsewhere, 404, "not-found"),
        (make_token(scopes=["fleet:read"]), world.prod, 403, "forbidden"),
        ("not-a-jwt", world.prod, 401, "invalid-token"),
    ):
        body = problem(await report(gateway, token, report_body(env)), status, code)
        if token != prod_client and status == 403:
            assert body["required_scope"] == "config:read"
    problem(await gateway.client.post("/v1/acks", json=report_body(world.prod)), 401, "invalid-token")
    await gateway.state.fleet.flush()
    assert await gateway.snapshot() == before

    r = await report(gateway, prod_client, report_body(world.prod))
    assert r.status_code == 204
    assert r.content == b""


async def test_a_report_of_a_revision_this_replica_has_not_loaded_yet_is_taken(gateway, world, admin):
    # Another replica may be a moment ahead on the feed: the revision cannot be checked here.
    client_id = await reported(gateway, admin, world.prod, revision=7, manifest_digest=DIGEST)
    [item] = await listed(gateway, admin)
    assert (item["client_id"], item["revision"]["number"]) == (client_id, 7)
