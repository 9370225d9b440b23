"""The SDK against a real registry and a real gateway on loopback (in this process, uvicorn):
live updates, rollback, a revision signed by a key the client does not trust, starting from
the cache or the bootstrap file, no network at all, token refresh, the HTTP fallback."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from anvil_instances import free_port
from fastapi import FastAPI, Request, Response, WebSocket

from anvil_common.testing import serve
from anvil_runtime import AsyncAnvilClient, ClientState, NotReadyError
from anvil_wire import KeySet, canonical_json, public_keys_from_jwks, verify_revision

FLEET_SCOPES = ["fleet:read"]


async def until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - state of a client, polled
            await asyncio.sleep(0.01)


async def fleet(gateway: Any, make_token: Any) -> list[dict[str, Any]]:
    token = make_token("operator", scopes=FLEET_SCOPES, audience="anvil-push-gateway")
    for _ in range(100):  # the fleet is written in batches (fleet_flush_seconds)
        r = await gateway.client.get(
            "/v1/fleet", params={"organisation": "acme"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 200, r.text
        if r.json()["items"]:
            return list(r.json()["items"])
        await asyncio.sleep(0.05)
    return []


async def registry_document(live_registry: Any, make_token: Any, environment: str = "prod") -> Any:
    token = make_token("operator", audience="anvil-registry")
    r = await live_registry.client.get(
        f"/v1/orgs/acme/projects/web/environments/{environment}/config",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    return r.json()


def closed_url() -> str:
    """A loopback URL where nothing listens: no network."""
    return f"http://127.0.0.1:{free_port()}"


async def test_a_client_gets_the_current_revision_and_every_update(acme, make_client):
    client = make_client()
    changes: list[frozenset[str]] = []
    client.on_change(changes.append)
    async with client:
        assert await client.wait_until_ready(timeout=10) is ClientState.LIVE
        assert client.revision == 1
        prompt = client.get_prompt("greeting")
        assert (prompt.render(name="Ada"), prompt.source, prompt.version) == ("Hello Ada", "gateway", 1)
        await acme.version("acme", "web", "greeting", "Hi {{name}}")
        await acme.publish("acme", "web", "prod", {"greeting": 2})
        await until(lambda: client.revision == 2)
        assert client.get_prompt("greeting").render(name="Ada") == "Hi Ada"
        assert prompt.render(name="Ada") == "Hello Ada"  # a Prompt already taken does not change
        assert client.state is ClientState.LIVE
    assert changes == [frozenset({"greeting"}), frozenset({"greeting"})]


async def test_a_rollback_reaches_the_client_as_a_higher_revision(
    acme, make_client, live_registry, make_token
):
    await acme.version("acme", "web", "greeting", "Hi {{name}}")
    await acme.publish("acme", "web", "prod", {"greeting": 2})
    async with make_client() as client:
        await client.wait_until_ready(timeout=10)
        assert client.revision == 2
        token = make_token("operator", audience="anvil-registry")
        url = "/v1/orgs/acme/projects/web/environments/prod"
        headers = {"Authorization": f"Bearer {token}"}
        etag = (await live_registry.client.get(url, headers=headers)).headers["etag"]
        r = await live_registry.client.post(
            url + "/rollbacks", json={"to_revision": 1}, headers={**headers, "If-Match": etag}
        )
        assert r.status_code == 201, r.text
        await until(lambda: client.revision == 3)
        assert client.get_prompt("greeting").render(name="Ada") == "Hello Ada"
        assert client.state is ClientState.LIVE


async def test_a_revision_signed_by_a_key_the_client_does_not_trust_is_nacked_and_not_applied(
    acme, make_client, gateway, make_token, tmp_path
):
    client = make_client(public_keys=KeySet.generate().public_jwks())
    async with client:
        row: dict[str, Any] = {}
        for _ in range(200):
            rows = await fleet(gateway, make_token)
            if rows and rows[0]["last_nack"]:
                row = rows[0]
                break
            await asyncio.sleep(0.05)
        with pytest.raises(NotReadyError):
            await client.wait_until_ready(timeout=0.2)
        assert client.state is ClientState.OFFLINE
    assert row["last_nack"]["code"] == "bad-signature"
    assert row["revision"] is None
    cached = tmp_path / "cache" / "revisions"
    assert not cached.exists() or not any(cached.iterdir())


async def test_a_restart_without_network_serves_the_verified_cache(acme, make_client, caplog):
    async with make_client() as first:
        await first.wait_until_ready(timeout=10)
    offline = make_client(url=closed_url())
    async with offline:
        assert await offline.wait_until_ready(timeout=10) is ClientState.STALE
        prompt = offline.get_prompt("greeting")
        assert (prompt.source, prompt.revision, prompt.render(name="Ada")) == ("cache", 1, "Hello Ada")
        assert "cannot connect" in (offline.last_error or "")


async def test_a_first_start_serves_the_bootstrap_file_then_goes_live(
    acme, make_client, live_registry, make_token, tmp_path
):
    bootstrap = tmp_path / "bootstrap.json"
    bootstrap.write_bytes(canonical_json(await registry_document(live_registry, make_token)))
    await acme.version("acme", "web", "greeting", "Hi {{name}}")
    await acme.publish("acme", "web", "prod", {"greeting": 2})
    offline = make_client(url=closed_url(), bootstrap=bootstrap, cache_dir=tmp_path / "offline-cache")
    async with offline:
        assert await offline.wait_until_ready(timeout=10) is ClientState.STALE
        assert (offline.get_prompt("greeting").source, offline.revision) == ("bootstrap", 1)
    async with make_client(bootstrap=bootstrap) as online:
        assert await online.wait_until_ready(timeout=10) is ClientState.LIVE
        assert online.get_prompt("greeting").render(name="Ada") == "Hi Ada"


async def test_a_first_start_with_no_network_and_no_cache_is_not_ready_with_a_clear_error(
    make_client, tmp_path
):
    client = make_client(url=closed_url(), public_keys=KeySet.generate().public_jwks())
    async with client:
        with pytest.raises(NotReadyError) as raised:
            await client.wait_until_ready(timeout=1)
        assert client.state is ClientState.OFFLINE
        message = str(raised.value)
        assert "cannot connect" in message
        assert "nothing cached" in message
        assert "no bootstrap file" in message
        with pytest.raises(NotReadyError):
            client.get_prompt("greeting")
        fallback = client.get_prompt("greeting", fallback="Hello {{name}}")
        assert (fallback.source, fallback.render(name="Ada")) == ("fallback", "Hello Ada")


async def test_keys_are_fetched_from_the_registry_and_refreshed_for_an_unknown_kid(
    acme, make_client, live_registry, make_token, tmp_path
):
    """A stale cached key set (another kid) is refreshed from the registry once."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "jwks.json").write_bytes(canonical_json(KeySet.generate().public_jwks()))
    client = make_client(public_keys=None, registry_url=live_registry.url)
    async with client:
        assert await client.wait_until_ready(timeout=10) is ClientState.LIVE
    cached = json.loads((cache / "jwks.json").read_text())
    document = await registry_document(live_registry, make_token)
    verify_revision(document, public_keys_from_jwks(cached))


async def test_an_expired_token_makes_the_client_ask_its_provider_again(acme, make_client, make_token):
    calls: list[int] = []

    def provider() -> str:
        calls.append(1)
        ttl = 2 if len(calls) == 1 else 3600  # the first expires while connected
        return str(make_token("client", org="acme", project="web", environment="prod", ttl=ttl))

    async with make_client(token=provider) as client:
        assert await client.wait_until_ready(timeout=10) is ClientState.LIVE
        await until(lambda: len(calls) >= 2, 15)
        await until(lambda: client.state is ClientState.LIVE, 10)
        await acme.version("acme", "web", "greeting", "Hi {{name}}")
        await acme.publish("acme", "web", "prod", {"greeting": 2})
        await until(lambda: client.revision == 2)


def _blocking_proxy(target: str) -> FastAPI:
    """A proxy in front of the gateway that forwards HTTP and refuses WebSocket upgrades, like
    a corporate proxy: the SDK's reason to have a fallback."""
    proxy = FastAPI()

    @proxy.websocket("/v1/stream")
    async def refuse(websocket: WebSocket) -> None:
        await websocket.close(code=1008)  # before accept: the upgrade is answered 403

    @proxy.api_route("/{path:path}", methods=["GET", "POST"])
    async def forward(path: str, request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with httpx.AsyncClient(base_url=target, timeout=120) as http:
            upstream = await http.request(
                request.method,
                "/" + path,
                params=request.query_params,
                headers=headers,
                content=await request.body(),
            )
        drop = {"content-length", "transfer-encoding", "connection", "content-encoding"}
        return Response(
            upstream.content,
            upstream.status_code,
            headers={k: v for k, v in upstream.headers.items() if k.lower() not in drop},
        )

    return proxy


async def test_with_websockets_blocked_the_client_falls_back_to_http_long_polling(
    acme, make_client, gateway, make_token, caplog
):
    caplog.set_level(logging.WARNING, logger="anvil_runtime")
    async with serve(_blocking_proxy(gateway.url)) as proxy_url:
        client = make_client(url=proxy_url, long_poll_seconds=5)
        async with client:
            assert await client.wait_until_ready(timeout=10) is ClientState.LIVE
            assert client.revision == 1
            await acme.version("acme", "web", "greeting", "Hi {{name}}")
            await acme.publish("acme", "web", "prod", {"greeting": 2})
            await until(lambda: client.revision == 2)
            assert client.get_prompt("greeting").render(name="Ada") == "Hi Ada"
            for _ in range(100):
                rows = await fleet(gateway, make_token)
                if rows and rows[0]["revision"] and rows[0]["revision"]["number"] == 2:
                    break
                await asyncio.sleep(0.05)
    [row] = rows
    assert (row["transport"], row["revision"]["number"]) == ("http", 2)
    assert any("HTTP fallback" in r.getMessage() for r in caplog.records)


async def test_close_never_hangs_even_while_connecting(make_client):
    client = make_client(url="http://10.255.255.1:9", public_keys=KeySet.generate().public_jwks())
    await client.start()
    await asyncio.sleep(0.1)
    await client.close(timeout=0.5)
    assert isinstance(client, AsyncAnvilClient)
