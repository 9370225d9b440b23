"""Draining, health and metrics (docs/push-protocol.md section 5.2, docs/push-gateway.md section
4): /livez, /readyz (and draining's 503s), what /metrics says about sessions, acks and revisions,
and one session's ack shown by the fleet view."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from streamkit import Client, handshake_refusal, hello, open_client

from anvil_wire.push import Ack, CloseCode, Delta, Snapshot, Welcome


@contextlib.asynccontextmanager
async def subscribed(gateway: Any, token: str, client_id: str | None = None) -> AsyncIterator[Client]:
    """A client of acme/web/prod past welcome and the snapshot of the current revision."""
    async with open_client(gateway.stream_url, token) as client:
        await client.send(hello(client_id=client_id))
        assert isinstance(await client.receive(), Welcome)
        assert isinstance(await client.receive(), Snapshot)
        yield client


async def scrape(gateway: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of GET /metrics: (name, labels) -> value."""
    r = await gateway.client.get("/metrics")
    assert r.status_code == 200, r.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


async def sample(gateway: Any, name: str, **labels: str) -> float | None:
    return (await scrape(gateway)).get((name, frozenset(labels.items())))


# -- health ------------------------------------------------------------------------------------


async def test_livez_answers_ok(gateway):
    r = await gateway.client.get("/livez")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


async def test_readyz_is_ok_once_keys_feed_and_schema_are_there(gateway):
    r = await gateway.client.get("/readyz")
    assert (r.status_code, r.json()) == (200, {"status": "ready"})


# -- draining ----------------------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [{"drain_seconds": 0.2}])
async def test_draining_closes_every_session_with_1012_and_refuses_what_comes_next(
    gateway, acme, client_token
):
    async with subscribed(gateway, client_token) as first, subscribed(gateway, client_token) as second:
        await gateway.state.stream.drain()
        assert (await first.closed())[0] == CloseCode.SERVICE_RESTART
        assert (await second.closed())[0] == CloseCode.SERVICE_RESTART
    status, problem = await handshake_refusal(gateway.stream_url, client_token)
    assert (status, problem["type"]) == (503, "urn:anvil:problem:draining")
    r = await gateway.client.get("/readyz")
    assert r.status_code == 503
    assert (r.json()["type"], r.json()["detail"]) == ("urn:anvil:problem:service-unavailable", "draining")
    samples = await scrape(gateway)
    assert samples[("anvil_push_closes_total", frozenset({("code", "1012")}))] == 2
    assert samples[("anvil_push_handshakes_refused_total", frozenset({("status", "503")}))] == 1
    await gateway.until(lambda: gateway.state.hub.all_subscribers() == [])
    assert await sample(gateway, "anvil_push_connections") == 0


# -- metrics -----------------------------------------------------------------------------------


async def test_the_connections_gauge_counts_the_open_sessions(gateway, acme, client_token):
    assert await sample(gateway, "anvil_push_connections") == 0
    async with subscribed(gateway, client_token):
        async with subscribed(gateway, client_token):
            assert await sample(gateway, "anvil_push_connections") == 2
        await gateway.until(lambda: len(gateway.state.hub.all_subscribers()) == 1)
        assert await sample(gateway, "anvil_push_connections") == 1
    await gateway.until(lambda: gateway.state.hub.all_subscribers() == [])
    assert await sample(gateway, "anvil_push_connections") == 0


async def test_the_acks_counter_counts_each_ack(gateway, acme, client_token):
    assert await sample(gateway, "anvil_push_acks_total") == 0
    async with subscribed(gateway, client_token) as client:
        channel = gateway.state.hub.by_key[("acme", "web", "prod")]
        await client.send(Ack(channel.environment_id, 1, channel.current.manifest_digest))
        await gateway.until(lambda: gateway.state.hub.all_subscribers()[0].base == 1)
        assert await sample(gateway, "anvil_push_acks_total") == 1


async def test_the_revision_gauge_follows_each_published_revision(gateway, acme, client_token):
    async with subscribed(gateway, client_token) as client:
        environment_id = gateway.state.hub.by_key[("acme", "web", "prod")].environment_id
        await acme.version("acme", "web", "greeting", "Hi {{name}}")
        await acme.publish("acme", "web", "prod", {"greeting": 2})
        message = await client.receive()
        assert isinstance(message, Snapshot | Delta)
        assert message.revision == 2
        assert await sample(gateway, "anvil_push_revision", environment=environment_id) == 2


async def test_the_revision_gauge_shows_an_environment_as_soon_as_it_is_loaded(gateway, acme, client_token):
    async with subscribed(gateway, client_token):
        environment_id = gateway.state.hub.by_key[("acme", "web", "prod")].environment_id
        assert await sample(gateway, "anvil_push_revision", environment=environment_id) == 1


# -- the fleet view ----------------------------------------------------------------------------


async def test_a_sessions_ack_shows_in_the_fleet_view(gateway, acme, client_token, make_token):
    client_id = "6f1d2c3b-0000-4000-8000-00000000abcd"
    async with subscribed(gateway, client_token, client_id) as client:
        channel = gateway.state.hub.by_key[("acme", "web", "prod")]
        await client.send(Ack(channel.environment_id, 1, channel.current.manifest_digest))
        await gateway.until(lambda: gateway.state.hub.all_subscribers()[0].base == 1)
        await gateway.state.fleet.flush()
        token = make_token("operator", org="acme", scopes=["fleet:read"])
        headers = {"Authorization": f"Bearer {token}"}
        r = await gateway.client.get("/v1/fleet", params={"organisation": "acme"}, headers=headers)
        assert r.status_code == 200, r.text
        [item] = r.json()["items"]
        assert (item["client_id"], item["transport"], item["status"]) == (client_id, "websocket", "connected")
        assert item["environment"]["id"] == channel.environment_id
        held = item["revision"]
        assert (held["number"], held["manifest_digest"]) == (1, channel.current.manifest_digest)
