"""Fixtures shared by the bundle tests: the golden example's inputs, a key set and a trust function."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

from anvil_wire import KeySet
from anvil_wire.bundles import TrustedKeys

CONTRACT = Path(__file__).resolve().parents[3] / "tests" / "contract" / "bundles"
EXAMPLE_INPUT = CONTRACT / "example-input.json"
EXAMPLE_DIGEST = CONTRACT / "example-digest.txt"


@pytest.fixture(scope="session")
def example_input() -> dict[str, Any]:
    """example-input.json as committed (do not modify: use ``snapshot`` for a copy)."""
    doc: dict[str, Any] = json.loads(EXAMPLE_INPUT.read_text(encoding="utf-8"))
    return doc


@pytest.fixture
def snapshot(example_input: dict[str, Any]) -> dict[str, Any]:
    """A fresh copy of the golden example's export snapshot, free to modify."""
    return copy.deepcopy(example_input["snapshot"])


@pytest.fixture
def exporter(example_input: dict[str, Any]) -> dict[str, str]:
    return dict(example_input["exporter"])


@pytest.fixture(scope="session")
def bundle_keys() -> KeySet:
    """The exporting instance's key set, with a retired key that still verifies."""
    return KeySet.generate().rotate()


@pytest.fixture(scope="session")
def trust(bundle_keys: KeySet, example_input: dict[str, Any]) -> TrustedKeys:
    """Trusts the exporter's keys for the exporter's instance only."""
    issuer = example_input["exporter"]["instance"]
    keys = bundle_keys.public_keys()

    def lookup(instance: str, kid: str) -> EllipticCurvePublicKey | None:
        return keys.get(kid) if instance == issuer else None

    return lookup
