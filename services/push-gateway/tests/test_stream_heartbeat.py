"""Heartbeats (docs/push-protocol.md section 5): the gateway pings every heartbeat_seconds and
drops a connection whose peer stopped answering; one that answers stays."""

from __future__ import annotations

import pytest
from streamkit import hello, open_client

from anvil_wire.push import Welcome

pytestmark = pytest.mark.parametrize("settings_overrides", [{"heartbeat_seconds": 0.3}])


async def test_a_client_that_answers_pings_keeps_its_session(gateway, acme, client_token):
    async with open_client(gateway.stream_url, client_token, ping_interval=None) as client:
        await client.send(hello())
        welcome = await client.receive()
        assert isinstance(welcome, Welcome)
        assert welcome.heartbeat_seconds == 0.3
        await client.receive()  # the snapshot of revision 1
        assert await client.nothing_within(1.5)  # pings came and went, answered by the library
        assert len(gateway.state.hub.all_subscribers()) == 1


async def test_a_client_that_stops_answering_pings_is_dropped(gateway, acme, client_token):
    async with open_client(gateway.stream_url, client_token, ping_interval=None) as client:
        await client.send(hello())
        assert isinstance(await client.receive(), Welcome)
        client.connection.transport.pause_reading()  # it reads nothing more, so it answers nothing
        await gateway.until(lambda: not gateway.state.hub.all_subscribers(), timeout=15)
        client.connection.transport.resume_reading()
