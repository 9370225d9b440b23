"""Runtime SDK fixtures: the push gateway's live fixtures (a real registry and a real gateway on
loopback, per-test databases on SQLite or Postgres) plus clients built against them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

# pytest registers the fixture functions imported into a conftest: every name here is used so.
from gatewaykit import (  # noqa: F401
    acme,
    client_token,
    database,
    gateway,
    gateway_token,
    issuer,
    keyset,
    keyset_file,
    live_registry,
    make_token,
    registry_template,
    seed,
    settings,
    settings_overrides,
    template_db,
)

from anvil_runtime import AsyncAnvilClient
from anvil_wire import KeySet

ClientFactory = Callable[..., AsyncAnvilClient]


@pytest.fixture
async def make_client(
    gateway: Any,
    client_token: str,
    keyset: KeySet,
    tmp_path: Path,
) -> AsyncIterator[ClientFactory]:
    """``make_client(**overrides)``: an AsyncAnvilClient of acme/web/prod on the live gateway,
    keys pinned to the registry's, cache in ``tmp_path/cache``; closed after the test."""
    made: list[AsyncAnvilClient] = []

    def make(**overrides: Any) -> AsyncAnvilClient:
        options: dict[str, Any] = {
            "token": client_token,
            "cache_dir": tmp_path / "cache",
            "public_keys": keyset.public_jwks(),
            "allow_insecure": True,
            "backoff_base": 0.05,
            "backoff_cap": 0.5,
            "connect_timeout": 5.0,
        }
        url = overrides.pop("url", gateway.url)
        options.update(overrides)
        client = AsyncAnvilClient(url, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close(timeout=5)
