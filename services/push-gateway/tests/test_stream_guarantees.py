"""What a session guarantees (docs/push-protocol.md section 4.2): revisions in increasing order and
never below what the client holds, the newest only rather than every one, and acks or nacks of
revisions not sent on the connection ignored."""

from __future__ import annotations

from typing import Any

from live_registry import Seeder
from streamkit import Client, hello, open_client

from anvil_wire.push import Ack, Delta, Holds, Nack, Snapshot, Welcome

OTHER_ENVIRONMENT = "00000000-0000-4000-8000-000000000000"
UNKNOWN_DIGEST = "sha256:" + "0" * 64


async def publish(seed: Seeder, n: int) -> None:
    await seed.version("acme", "web", "greeting", f"Hello {{{{name}}}} #{n}")
    assert await seed.publish("acme", "web", "prod", {"greeting": n}) == n


async def welcomed(client: Client, holds: Holds | None = None) -> Welcome:
    await client.send(hello(holds=holds))
    welcome = await client.receive()
    assert isinstance(welcome, Welcome)
    return welcome


async def revision(client: Client) -> Snapshot | Delta:
    message = await client.receive()
    assert isinstance(message, Snapshot | Delta), message
    return message


def session(gateway: Any) -> Any:
    sessions = gateway.state.hub.all_subscribers()
    assert len(sessions) == 1
    return sessions[0]


def metric(gateway: Any, name: str, **labels: str) -> float:
    value = gateway.state.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


async def test_revisions_arrive_in_increasing_order_ending_at_the_newest(gateway, acme, client_token):
    async with open_client(gateway.stream_url, client_token) as client:
        await welcomed(client)
        got = [(await revision(client)).revision]
        for n in range(2, 6):
            await publish(acme, n)
        while got[-1] < 5:
            got.append((await revision(client)).revision)
        assert got == sorted(set(got))
        assert (got[0], got[-1]) == (1, 5)
        assert await client.nothing_within(0.3)


async def test_a_client_behind_by_several_revisions_gets_only_the_newest(gateway, acme, client_token):
    async with open_client(gateway.stream_url, client_token) as client:
        welcome = await welcomed(client)
        first = await revision(client)
    await publish(acme, 2)
    await publish(acme, 3)
    holds = Holds(welcome.environment_id, 1, first.manifest_digest)
    async with open_client(gateway.stream_url, client_token) as client:
        await gateway.until(lambda: gateway.state.hub.by_key[("acme", "web", "prod")].current.number == 3)
        await welcomed(client, holds)
        delta = await revision(client)
        assert isinstance(delta, Delta)
        assert (delta.base_revision, delta.revision) == (1, 3)
        assert await client.nothing_within(0.3)


async def test_a_client_holding_a_revision_ahead_of_the_gateway_gets_nothing_until_a_newer_one(
    gateway, acme, client_token
):
    async with open_client(gateway.stream_url, client_token) as client:
        welcome = await welcomed(client)
        await revision(client)
    # Another replica (or a restored registry) gave it revision 3 while this one has 1.
    holds = Holds(welcome.environment_id, 3, UNKNOWN_DIGEST)
    async with open_client(gateway.stream_url, client_token) as client:
        welcome = await welcomed(client, holds)
        assert welcome.current is not None
        assert welcome.current.revision == 1
        assert await client.nothing_within(0.5)
        await publish(acme, 2)
        await publish(acme, 3)
        assert await client.nothing_within(0.5)
        await publish(acme, 4)
        newer = await revision(client)
        assert isinstance(newer, Snapshot)  # the gateway never had what the client holds
        assert newer.revision == 4


async def test_a_client_holding_another_environments_revision_gets_the_current_one(
    gateway, acme, client_token
):
    async with open_client(gateway.stream_url, client_token) as client:
        await welcomed(client, Holds(OTHER_ENVIRONMENT, 7, UNKNOWN_DIGEST))
        snapshot = await revision(client)
        assert isinstance(snapshot, Snapshot)
        assert snapshot.revision == 1


async def test_acks_of_revisions_not_sent_on_the_connection_are_ignored(gateway, acme, client_token):
    async with open_client(gateway.stream_url, client_token) as client:
        welcome = await welcomed(client)
        first = await revision(client)
        env = welcome.environment_id
        await client.send(Ack(env, 2, first.manifest_digest))  # never sent (nor published)
        await client.send(Ack(OTHER_ENVIRONMENT, 1, first.manifest_digest))
        await client.send(Ack(env, 1, UNKNOWN_DIGEST))  # not what was sent as revision 1
        await client.send(Ack.of(first))
        # Messages are handled in order: once the last ack counts, the others were ignored.
        await gateway.until(lambda: metric(gateway, "anvil_push_acks_total") >= 1)
        assert metric(gateway, "anvil_push_acks_total") == 1
        assert session(gateway).base == 1
        await publish(acme, 2)
        delta = await revision(client)  # from the acked base, not from the ignored "2"
        assert isinstance(delta, Delta)
        assert (delta.base_revision, delta.revision) == (1, 2)


async def test_an_ack_of_an_older_revision_never_sent_on_the_connection_is_ignored(
    gateway, acme, client_token
):
    async with open_client(gateway.stream_url, client_token) as client:
        welcome = await welcomed(client)
        first = await revision(client)
    await publish(acme, 2)
    async with open_client(gateway.stream_url, client_token) as client:
        await gateway.until(lambda: gateway.state.hub.by_key[("acme", "web", "prod")].current.number == 2)
        await welcomed(client)
        second = await revision(client)
        assert second.revision == 2
        await client.send(Ack(welcome.environment_id, 1, first.manifest_digest))  # sent on the other one
        await client.send(Nack.of(second, "internal", "handled after the ack"))
        await gateway.until(lambda: metric(gateway, "anvil_push_nacks_total", reason="internal") >= 1)
        assert metric(gateway, "anvil_push_acks_total") == 0
        assert session(gateway).base is None


async def test_nacks_of_revisions_not_sent_on_the_connection_are_not_counted(gateway, acme, client_token):
    async with open_client(gateway.stream_url, client_token) as client:
        welcome = await welcomed(client)
        first = await revision(client)
        env = welcome.environment_id
        await client.send(Nack(env, 2, first.manifest_digest, "internal", "never sent"))
        await client.send(Nack(OTHER_ENVIRONMENT, 1, first.manifest_digest, "internal", "other environment"))
        await client.send(Nack.of(first, "invalid-prompt", "sent, refused"))
        await gateway.until(lambda: metric(gateway, "anvil_push_nacks_total", reason="invalid-prompt") >= 1)
        assert metric(gateway, "anvil_push_nacks_total", reason="invalid-prompt") == 1
        assert metric(gateway, "anvil_push_nacks_total", reason="internal") == 0
        assert session(gateway).base is None
