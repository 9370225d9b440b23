"""Every way /v1/stream refuses (docs/push-protocol.md sections 4.1, 5 and 6): the handshake's
HTTP problems, and the close codes of a session, each with its exact outcome."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from streamkit import handshake_refusal, hello, open_client

from anvil_wire.push import Ack, CloseCode, Welcome, encode


@pytest.mark.parametrize(
    ("token", "status", "code"),
    [
        (None, 401, "invalid-token"),
        ("not-a-jwt", 401, "invalid-token"),
        ("expired", 401, "token-expired"),
        ("wrong-audience", 401, "invalid-token"),
        ("no-config-read", 403, "forbidden"),
    ],
)
async def test_a_handshake_without_a_valid_token_is_refused_with_a_problem(
    gateway, acme, make_token, issuer, token, status, code
):
    expired, _ = issuer.issue(
        subject="client:app",
        kind="client",
        audience="anvil-push-gateway",
        scopes=["config:read"],
        ttl_seconds=60,
        org="acme",
        project="web",
        environment="prod",
        now=int(time.time()) - 3600,
    )
    tokens = {
        "expired": expired,
        "wrong-audience": make_token(
            "client", org="acme", project="web", environment="prod", audience="anvil-registry"
        ),
        "no-config-read": make_token("operator", org="acme", scopes=["fleet:read"]),
    }
    got = await handshake_refusal(gateway.stream_url, tokens.get(token, token))
    assert got[0] == status
    assert got[1]["type"] == f"urn:anvil:problem:{code}"


async def test_a_handshake_without_the_subprotocol_is_refused(gateway, acme, client_token):
    status, problem = await handshake_refusal(gateway.stream_url, client_token, subprotocols=[])
    assert (status, problem["type"]) == (400, "urn:anvil:problem:unsupported-subprotocol")


async def test_a_handshake_on_another_path_is_not_found(gateway, acme, client_token):
    url = gateway.stream_url.replace("/v1/stream", "/v1/other")
    status, problem = await handshake_refusal(url, client_token)
    assert (status, problem["type"]) == (404, "urn:anvil:problem:not-found")


@pytest.mark.parametrize("settings_overrides", [{"allowed_origins": ["https://app.example"]}])
async def test_a_browser_from_an_origin_not_allowed_is_refused(gateway, acme, client_token):
    status, problem = await handshake_refusal(gateway.stream_url, client_token, origin="https://evil.example")
    assert (status, problem["type"]) == (403, "urn:anvil:problem:origin-not-allowed")
    async with open_client(gateway.stream_url, client_token, origin="https://app.example") as client:
        await client.send(hello())
        assert isinstance(await client.receive(), Welcome)


@pytest.mark.parametrize("settings_overrides", [{"max_connections_per_token": 1}])
async def test_a_token_above_its_connection_limit_is_refused(gateway, acme, client_token):
    async with open_client(gateway.stream_url, client_token) as client:
        await client.send(hello())
        await client.receive()
        status, problem = await handshake_refusal(gateway.stream_url, client_token)
        assert (status, problem["type"]) == (429, "urn:anvil:problem:too-many-connections")


async def test_a_revoked_token_is_refused_at_the_handshake_and_closes_live_sessions(gateway, acme):
    body = {"kind": "client", "name": "app", "org": "acme", "project": "web", "environment": "prod"}
    r = await acme.http.post("/v1/tokens", json=body, headers=acme.headers)
    assert r.status_code == 201, r.text
    token, jti = r.json()["token"], r.json()["id"]
    async with open_client(gateway.stream_url, token) as client:
        await client.send(hello())
        await client.receive()
        r = await acme.http.delete(f"/v1/tokens/{jti}", headers=acme.headers)
        assert r.status_code in (200, 204), r.text
        assert (await client.closed())[0] == CloseCode.TOKEN_REVOKED
    status, problem = await handshake_refusal(gateway.stream_url, token)
    assert (status, problem["detail"]) == (401, "token has been revoked")


async def test_a_session_closes_when_its_token_expires(gateway, acme, make_token):
    token = make_token("client", org="acme", project="web", environment="prod", ttl=1)
    async with open_client(gateway.stream_url, token) as client:
        await client.send(hello())
        await client.receive()
        assert (await client.closed())[0] == CloseCode.TOKEN_EXPIRED


async def test_no_hello_in_time_closes_with_hello_timeout(gateway, acme, client_token):
    async with open_client(gateway.stream_url, client_token) as client:
        assert (await client.closed())[0] == CloseCode.HELLO_TIMEOUT


@pytest.mark.parametrize(
    "data",
    [
        "not json",
        "[]",
        '{"type": "hello"}',
        '{"type": "dance"}',
        b"\x00binary",
        encode(Ack("00000000-0000-4000-8000-000000000000", 1, "sha256:" + "0" * 64)).decode(),
    ],
)
async def test_a_first_message_that_is_not_a_valid_hello_is_a_protocol_error(
    gateway, acme, client_token, data
):
    async with open_client(gateway.stream_url, client_token) as client:
        await client.connection.send(data)
        assert (await client.closed())[0] == CloseCode.PROTOCOL_ERROR


async def test_a_second_hello_is_a_protocol_error(gateway, acme, client_token):
    async with open_client(gateway.stream_url, client_token) as client:
        await client.send(hello())
        await client.receive()
        await client.send(hello())
        assert (await client.closed())[0] == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize(
    ("subscription", "code"),
    [
        ({"environment": "staging"}, CloseCode.FORBIDDEN),
        ({"org": "other"}, CloseCode.FORBIDDEN),
    ],
)
async def test_a_subscription_outside_the_tokens_limits_is_forbidden(
    gateway, acme, client_token, subscription, code
):
    async with open_client(gateway.stream_url, client_token) as client:
        await client.send(hello(**subscription))
        assert (await client.closed())[0] == code


@pytest.mark.parametrize(
    "subscription",
    [{"environment": "nowhere"}, {"project": "nowhere"}, {"prompt_set": "nowhere"}],
)
async def test_a_subscription_to_what_does_not_exist_is_not_found(gateway, acme, make_token, subscription):
    token = make_token("operator", org="acme")
    async with open_client(gateway.stream_url, token) as client:
        await client.send(hello(**subscription))
        assert (await client.closed())[0] == CloseCode.NOT_FOUND


async def test_archiving_the_environment_closes_its_sessions_and_refuses_new_ones(
    gateway, acme, client_token
):
    async with open_client(gateway.stream_url, client_token) as client:
        await client.send(hello())
        await client.receive()
        r = await acme.http.delete("/v1/orgs/acme/projects/web/environments/prod", headers=acme.headers)
        assert r.status_code in (200, 204), r.text
        assert (await client.closed())[0] == CloseCode.ENVIRONMENT_ARCHIVED
    async with open_client(gateway.stream_url, client_token) as client:
        await client.send(hello())
        assert (await client.closed())[0] == CloseCode.ENVIRONMENT_ARCHIVED


@pytest.mark.parametrize("settings_overrides", [{"max_message_bytes": 2048}])
async def test_a_client_message_above_the_limit_closes_with_1009(gateway, acme, client_token):
    async with open_client(gateway.stream_url, client_token) as client:
        await client.send(hello(labels={f"k{i}": "x" * 200 for i in range(16)}))
        assert (await client.closed())[0] == 1009


@pytest.mark.parametrize("settings_overrides", [{"max_buffer_bytes": 65536, "send_timeout_seconds": 1.0}])
async def test_a_client_that_stops_reading_is_closed_as_too_slow_not_buffered(gateway, acme, client_token):
    # A small receive buffer, and no reading: the kernel's buffers fill after a few revisions,
    # then the gateway's own (max_buffer_bytes) or its send timeout closes the connection.
    sock = socket.create_connection(("127.0.0.1", int(gateway.url.rsplit(":", 1)[1])))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    async with open_client(gateway.stream_url, client_token, sock=sock) as client:
        await client.send(hello())
        assert isinstance(await client.receive(), Welcome)
        client.connection.transport.pause_reading()
        for n in range(2, 60):
            await acme.version("acme", "web", "greeting", f"{'x' * 200_000} {n}")
            await acme.publish("acme", "web", "prod", {"greeting": n})
            if _closes(gateway, CloseCode.TOO_SLOW):
                break
        await gateway.until(lambda: _closes(gateway, CloseCode.TOO_SLOW) >= 1, timeout=30)
        buffered = [
            s.connection.transport.get_write_buffer_size() for s in gateway.state.hub.all_subscribers()
        ]
        assert all(size < 65536 + 2 * 210_000 for size in buffered)  # bounded: nothing queued after the close
        client.connection.transport.resume_reading()


def _closes(gateway: Any, code: int) -> float:
    value = gateway.state.metrics.registry.get_sample_value("anvil_push_closes_total", {"code": str(code)})
    return 0.0 if value is None else float(value)
