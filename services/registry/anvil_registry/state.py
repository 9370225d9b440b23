"""What a running registry holds in memory, created in the lifespan (never at import)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alembic.config import Config

from anvil_common.db import Database
from anvil_common.jwt import TokenIssuer, TokenVerifier
from anvil_common.observability import Metrics
from anvil_wire import KeySet

from .events.hub import EventHub
from .revisions.cache import ConfigCache
from .settings import RegistrySettings


@dataclass
class RevocationCache:
    """Revoked token ids, refreshed from the database at most every ``refresh_seconds``."""

    refresh_seconds: float
    revoked: set[str] = field(default_factory=set)
    loaded_at: float = float("-inf")


@dataclass
class RegistryState:
    settings: RegistrySettings
    db: Database
    keyset: KeySet
    issuer: TokenIssuer
    verifier: TokenVerifier
    hub: EventHub
    metrics: Metrics
    alembic: Config
    revocations: RevocationCache
    config_cache: ConfigCache = field(default_factory=ConfigCache)
    extras: dict[str, Any] = field(default_factory=dict)
