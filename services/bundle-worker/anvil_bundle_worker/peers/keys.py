"""A peer's public keys and addresses: JWKS checked (EC P-256, ES256 only) and fetched from the
peer's issuer, https required unless ``allow_insecure_peers``."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select, update

from anvil_common.db import utcnow
from anvil_common.problems import Problem
from anvil_wire import KeyError_, public_keys_from_jwks

from ..models import Peer
from .errors import InsecurePeerUrl, PeerFailed, PeerUnavailable

if TYPE_CHECKING:
    from ..state import WorkerState

__all__ = [
    "JWKS_PATH",
    "MAX_JWKS_BYTES",
    "MAX_KEYS",
    "check_jwks",
    "ensure_secure",
    "fetch_jwks",
    "refresh_keys_if_due",
]

log = logging.getLogger("anvil.bundle_worker.peers")

JWKS_PATH = "/.well-known/jwks.json"
MAX_JWKS_BYTES = 64 * 1024
MAX_KEYS = 50
_PUBLIC_MEMBERS = ("kty", "crv", "x", "y", "kid")


def ensure_secure(url: str, *, what: str, allow_insecure: bool) -> None:
    """422 ``insecure-peer-url`` for an http URL, unless local development allows it."""
    if urlsplit(url).scheme != "https" and not allow_insecure:
        raise InsecurePeerUrl(
            f"the peer's {what} {url} is not https: peer traffic requires https "
            "(allow_insecure_peers is for local development only)"
        )


def check_jwks(jwks: Any) -> dict[str, Any]:
    """The public keys of a JWKS, each an EC P-256 ES256 signing key with a ``kid``; KeyError_
    (a ValueError) says what is wrong with it."""
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list):
        raise KeyError_("a JWKS is an object with a 'keys' array")
    if not keys:
        raise KeyError_("the JWKS holds no keys")
    if len(keys) > MAX_KEYS:
        raise KeyError_(f"the JWKS holds {len(keys)} keys; at most {MAX_KEYS} are accepted")
    public: list[dict[str, str]] = []
    for index, jwk in enumerate(keys):
        if isinstance(jwk, Mapping) and "d" in jwk:
            raise KeyError_(f"key {index} is a private key: give the peer's public keys only")
        if isinstance(jwk, Mapping) and jwk.get("use", "sig") != "sig":
            raise KeyError_(f"key {index} is not a signing key (use {jwk.get('use')!r})")
        try:
            public_keys_from_jwks({"keys": [jwk]})
        except KeyError_ as exc:
            raise KeyError_(f"key {index}: {exc}") from None
        key = {member: str(jwk[member]) for member in _PUBLIC_MEMBERS}
        if any(k["kid"] == key["kid"] for k in public):
            raise KeyError_(f"key id {key['kid']!r} appears twice")
        public.append({**key, "alg": "ES256", "use": "sig"})
    return {"keys": public}


async def fetch_jwks(issuer: str, *, timeout: float, allow_insecure: bool) -> dict[str, Any]:
    """The peer's JWKS from ``<issuer>/.well-known/jwks.json``, checked; at most MAX_JWKS_BYTES.

    Raises PeerUnavailable (unreachable) or PeerFailed (an error status, too large, not a usable
    JWKS), and InsecurePeerUrl for an http issuer unless allowed.
    """
    ensure_secure(issuer, what="issuer", allow_insecure=allow_insecure)
    url = issuer.rstrip("/") + JWKS_PATH
    body = bytearray()
    try:
        async with (
            httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http,
            http.stream("GET", url, headers={"Accept": "application/json"}) as response,
        ):
            if response.status_code != 200:
                raise PeerFailed(f"fetching the peer's keys: {url} answered {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_JWKS_BYTES:
                raise PeerFailed(f"the JWKS at {url} is larger than {MAX_JWKS_BYTES} bytes ({declared})")
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise PeerFailed(f"the JWKS at {url} is larger than {MAX_JWKS_BYTES} bytes")
    except httpx.HTTPError as exc:
        raise PeerUnavailable(
            f"cannot fetch the peer's keys from {url}: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        return check_jwks(json.loads(body))
    except (ValueError, RecursionError) as exc:  # KeyError_ is a ValueError, and so is bad JSON
        raise PeerFailed(f"the JWKS at {url} cannot be used: {exc}") from None


def _attempts(state: WorkerState) -> dict[uuid.UUID, float]:
    attempts = state.extras.setdefault("peer_key_refreshes", {})
    assert isinstance(attempts, dict)
    return attempts


async def refresh_keys_if_due(state: WorkerState, peer_id: uuid.UUID) -> dict[str, Any] | None:
    """Fetch a peer's JWKS again and store it, unless it was fetched (or tried, by this process)
    within ``peer_keys_refresh_seconds``; the new JWKS, or None when not due or it failed."""
    settings = state.settings
    every = settings.peer_keys_refresh_seconds
    attempts = _attempts(state)
    last = attempts.get(peer_id)
    if last is not None and time.monotonic() - last < every:
        return None
    async with state.db.session(write=False) as session:
        peer = await session.scalar(select(Peer).where(Peer.id == peer_id))
    if peer is None:
        return None
    if peer.keys_fetched_at is not None and (utcnow() - peer.keys_fetched_at).total_seconds() < every:
        return None
    attempts[peer_id] = time.monotonic()
    try:
        jwks = await fetch_jwks(
            peer.issuer, timeout=settings.peer_timeout_seconds, allow_insecure=settings.allow_insecure_peers
        )
    except Problem as exc:
        log.warning("refreshing the keys of peer %s/%s failed: %s", peer.organisation, peer.name, exc.detail)
        return None
    now = utcnow()
    async with state.db.session() as session:
        await session.execute(
            update(Peer).where(Peer.id == peer_id).values(jwks=jwks, keys_fetched_at=now, updated_at=now)
        )
    log.info("keys of peer %s/%s refreshed", peer.organisation, peer.name)
    return jwks
