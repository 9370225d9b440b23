"""What a running push gateway holds in memory, created by create_app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alembic.config import Config

from anvil_common.db import Database

from .feed import FeedFollower, Revocations
from .fleet.recorder import FleetWriter
from .hub import Hub
from .keys import RegistryKeys
from .metrics import GatewayMetrics
from .registry_client import RegistryClient
from .settings import GatewaySettings
from .stream import StreamServer

__all__ = ["GatewayState"]


@dataclass
class GatewayState:
    settings: GatewaySettings
    db: Database
    registry: RegistryClient
    keys: RegistryKeys
    hub: Hub
    revocations: Revocations
    feed: FeedFollower
    fleet: FleetWriter
    stream: StreamServer
    metrics: GatewayMetrics
    alembic: Config
    replica: str
    extras: dict[str, Any] = field(default_factory=dict)
