"""Which keys the worker trusts to seal bundles, per issuer (docs/bundle-format.md section 5).

The one place that answers "may this key seal a bundle from that instance?". A bundle imported
into an organisation is trusted when its issuer (``exporter.instance``) is

- this instance: its own key set (active and retired keys), whatever the organisation;
- otherwise the issuer of one of that organisation's peers (peers/): the peer's JWKS, by ``kid``.

A key id the peer's stored JWKS lacks (the peer rotated its keys) makes the worker fetch the
peer's JWKS once more — at most once per peer per ``peer_keys_refresh_seconds`` — and try again.
A bundle from an issuer the organisation has no peer for is refused with a message saying how
to register one.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeVar

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from sqlalchemy import select

from anvil_wire import KeyError_, KeySet, public_keys_from_jwks
from anvil_wire.bundles import BundleUntrustedKey, TrustedKeys

from .models import Peer
from .peers.keys import refresh_keys_if_due

if TYPE_CHECKING:
    from .state import WorkerState

__all__ = ["TrustedIssuers", "own_trust", "organisation_trust", "verify_trusted", "normal_issuer"]

log = logging.getLogger("anvil.bundle_worker.trust")
T = TypeVar("T")


class TrustedIssuers:
    """Public keys by issuer and ``kid``; called as ``anvil_wire.bundles.TrustedKeys``."""

    def __init__(self, issuers: Mapping[str, Mapping[str, EllipticCurvePublicKey]] | None = None) -> None:
        self._issuers = MappingProxyType(
            {normal_issuer(issuer): MappingProxyType(dict(keys)) for issuer, keys in (issuers or {}).items()}
        )

    def __call__(self, issuer: str, kid: str) -> EllipticCurvePublicKey | None:
        """The key ``kid`` if it is trusted for ``issuer``; a key of another issuer never is."""
        keys = self._issuers.get(normal_issuer(issuer))
        return None if keys is None else keys.get(kid)

    @property
    def issuers(self) -> tuple[str, ...]:
        return tuple(sorted(self._issuers))

    def with_issuer(self, issuer: str, jwks: Mapping[str, object]) -> TrustedIssuers:
        """A copy that also trusts the keys of ``jwks`` for ``issuer`` (a registered peer)."""
        keys = public_keys_from_jwks(jwks)
        return TrustedIssuers({**self._issuers, normal_issuer(issuer): keys})


def own_trust(keyset: KeySet, issuer: str) -> TrustedIssuers:
    """This instance's key set (active and retired keys) trusted for its own issuer only."""
    return TrustedIssuers({issuer: keyset.public_keys()})


def normal_issuer(issuer: str) -> str:
    # Issuers are URLs compared without a trailing slash, as the registry's `iss` is written.
    return issuer.rstrip("/")


@dataclass(frozen=True)
class _PeerKeys:
    id: uuid.UUID
    name: str
    issuer: str


async def organisation_trust(
    state: WorkerState, organisation: str
) -> tuple[TrustedIssuers, dict[str, _PeerKeys]]:
    """Who may seal bundles imported into ``organisation``: this instance, and its peers by issuer."""
    own = normal_issuer(state.settings.issuer)
    trust = state.trust
    peers: dict[str, _PeerKeys] = {}
    async with state.db.session(write=False) as session:
        rows = (await session.scalars(select(Peer).where(Peer.organisation == organisation))).all()
    for row in rows:
        issuer = normal_issuer(row.issuer)
        peers[issuer] = _PeerKeys(row.id, row.name, issuer)
        if issuer == own:
            continue  # our own issuer is vouched for by our own key set only
        try:
            trust = trust.with_issuer(issuer, row.jwks)
        except KeyError_ as exc:  # stored keys are checked when written: this is a damaged row
            log.warning("peer %s/%s has unusable keys: %s", organisation, row.name, exc)
    return trust, peers


class _Lookup:
    """A TrustedKeys that remembers the last ``(issuer, kid)`` it had no key for."""

    def __init__(self, trust: TrustedIssuers) -> None:
        self.trust = trust
        self.missed: tuple[str, str] | None = None

    def __call__(self, issuer: str, kid: str) -> EllipticCurvePublicKey | None:
        key = self.trust(issuer, kid)
        if key is None:
            self.missed = (normal_issuer(issuer), kid)
        return key


async def verify_trusted(state: WorkerState, organisation: str, read: Callable[[TrustedKeys], T]) -> T:
    """``read(trust)`` (a bundle reader, run off the event loop) with ``organisation``'s trust.

    An unknown key of a known peer refreshes that peer's JWKS (rate-limited) and reads again; an
    unknown issuer is refused with a message naming it and saying how to register it as a peer.
    """
    trust, peers = await organisation_trust(state, organisation)
    lookup = _Lookup(trust)
    try:
        return await asyncio.to_thread(read, lookup)
    except BundleUntrustedKey:
        if lookup.missed is None:
            raise
        issuer, kid = lookup.missed
        if issuer == normal_issuer(state.settings.issuer):
            raise
        peer = peers.get(issuer)
        if peer is None:
            raise BundleUntrustedKey(
                f"the bundle is sealed by {issuer}, which is not a peer of organisation "
                f"{organisation!r}: to trust its bundles, register it as a peer (POST /v1/peers with "
                f'"issuer": "{issuer}", or `anvil peers add NAME --issuer {issuer}`)'
            ) from None
        jwks = await refresh_keys_if_due(state, peer.id)
        if jwks is None:
            raise BundleUntrustedKey(
                f"the bundle is sealed with key {kid!r}, which is not among the keys of peer "
                f"{peer.name!r} ({issuer}); its keys were fetched again recently or could not be "
                f"fetched: try `POST /v1/peers/{organisation}/{peer.name}/refresh-keys`"
            ) from None
    refreshed = trust.with_issuer(issuer, jwks)
    try:
        return await asyncio.to_thread(read, refreshed)
    except BundleUntrustedKey as exc:
        raise BundleUntrustedKey(
            f"{exc} (peer {peer.name!r}; its JWKS was fetched again and does not hold it either)"
        ) from None
