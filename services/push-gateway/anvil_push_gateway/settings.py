"""Push-gateway settings: environment variables prefixed ``ANVIL_PUSH_GATEWAY_``."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from anvil_common.settings import ServiceSettings

__all__ = ["GatewaySettings", "MIB"]

MIB = 1024 * 1024


class GatewaySettings(ServiceSettings):
    # service_name gives the SQLite file <data_dir>/push-gateway.db and the Postgres schema
    # push_gateway (ARCHITECTURE 11: each service its own file or schema).
    model_config = SettingsConfigDict(env_prefix="ANVIL_PUSH_GATEWAY_", frozen=True, extra="ignore")
    service_name: ClassVar[str] = "push-gateway"

    port: int = 8020
    replica: str | None = Field(
        default=None,
        description="This replica's name in the fleet view (default: the host name and port).",
    )
    registry_url: str = Field(
        default="http://127.0.0.1:8000", description="Where the gateway reaches the registry's HTTP API."
    )
    registry_public_url: str | None = Field(
        default=None,
        description="The registry's public URL: the issuer of every token the gateway accepts. "
        "Default: registry_url.",
    )
    registry_token: SecretStr | None = Field(
        default=None,
        description="The gateway's own token for the registry: a `service` token without `org`, with "
        "events:read, revisions:read, config:read and projects:read (and revisions:publish for "
        "automatic rollback). Or registry_token_file.",
    )
    registry_token_file: Path | None = Field(
        default=None,
        description="A file holding that token (a mounted Secret); read again when it changes, so the "
        "token can be rotated without a restart.",
    )
    registry_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Timeout of one ordinary call to the registry."
    )
    feed_wait_seconds: float = Field(
        default=25.0,
        gt=0,
        description="Long-poll of one event-feed request (at most the registry's long_poll_max_seconds).",
    )
    feed_retry_max_seconds: float = Field(
        default=10.0, gt=0, description="Longest pause between two attempts to reach a failing feed."
    )
    keys_refresh_seconds: float = Field(
        default=30.0,
        ge=0,
        description="Fewest seconds between two JWKS reloads triggered by a token or manifest signed "
        "with an unknown key id.",
    )
    delta_history: int = Field(
        default=16, ge=1, description="Revisions kept per environment to send deltas from."
    )
    heartbeat_seconds: float = Field(
        default=20.0, gt=0, description="WebSocket ping interval; an unanswered ping closes (1011)."
    )
    hello_timeout_seconds: float = Field(
        default=10.0, gt=0, description="How long a new connection may take to send its hello (4006)."
    )
    max_message_bytes: int = Field(
        default=65536, ge=1024, description="Largest client message accepted (1009 above)."
    )
    send_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A connection with unsent data older than this is closed as too slow (4007).",
    )
    max_buffer_bytes: int = Field(
        default=8 * MIB,
        ge=65536,
        description="A connection whose unsent bytes pass this is closed as too slow (4007).",
    )
    max_connections_per_token: int = Field(
        default=1000,
        ge=1,
        description="Connections one token (jti) may hold on this replica (429 above): size it to the "
        "app instances that share one client token.",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins a browser connection may come from (exact, e.g. https://app.example.com; "
        "'*' allows any). Connections without an Origin header are not from browsers and not checked.",
    )
    long_poll_max_seconds: float = Field(
        default=60.0, gt=0, description="Longest `wait` of the HTTP fallback's long-poll."
    )
    fleet_flush_seconds: float = Field(
        default=1.0, gt=0, description="How often the fleet view's changes are written (in one batch)."
    )
    fleet_seen_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How often a connected client's last-seen time is written (in the same batches).",
    )
    fleet_ttl_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="A fleet row not seen for this long is removed (clients that left, replicas that died).",
    )
    rollout_check_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often each environment's current revision is checked against its rollout "
        "policy (and rolled back when it fails it).",
    )
    drain_seconds: float = Field(
        default=20.0,
        ge=0,
        description="On SIGTERM, connections are closed with 1012 spread over this many seconds.",
    )

    @property
    def issuer(self) -> str:
        """The registry's public URL without a trailing slash: ``iss`` of every token."""
        return (self.registry_public_url or self.registry_url).rstrip("/")
