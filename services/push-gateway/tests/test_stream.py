"""/v1/stream (docs/push-protocol.md): a real registry publishing, the gateway following its
feed, real WebSocket clients verifying what they get with the registry's keys."""

from __future__ import annotations

from typing import Any

import pytest
from live_registry import Seeder
from streamkit import Client, hello, open_client

from anvil_wire import KeySet, public_keys_from_jwks
from anvil_wire.push import (
    Ack,
    Delta,
    Holds,
    Nack,
    Resync,
    Snapshot,
    Welcome,
    rebuild_document,
    verify_pushed,
)
from anvil_wire.revisions import VerifiedRevision


@pytest.fixture
async def acme(seed: Seeder) -> Seeder:
    """acme/web with greeting (using the footer partial), footer and farewell; prod serves
    greeting and farewell at revision 1."""
    await seed.org("acme", "web")
    await seed.version("acme", "web", "footer", "-- the Acme team")
    await seed.version("acme", "web", "greeting", "Hello {{name}} {{> footer@1}}")
    await seed.version("acme", "web", "farewell", "Bye {{name}}")
    await seed.environment("acme", "web", "prod")
    await seed.publish("acme", "web", "prod", {"greeting": 1, "farewell": 1})
    return seed


@pytest.fixture
def client_token(make_token: Any) -> str:
    return str(make_token("client", org="acme", project="web", environment="prod"))


def verify(keyset: KeySet, message: Snapshot, environment_id: str, prompts: Any = None) -> VerifiedRevision:
    keys = public_keys_from_jwks(keyset.public_jwks())
    expected = (message.revision, message.manifest_digest)
    return verify_pushed(
        message.document, keys, environment_id=environment_id, prompts=prompts, expected=expected
    )


async def subscribe(client: Client, **kwargs: Any) -> Welcome:
    await client.send(hello(**kwargs))
    welcome = await client.receive()
    assert isinstance(welcome, Welcome)
    return welcome


async def test_a_client_gets_welcome_then_a_snapshot_it_verifies_with_the_registrys_keys(
    gateway, acme, client_token, keyset
):
    async with open_client(gateway.stream_url, client_token) as client:
        welcome = await subscribe(client)
        assert welcome.environment_name == "prod"
        assert welcome.current is not None
        assert welcome.current.revision == 1
        snapshot = await client.receive()
        assert isinstance(snapshot, Snapshot)
        assert (snapshot.revision, snapshot.manifest_digest) == (1, welcome.current.manifest_digest)
        verified = verify(keyset, snapshot, welcome.environment_id)
        assert sorted(verified.manifest.prompts) == ["farewell", "greeting"]
        assert verified.render("greeting", {"name": "Ada"}) == "Hello Ada -- the Acme team"


async def test_a_client_holding_the_current_revision_gets_nothing_after_welcome(gateway, acme, client_token):
    async with open_client(gateway.stream_url, client_token) as client:
        welcome = await subscribe(client)
        assert welcome.current is not None
        await client.receive()
    holds = Holds(welcome.environment_id, 1, welcome.current.manifest_digest)
    async with open_client(gateway.stream_url, client_token) as client:
        await subscribe(client, holds=holds)
        assert await client.nothing_within(0.5)


async def test_a_new_revision_reaches_an_acked_client_as_a_delta_it_rebuilds_and_verifies(
    gateway, acme, client_token, keyset
):
    async with open_client(gateway.stream_url, client_token) as client:
        welcome = await subscribe(client)
        first = await client.receive()
        assert isinstance(first, Snapshot)
        await client.send(Ack(welcome.environment_id, 1, first.manifest_digest))
        await gateway.until(lambda: _session(gateway).base == 1)
        await acme.version("acme", "web", "farewell", "Goodbye {{name}}")
        await acme.publish("acme", "web", "prod", {"farewell": 2})
        delta = await client.receive()
        assert isinstance(delta, Delta)
        assert (delta.revision, delta.base_revision) == (2, 1)
        assert len(delta.contents) == 1  # only the changed prompt's content travels
        document = rebuild_document(delta, 1, first.document["contents"], None)
        keys = public_keys_from_jwks(keyset.public_jwks())
        verified = verify_pushed(
            document,
            keys,
            environment_id=welcome.environment_id,
            prompts=None,
            expected=(2, delta.manifest_digest),
        )
        assert verified.render("farewell", {"name": "Ada"}) == "Goodbye Ada"


async def test_a_client_that_has_not_acked_gets_the_next_revision_as_a_snapshot(gateway, acme, client_token):
    async with open_client(gateway.stream_url, client_token) as client:
        await subscribe(client)
        assert isinstance(await client.receive(), Snapshot)
        await acme.version("acme", "web", "farewell", "Goodbye {{name}}")
        await acme.publish("acme", "web", "prod", {"farewell": 2})
        second = await client.receive()
        assert isinstance(second, Snapshot)
        assert second.revision == 2


async def test_a_nacked_revision_leaves_the_client_on_its_base_and_is_counted(gateway, acme, client_token):
    async with open_client(gateway.stream_url, client_token) as client:
        welcome = await subscribe(client)
        first = await client.receive()
        await client.send(
            Nack(welcome.environment_id, 1, first.manifest_digest, "invalid-prompt", "no footer")
        )
        await gateway.until(lambda: _metric(gateway, "anvil_push_nacks_total", reason="invalid-prompt") == 1)
        assert _session(gateway).base is None


async def test_a_rollback_arrives_as_a_higher_revision_with_the_old_content(
    gateway, acme, client_token, keyset
):
    async with open_client(gateway.stream_url, client_token) as client:
        welcome = await subscribe(client)
        first = await client.receive()
        await client.send(Ack(welcome.environment_id, 1, first.manifest_digest))
        await acme.version("acme", "web", "greeting", "Hi {{name}}")
        await acme.publish("acme", "web", "prod", {"greeting": 2})
        second = await client.receive()
        assert second.revision == 2
        r = await acme.http.post(
            "/v1/orgs/acme/projects/web/environments/prod/rollbacks",
            json={"to_revision": 1},
            headers={**acme.headers, "If-Match": '"rev-2"'},
        )
        assert r.status_code == 201, r.text
        third = await client.receive()
        assert isinstance(third, Snapshot)  # revision 2 was never acked
        verified = verify(keyset, third, welcome.environment_id)
        assert (verified.manifest.revision, verified.manifest.rollback_of) == (3, 1)
        assert verified.render("greeting", {"name": "Ada"}) == "Hello Ada -- the Acme team"


async def test_a_prompt_set_subscription_gets_the_signed_manifest_and_only_its_prompts(
    gateway, acme, client_token, keyset
):
    await acme.prompt_set("acme", "web", "welcome", ["greeting"])
    async with open_client(gateway.stream_url, client_token) as client:
        welcome = await subscribe(client, prompt_set="welcome")
        snapshot = await client.receive()
        assert isinstance(snapshot, Snapshot)
        assert snapshot.prompt_set is not None
        assert list(snapshot.prompt_set.prompts) == ["greeting"]
        verified = verify(keyset, snapshot, welcome.environment_id, prompts=["greeting"])
        assert len(snapshot.document["contents"]) == 2  # greeting and the footer it reaches
        assert verified.render("greeting", {"name": "Ada"}) == "Hello Ada -- the Acme team"


async def test_resync_answers_with_a_snapshot_of_the_current_revision(gateway, acme, client_token):
    async with open_client(gateway.stream_url, client_token) as client:
        welcome = await subscribe(client)
        first = await client.receive()
        await client.send(Ack(welcome.environment_id, 1, first.manifest_digest))
        await client.send(Resync())
        again = await client.receive()
        assert isinstance(again, Snapshot)
        assert again.revision == 1


async def test_a_browser_may_carry_its_token_in_a_second_subprotocol(gateway, acme, client_token):
    offered = ["anvil.push.v1", f"anvil.bearer.{client_token}"]
    async with open_client(gateway.stream_url, None, subprotocols=offered) as client:
        assert client.connection.subprotocol == "anvil.push.v1"
        await subscribe(client)


def _session(gateway: Any) -> Any:
    sessions = gateway.state.hub.all_subscribers()
    assert len(sessions) == 1
    return sessions[0]


def _metric(gateway: Any, name: str, **labels: str) -> float:
    value = gateway.state.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)
