"""What a running bundle worker holds in memory, created by create_app or the worker command."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alembic.config import Config

from anvil_common.db import Database
from anvil_common.jwt import TokenVerifier
from anvil_common.observability import Metrics
from anvil_wire import KeySet

from .registry_client import RegistryClient
from .revocations import RevocationCache
from .settings import WorkerSettings
from .storage import BundleStore
from .trust import TrustedIssuers

__all__ = ["WorkerState"]


@dataclass
class WorkerState:
    settings: WorkerSettings
    db: Database
    keyset: KeySet
    verifier: TokenVerifier
    registry: RegistryClient
    store: BundleStore
    # Who may seal the bundles this instance imports (trust.py).
    trust: TrustedIssuers
    metrics: Metrics
    alembic: Config
    # Revoked token ids, reloaded from the registry every revocation_refresh_seconds (auth.py).
    revocations: RevocationCache
    extras: dict[str, Any] = field(default_factory=dict)
