"""The gateway's Prometheus metrics (docs/push-gateway.md, "Metrics")."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from anvil_common.observability import Metrics

__all__ = ["GatewayMetrics"]


class GatewayMetrics(Metrics):
    def __init__(self) -> None:
        super().__init__("push-gateway")
        registry = self.registry
        self.connections = Gauge("anvil_push_connections", "Open WebSocket sessions", registry=registry)
        self.revision = Gauge(
            "anvil_push_revision", "Current revision per environment", ["environment"], registry=registry
        )
        self.propagation = Histogram(
            "anvil_push_propagation_seconds",
            "From the registry's event to the revision sent to every session of this replica",
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.acks = Counter("anvil_push_acks", "Revisions acknowledged by clients", registry=registry)
        self.nacks = Counter(
            "anvil_push_nacks", "Revisions refused by clients", ["reason"], registry=registry
        )
        self.closes = Counter(
            "anvil_push_closes", "Sessions closed by the gateway", ["code"], registry=registry
        )
        self.refused = Counter(
            "anvil_push_handshakes_refused", "WebSocket handshakes refused", ["status"], registry=registry
        )
        self.rollbacks = Counter(
            "anvil_push_rollbacks",
            "Automatic rollbacks: asked of the registry (by its answer), or found nothing to roll back to",
            ["outcome"],
            registry=registry,
        )
        self.feed_lag = Gauge(
            "anvil_push_feed_lag_seconds",
            "Age of the newest registry event processed when it was processed",
            registry=registry,
        )
        self.feed_event = Gauge(
            "anvil_push_feed_last_event_id", "The last registry event id processed", registry=registry
        )
