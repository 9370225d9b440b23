"""Bundle-worker settings: environment variables prefixed ``ANVIL_BUNDLE_WORKER_``."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from anvil_common.settings import ServiceSettings

__all__ = ["WorkerSettings", "MIB"]

MIB = 1024 * 1024


class WorkerSettings(ServiceSettings):
    # service_name gives the SQLite file <data_dir>/bundle-worker.db and the Postgres schema
    # bundle_worker (ARCHITECTURE 11: each service its own file or schema).
    model_config = SettingsConfigDict(env_prefix="ANVIL_BUNDLE_WORKER_", frozen=True, extra="ignore")
    service_name: ClassVar[str] = "bundle-worker"

    port: int = 8010
    public_url: str = Field(
        default="http://127.0.0.1:8010", description="Where clients reach this bundle worker."
    )
    registry_url: str = Field(
        default="http://127.0.0.1:8000", description="Where the worker reaches the registry's HTTP API."
    )
    registry_public_url: str | None = Field(
        default=None,
        description="The registry's public URL: the issuer of every token and the exporter instance "
        "of every bundle. Default: registry_url.",
    )
    keys_file: Path | None = Field(
        default=None,
        description="The instance key set, the same file (or Secret) the registry loads. "
        "Default <data_dir>/keys/instance.json.",
    )
    max_bundle_bytes: int = Field(
        default=64 * MIB, ge=1024, description="Largest bundle stored, uploaded or built (compressed)."
    )
    job_lease_seconds: float = Field(default=60.0, gt=0, description="How long a claim holds a job.")
    heartbeat_seconds: float = Field(
        default=15.0, gt=0, description="How often a running job's lease is renewed."
    )
    poll_seconds: float = Field(default=1.0, gt=0, description="How often an idle worker looks for jobs.")
    max_attempts: int = Field(default=5, ge=1, description="Attempts per job before it fails for good.")
    retry_base_seconds: float = Field(
        default=2.0, gt=0, description="First retry delay; doubles per attempt."
    )
    retry_max_seconds: float = Field(default=300.0, gt=0, description="Longest retry delay.")
    retention_days: int = Field(
        default=7, ge=1, description="How long bundles, finished jobs and plans are kept."
    )
    plan_ttl_hours: int = Field(default=24, ge=1, description="How long a plan may be applied.")
    service_token_seconds: int = Field(
        default=300, ge=30, le=3600, description="Lifetime of the tokens the worker mints for registry calls."
    )
    registry_timeout_seconds: float = Field(
        default=60.0, gt=0, description="Timeout of one call to the registry (connect, read, write)."
    )
    revocation_refresh_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Age after which the API reloads the revoked tokens from the registry: a token "
        "revoked there is refused here within this interval. An unreachable registry leaves the "
        "last list in force (a warning is logged) until a reload succeeds.",
    )
    allow_insecure_peers: bool = Field(
        default=False,
        description="Allow http:// peer URLs and issuers (local development only); otherwise every "
        "peer URL and issuer must be https.",
    )
    peer_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Timeout of one call to a peer (its worker, or its JWKS)."
    )
    peer_poll_seconds: float = Field(
        default=1.0, gt=0, description="Longest pause between two looks at a peer's job while following it."
    )
    peer_wait_seconds: float = Field(
        default=900.0,
        gt=0,
        description="How long a push or pull follows a peer's job before the attempt gives up (and is "
        "retried: the peer's job is found again by its Idempotency-Key).",
    )
    peer_keys_refresh_seconds: float = Field(
        default=300.0,
        ge=0,
        description="Fewest seconds between two automatic JWKS refreshes of one peer (a bundle sealed "
        "with a key id the peer's stored keys lack).",
    )

    def resolved_keys_file(self) -> Path:
        return self.keys_file or self.data_dir / "keys" / "instance.json"

    @property
    def issuer(self) -> str:
        """The registry's public URL without a trailing slash: ``iss`` of every token."""
        return (self.registry_public_url or self.registry_url).rstrip("/")
