"""Anvil bundle worker: builds, signs and validates bundles; plans and drives imports; peering."""

__version__ = "0.1.0"
