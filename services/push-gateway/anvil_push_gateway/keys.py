"""The registry's public keys (its JWKS): they verify client tokens and revision manifests.

Loaded at start; a token or manifest signed with a key id the gateway does not know makes it
fetch the JWKS again, at most once per ``keys_refresh_seconds``, so a key rotated in the
registry (api.md section 3.1) is picked up without a restart and a flood of forged key ids
cannot make the gateway hammer the registry.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from anvil_common.jwt import Claims, TokenInvalid, TokenVerifier
from anvil_common.registry_http import RegistryError
from anvil_wire import public_keys_from_jwks
from anvil_wire.b64 import b64url_decode

from .registry_client import RegistryClient

__all__ = ["RegistryKeys", "AUDIENCE"]

log = logging.getLogger("anvil.push_gateway.keys")
AUDIENCE = "anvil-push-gateway"


class RegistryKeys:
    def __init__(self, registry: RegistryClient, *, issuer: str, refresh_seconds: float) -> None:
        self._registry = registry
        self._issuer = issuer
        self._refresh_seconds = refresh_seconds
        self._lock = asyncio.Lock()
        self._fetched_at = float("-inf")
        self.public: dict[str, ec.EllipticCurvePublicKey] = {}
        self.verifier = TokenVerifier({"keys": []}, issuer=issuer, audience=AUDIENCE)

    @property
    def loaded(self) -> bool:
        return bool(self.public)

    async def load(self) -> None:
        """Fetch the JWKS now (raises RegistryError when the registry cannot give it)."""
        self._fetched_at = time.monotonic()
        jwks = await self._registry.jwks()
        self.public = public_keys_from_jwks(jwks)
        self.verifier = TokenVerifier(jwks, issuer=self._issuer, audience=AUDIENCE)

    async def refresh_for(self, kid: Any) -> bool:
        """Reload the JWKS for an unknown ``kid`` unless that was done recently; True if known now."""
        if not isinstance(kid, str) or kid in self.public:
            return isinstance(kid, str) and kid in self.public
        async with self._lock:
            if kid not in self.public and time.monotonic() - self._fetched_at >= self._refresh_seconds:
                try:
                    await self.load()
                except (RegistryError, ValueError) as exc:
                    log.warning("could not reload the registry's keys: %s", exc)
        return kid in self.public

    async def verify_token(self, token: str) -> Claims:
        """The verified claims of a client's token (TokenInvalid / TokenExpired otherwise)."""
        try:
            return self.verifier.verify(token)
        except TokenInvalid:
            kid = _kid(token)
            if kid is None or kid in self.public or not await self.refresh_for(kid):
                raise
            return self.verifier.verify(token)


def _kid(token: str) -> str | None:
    """The ``kid`` of a compact JWS's header, unverified (only to decide on a key refresh)."""
    try:
        header = json.loads(b64url_decode(token.split(".", 1)[0]))
    except ValueError:
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None
