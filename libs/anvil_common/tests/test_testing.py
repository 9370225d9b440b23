"""Test support (anvil_common.testing): an app served by a real uvicorn on a loopback port."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from anvil_common.testing import free_port, serve


async def test_serve_answers_on_a_loopback_port_until_the_exit() -> None:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert url.startswith("http://127.0.0.1:")
        r = await client.get("/ping")
        assert r.json() == {"pong": "yes"}
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(base_url=url) as client:
            await client.get("/ping")


def test_free_port_is_a_port_number() -> None:
    assert 0 < free_port() < 65536
