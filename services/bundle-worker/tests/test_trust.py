"""Which keys may seal a bundle, per issuer (trust.py): ours for us, a peer's for that peer."""

from __future__ import annotations

from anvil_bundle_worker.trust import TrustedIssuers, own_trust
from anvil_wire import KeySet

US = "https://anvil.example"
PEER = "https://peer.example"


def test_own_keys_are_trusted_for_our_issuer_only_retired_ones_included():
    rotated = KeySet.generate().rotate()
    retired = rotated.keys[1]
    trust = own_trust(rotated, US + "/")
    assert trust(US, rotated.active.kid) is not None
    assert trust(US + "/", retired.kid) is not None
    assert trust(PEER, rotated.active.kid) is None  # our key never vouches for another instance
    assert trust(US, "unknown-kid") is None
    assert trust.issuers == (US,)


def test_a_peer_is_added_by_issuer_without_changing_the_original():
    ours, theirs = KeySet.generate(), KeySet.generate()
    base = own_trust(ours, US)
    with_peer = base.with_issuer(PEER, theirs.public_jwks())
    assert with_peer(PEER, theirs.active.kid) is not None
    assert with_peer(US, theirs.active.kid) is None
    assert with_peer(US, ours.active.kid) is not None
    assert base(PEER, theirs.active.kid) is None
    assert TrustedIssuers()(US, ours.active.kid) is None
