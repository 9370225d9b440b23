"""Push-gateway test fixtures. They live in ``gatewaykit`` (this directory, on pytest's
pythonpath), which the runtime SDK's conftest imports too: a real registry on loopback, the
gateway served by uvicorn with /v1/stream on its own loopback port, a migrated gateway database
per test (SQLite or Postgres, by ANVIL_TEST_DATABASE), tokens signed like the registry's, and a
seeder that publishes through the registry's API."""

from __future__ import annotations

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
