"""The registry going away and coming back (docs/push-gateway.md section 2): sessions stay open
and the gateway stays ready through the outage, the feed catches up from its cursor, and a cursor
the registry cannot serve makes it resync, even when the resync itself fails at first.

The gateway reaches the registry on a port these tests stop and start again (outagekit.py); the
seeder publishes through another port of the same registry meanwhile.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from live_registry import Seeder
from outagekit import OutageRegistry, registry_with_outages
from streamkit import Client, hello, open_client
from websockets.protocol import State

from anvil_common.jwt import TokenIssuer
from anvil_common.testing import TemplateDatabase
from anvil_wire.push import Ack, CloseCode, Delta, Snapshot, Welcome

AHEAD = 10**12  # an event id no registry has reached: the feed answers 400 cursor-ahead


@pytest.fixture
async def live_registry(
    registry_template: TemplateDatabase, keyset_file: Path, tmp_path: Path, issuer: TokenIssuer
) -> AsyncIterator[OutageRegistry]:
    async with registry_with_outages(
        registry_template, keyset_file, tmp_path / "registry-data", issuer=issuer.issuer
    ) as registry:
        yield registry


@pytest.fixture
def resyncs(gateway: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The heads the feed resynced from (each call, successful or not)."""
    feed = gateway.state.feed
    calls: list[int] = []
    resync: Callable[[int], Awaitable[None]] = feed.resync

    async def recording(head: int) -> None:
        calls.append(head)
        await resync(head)

    monkeypatch.setattr(feed, "resync", recording)
    return calls


async def subscribed(client: Client, gateway: Any) -> Welcome:
    """hello, welcome, the snapshot of revision 1, acked (and the ack taken by the gateway)."""
    await client.send(hello())
    welcome = await client.receive()
    assert isinstance(welcome, Welcome)
    snapshot = await client.receive()
    assert isinstance(snapshot, Snapshot)
    await client.send(Ack.of(snapshot))
    await gateway.until(lambda: [s.base for s in gateway.state.hub.all_subscribers()] == [1])
    return welcome


async def cut_off(gateway: Any, registry: OutageRegistry) -> None:
    """Stop the registry's port the gateway uses; return once the gateway's feed has failed."""
    await registry.go_away()
    await gateway.until(lambda: not gateway.state.feed.healthy)


async def publish(seed: Seeder, n: int) -> None:
    await seed.version("acme", "web", "greeting", f"Hello {{{{name}}}} #{n}")
    assert await seed.publish("acme", "web", "prod", {"greeting": n}) == n


async def head(seed: Seeder) -> int:
    r = await seed.http.get("/v1/events", params={"after": 0, "limit": 1}, headers=seed.headers)
    assert r.status_code == 200, r.text
    return int(r.json()["head"])


async def revisions_until(client: Client, last: int) -> list[int]:
    """The revisions the client is sent, up to ``last``."""
    got: list[int] = []
    while not got or got[-1] < last:
        message = await client.receive()
        assert isinstance(message, Snapshot | Delta), message
        got.append(message.revision)
    return got


def closes(gateway: Any) -> float:
    """Sessions the gateway closed, whatever the code."""
    families = gateway.state.metrics.registry.collect()
    return sum(s.value for f in families if f.name == "anvil_push_closes" for s in f.samples)


# -- the registry away -------------------------------------------------------------------------


async def test_while_the_registry_is_away_sessions_stay_open_and_the_gateway_stays_ready(
    gateway, acme, live_registry, client_token, make_token
):
    async with open_client(gateway.stream_url, client_token) as client:
        await subscribed(client, gateway)
        await cut_off(gateway, live_registry)
        assert await client.nothing_within(1.0)
        assert client.connection.state is State.OPEN
        assert len(gateway.state.hub.all_subscribers()) == 1
        assert closes(gateway) == 0
        r = await gateway.client.get("/readyz")
        assert (r.status_code, r.json()) == (200, {"status": "ready"})
        assert not gateway.state.feed.healthy  # still failing: nothing reached it


async def test_while_the_registry_is_away_the_fallback_serves_what_it_has_and_503_for_the_rest(
    gateway, acme, live_registry, make_token
):
    token = {"Authorization": f"Bearer {make_token('operator', org='acme')}"}
    config = "/v1/orgs/acme/projects/web/environments/{}/config"
    assert (await gateway.client.get(config.format("prod"), headers=token)).status_code == 200
    await cut_off(gateway, live_registry)
    r = await gateway.client.get(config.format("prod"), headers=token)
    assert (r.status_code, r.headers["etag"]) == (200, '"rev-1"')
    r = await gateway.client.get(config.format("staging"), headers=token)  # never loaded
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == "urn:anvil:problem:registry-unavailable"
    await live_registry.come_back()
    r = await gateway.client.get(config.format("staging"), headers=token)  # the failure was not kept
    assert r.status_code == 404, r.text
    assert r.json()["type"] == "urn:anvil:problem:no-revision"


async def test_once_the_registry_is_back_a_new_revision_reaches_the_client(
    gateway, acme, live_registry, client_token
):
    async with open_client(gateway.stream_url, client_token) as client:
        await subscribed(client, gateway)
        await cut_off(gateway, live_registry)
        await live_registry.come_back()
        await gateway.until(lambda: gateway.state.feed.healthy)
        await publish(acme, 2)
        delta = await client.receive()
        assert isinstance(delta, Delta)
        assert (delta.revision, delta.base_revision) == (2, 1)


async def test_revisions_published_while_the_feed_was_cut_off_arrive_after_it_returns_from_its_cursor(
    gateway, acme, live_registry, client_token, resyncs
):
    async with open_client(gateway.stream_url, client_token) as client:
        await subscribed(client, gateway)
        await cut_off(gateway, live_registry)
        await publish(acme, 2)
        await publish(acme, 3)
        latest = await head(acme)
        assert await client.nothing_within(0.5)  # the gateway cannot know yet
        await live_registry.come_back()
        got = await revisions_until(client, 3)
        assert got in ([2, 3], [3])  # in increasing order, ending at the newest
        await gateway.until(lambda: gateway.state.feed.cursor == latest)
        assert resyncs == []  # caught up from its cursor: the events after it were asked for


# -- a cursor the registry cannot serve --------------------------------------------------------


async def test_a_cursor_ahead_of_the_registry_makes_the_gateway_resync_and_follow_on(
    gateway, acme, live_registry, client_token, resyncs
):
    async with open_client(gateway.stream_url, client_token) as client:
        await subscribed(client, gateway)
        await cut_off(gateway, live_registry)
        await publish(acme, 2)  # its event lies before the head the resync starts from
        gateway.state.feed.cursor = AHEAD
        await live_registry.come_back()
        assert await revisions_until(client, 2) == [2]  # brought current by the resync
        assert resyncs == [await head(acme)]
        await publish(acme, 3)  # followed from the head again
        assert await revisions_until(client, 3) == [3]
        assert gateway.state.feed.cursor is not None
        assert gateway.state.feed.cursor < AHEAD


async def test_a_resync_reloads_the_revocation_list(gateway, acme, live_registry, resyncs):
    body = {"kind": "client", "name": "app", "org": "acme", "project": "web", "environment": "prod"}
    r = await acme.http.post("/v1/tokens", json=body, headers=acme.headers)
    assert r.status_code == 201, r.text
    token, jti = r.json()["token"], r.json()["id"]
    async with open_client(gateway.stream_url, token) as client:
        await subscribed(client, gateway)
        await cut_off(gateway, live_registry)
        r = await acme.http.delete(f"/v1/tokens/{jti}", headers=acme.headers)
        assert r.status_code in (200, 204), r.text
        gateway.state.feed.cursor = AHEAD  # its token.revoked event is never read
        await live_registry.come_back()
        assert (await client.closed())[0] == CloseCode.TOKEN_REVOKED
        assert len(resyncs) == 1
        assert jti in gateway.state.revocations


async def test_a_resync_closes_the_sessions_of_an_environment_archived_meanwhile(
    gateway, acme, live_registry, client_token, resyncs
):
    async with open_client(gateway.stream_url, client_token) as client:
        await subscribed(client, gateway)
        await cut_off(gateway, live_registry)
        r = await acme.http.delete("/v1/orgs/acme/projects/web/environments/prod", headers=acme.headers)
        assert r.status_code in (200, 204), r.text
        gateway.state.feed.cursor = AHEAD
        await live_registry.come_back()
        assert (await client.closed())[0] == CloseCode.ENVIRONMENT_ARCHIVED
        assert len(resyncs) == 1


async def test_a_resync_that_fails_is_retried_and_the_feed_goes_on(
    gateway, acme, live_registry, client_token, resyncs
):
    async with open_client(gateway.stream_url, client_token) as client:
        await subscribed(client, gateway)
        await cut_off(gateway, live_registry)
        await publish(acme, 2)
        gateway.state.feed.cursor = AHEAD
        faults = live_registry.faults
        assert faults is not None
        faults.failing.add("/v1/revocations")  # the resync's first call
        await live_registry.come_back()
        await gateway.until(lambda: len(resyncs) >= 2)  # tried again, not given up
        assert not gateway.state.feed.healthy
        r = await gateway.client.get("/readyz")
        assert r.status_code == 200, r.text
        faults.failing.clear()
        assert await revisions_until(client, 2) == [2]
        await gateway.until(lambda: gateway.state.feed.healthy)
        await publish(acme, 3)
        assert await revisions_until(client, 3) == [3]
