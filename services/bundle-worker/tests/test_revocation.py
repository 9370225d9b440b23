"""Revoked tokens: a token revoked in the registry (DELETE /v1/tokens/{jti}) is refused by the
worker once its revocation cache has reloaded the registry's list (GET /v1/revocations); an
unreachable registry leaves the last list in force. A real registry on a loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from anvil_bundle_worker.revocations import EXPIRY_LEEWAY_SECONDS, RevocationCache
from anvil_bundle_worker.state import WorkerState
from anvil_common.jwt import TokenIssuer
from anvil_common.testing import serve
from anvil_wire import KeySet

PROBLEM = "application/problem+json"
BUNDLE = {"Content-Type": "application/vnd.anvil.bundle"}
EXPORT = {
    "organisation": "acme",
    "selection": {"kind": "organisation"},
    "history": "latest",
    "environments": False,
}
LOGGER = "anvil.bundle_worker.revocations"
ISSUER = "http://registry.test"  # conftest's: the registry's public URL
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens
LiveRegistry = Any  # conftest.LiveRegistry (conftest is not importable by name here)
Seeder = Any  # conftest.Seeder


class Endpoint:
    """The live registry's app served on a port of its own, which a test can shut down."""

    def __init__(self, url: str, stack: contextlib.AsyncExitStack) -> None:
        self.url = url
        self._stack = stack

    async def stop(self) -> None:
        await self._stack.aclose()


@pytest.fixture
async def endpoint(live_registry: LiveRegistry) -> AsyncIterator[Endpoint]:
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(serve(live_registry.app))
        yield Endpoint(url, stack)


@pytest.fixture
def registry_url(endpoint: Endpoint) -> str:
    return endpoint.url


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Reloads happen on demand in these tests (invalidate()) except where a test asks for one.
    return {"revocation_refresh_seconds": 3600.0}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def issue_peer_token(registry: LiveRegistry, seed: Seeder, name: str) -> dict[str, Any]:
    """A peer token as a peer instance would hold it: issued by our registry for our worker."""
    body = {
        "kind": "peer",
        "name": name,
        "org": "acme",
        "scopes": ["bundles:import", "bundles:export"],
        "audience": ["anvil-bundle-worker"],
    }
    r = await registry.client.post("/v1/tokens", json=body, headers=seed.headers)
    assert r.status_code == 201, r.text
    issued: dict[str, Any] = r.json()
    return issued


async def revoke(registry: LiveRegistry, seed: Seeder, jti: str) -> None:
    r = await registry.client.delete(f"/v1/tokens/{jti}", headers=seed.headers)
    assert r.status_code == 200, r.text
    assert r.json()["revoked_at"] is not None


async def push(client: httpx.AsyncClient, token: str) -> httpx.Response:
    """A peer pushing into us: an upload (validated later, by the job)."""
    return await client.post(
        "/v1/imports",
        params={"organisation": "acme"},
        content=b"not a bundle",
        headers={**bearer(token), **BUNDLE},
    )


async def pull(client: httpx.AsyncClient, token: str) -> httpx.Response:
    """A peer pulling from us: an export request."""
    return await client.post("/v1/exports", json=EXPORT, headers=bearer(token))


def assert_revoked(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == PROBLEM
    problem = r.json()
    assert problem["type"] == "urn:anvil:problem:invalid-token"
    assert problem["detail"] == "token has been revoked"


async def test_a_revoked_peer_token_is_cut_off_after_the_refresh(
    client: httpx.AsyncClient, state: WorkerState, live_registry: LiveRegistry, seed: Seeder
) -> None:
    await seed.org("acme")
    peer = await issue_peer_token(live_registry, seed, "instance-b")
    other = await issue_peer_token(live_registry, seed, "instance-c")

    pushed = await push(client, peer["token"])
    assert pushed.status_code == 202, pushed.text
    pulled = await pull(client, peer["token"])
    assert pulled.status_code == 202, pulled.text
    job = f"/v1/jobs/{pulled.json()['id']}"
    assert (await client.get(job, headers=bearer(peer["token"]))).status_code == 200
    assert state.revocations.loaded_at > float("-inf")  # the first request loaded the list

    await revoke(live_registry, seed, peer["id"])
    # Until the cache is due, this replica has not heard of it (the documented interval) ...
    assert (await client.get(job, headers=bearer(peer["token"]))).status_code == 200
    # ... once it is (revocation_refresh_seconds later), every route refuses the token.
    state.revocations.invalidate()
    assert_revoked(await push(client, peer["token"]))
    assert_revoked(await pull(client, peer["token"]))
    assert_revoked(await client.get(job, headers=bearer(peer["token"])))
    assert_revoked(await client.get(f"/v1/bundles/sha256:{'0' * 64}", headers=bearer(peer["token"])))
    assert peer["id"] in state.revocations.revoked
    # Another peer's token is untouched.
    assert (await pull(client, other["token"])).status_code == 202


@pytest.mark.parametrize("settings_overrides", [{"revocation_refresh_seconds": 0.05}])
async def test_the_cache_reloads_on_its_own_every_interval(
    client: httpx.AsyncClient, state: WorkerState, live_registry: LiveRegistry, seed: Seeder
) -> None:
    await seed.org("acme")
    peer = await issue_peer_token(live_registry, seed, "instance-b")
    assert (await pull(client, peer["token"])).status_code == 202
    await revoke(live_registry, seed, peer["id"])
    # No invalidate(): the interval passing is enough. Bounded, so a broken reload fails the test.
    for _ in range(200):
        r = await pull(client, peer["token"])
        if r.status_code != 202:
            break
        await asyncio.sleep(0.05)
    assert_revoked(r)


async def test_an_unreachable_registry_keeps_the_last_list(
    client: httpx.AsyncClient,
    state: WorkerState,
    live_registry: LiveRegistry,
    seed: Seeder,
    endpoint: Endpoint,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await seed.org("acme")
    revoked = await issue_peer_token(live_registry, seed, "revoked")
    live = await issue_peer_token(live_registry, seed, "live")
    await revoke(live_registry, seed, revoked["id"])
    assert_revoked(await pull(client, revoked["token"]))
    loaded_at = state.revocations.loaded_at

    await endpoint.stop()  # the worker's registry is gone
    state.revocations.invalidate()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert_revoked(await pull(client, revoked["token"]))
        assert (await pull(client, live["token"])).status_code == 202
    assert state.revocations.loaded_at == loaded_at  # no successful reload
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(warnings) == 1  # one attempt per interval, not one per request
    assert "registry unreachable" in warnings[0]
    assert "keeping the last list (1 tokens" in warnings[0]


async def test_a_worker_that_never_reached_the_registry_starts_from_an_empty_list(
    issuer: TokenIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    cache = RevocationCache(UNREACHABLE, issuer=issuer, refresh_seconds=3600.0)
    try:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            assert await cache.is_revoked("any-jti") is False
        assert cache.loaded_at == float("-inf")
        assert "never loaded" in caplog.records[-1].getMessage()
    finally:
        await cache.aclose()


async def test_a_refused_or_unusable_answer_keeps_the_last_list(
    live_registry: LiveRegistry, seed: Seeder, caplog: pytest.LogCaptureFixture
) -> None:
    await seed.org("acme")
    peer = await issue_peer_token(live_registry, seed, "instance-b")
    await revoke(live_registry, seed, peer["id"])
    # Signed with a key the registry does not know: it answers 401, not a list.
    stranger = TokenIssuer(KeySet.generate().active, issuer=ISSUER)
    cache = RevocationCache(live_registry.url, issuer=stranger, refresh_seconds=3600.0)
    cache.revoked = {"kept-jti": time.time() + 3600}
    try:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            assert await cache.refresh() is False
        assert cache.revoked.keys() == {"kept-jti"}
        assert "registry answered 401" in caplog.records[-1].getMessage()
    finally:
        await cache.aclose()


async def test_a_reload_keeps_a_revocation_through_the_expiry_leeway(
    state: WorkerState, live_registry: LiveRegistry, seed: Seeder
) -> None:
    await seed.org("acme")
    peer = await issue_peer_token(live_registry, seed, "instance-b")
    await revoke(live_registry, seed, peer["id"])
    cache = state.revocations
    now = time.time()
    # The registry stops listing a revocation at the token's exp; verifiers still accept the
    # token for a little while after it, so the cache keeps the jti that much longer.
    cache.revoked = {"just-expired": now - 1, "long-expired": now - 2 * EXPIRY_LEEWAY_SECONDS}
    assert await cache.refresh() is True
    assert cache.revoked.keys() == {"just-expired", peer["id"]}
