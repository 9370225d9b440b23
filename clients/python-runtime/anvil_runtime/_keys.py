"""The registry's signing keys as the client trusts them: pinned, or fetched from the registry.

Keys never come from the gateway. Fetched keys come from the registry's
``/.well-known/jwks.json`` over TLS; a manifest signed by a ``kid`` the client does not know
triggers one refresh, at most one per ``refresh_seconds``, so a key rotation reaches clients
without letting a hostile stream make them hammer the registry.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from anvil_wire import KeyError_, public_keys_from_jwks

from ._errors import ConfigurationError
from ._store import Store

__all__ = ["TrustedKeys", "pinned_keys"]

log = logging.getLogger("anvil_runtime")
PublicKeys = dict[str, ec.EllipticCurvePublicKey]


def pinned_keys(value: Any) -> PublicKeys:
    """Pinned keys from a JWKS object, a path to a JWKS file, or a mapping of kid to EC key."""
    if isinstance(value, str | Path):
        try:
            value = json.loads(Path(value).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read public_keys from {value}: {exc}") from None
    if (
        isinstance(value, Mapping)
        and value
        and all(isinstance(k, ec.EllipticCurvePublicKey) for k in value.values())
    ):
        return dict(value)
    try:
        keys = public_keys_from_jwks(value)
    except KeyError_ as exc:
        raise ConfigurationError(f"public_keys is not a usable JWKS: {exc}") from None
    if not keys:
        raise ConfigurationError("public_keys holds no key")
    return keys


class TrustedKeys:
    """A key lookup for manifest verification that remembers which ``kid`` it could not find."""

    def __init__(
        self,
        *,
        pinned: PublicKeys | None,
        jwks_url: str | None,
        store: Store | None,
        refresh_seconds: float,
        http: Callable[[], httpx.AsyncClient],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys: PublicKeys = dict(pinned or {})
        self.pinned = pinned is not None
        self.jwks_url = jwks_url
        self._store = store
        self._refresh_seconds = refresh_seconds
        self._http = http
        self._clock = clock
        self._last_fetch: float | None = None
        self._lock = asyncio.Lock()
        self.missed: str | None = None
        if not self.pinned and store is not None:
            cached = store.load_jwks()
            if cached is not None:
                try:
                    self._keys = public_keys_from_jwks(cached)
                except KeyError_:
                    log.warning("ignoring the cached JWKS in %s: not a usable key set", store.root)

    def lookup(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        key = self._keys.get(kid)
        if key is None:
            self.missed = kid
        return key

    @property
    def loaded(self) -> bool:
        return bool(self._keys)

    def can_refresh(self) -> bool:
        """Whether a fetch is allowed now (never for pinned keys; rate-limited otherwise)."""
        if self.pinned or self.jwks_url is None:
            return False
        return self._last_fetch is None or self._clock() - self._last_fetch >= self._refresh_seconds

    async def refresh(self) -> bool:
        """Fetch the registry's JWKS if allowed; True when it was fetched (whatever it holds)."""
        async with self._lock:
            if not self.can_refresh():
                return False
            self._last_fetch = self._clock()
            assert self.jwks_url is not None
            try:
                async with self._http() as http:
                    response = await http.get(self.jwks_url)
                response.raise_for_status()
                document = response.json()
                keys = public_keys_from_jwks(document)
            except (httpx.HTTPError, ValueError, KeyError_) as exc:
                log.warning("cannot fetch the registry's keys from %s: %s", self.jwks_url, exc)
                return False
            self._keys = keys
            self.missed = None
            if self._store is not None:
                self._store.save_jwks(document)
            log.debug("fetched %d key(s) from %s", len(keys), self.jwks_url)
            return True
