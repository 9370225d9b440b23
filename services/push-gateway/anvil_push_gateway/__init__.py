"""Anvil push gateway (docs/push-protocol.md, docs/push-gateway.md)."""

__version__ = "0.1.0"
