"""Revoked tokens: the registry's list (``GET /v1/revocations``), cached and refreshed.

Every token the worker accepts was issued by its registry, so the registry's list of revoked,
unexpired tokens is the whole truth. The cache reloads it when it is older than
``revocation_refresh_seconds`` — on the request that finds it due, like the registry's own cache
— so a token revoked in the registry is refused by every API replica within that interval.

If the registry cannot be reached (or answers something unusable), the cache keeps its last list,
logs a warning and tries again on the first request after the next interval; it does not refuse
every token meanwhile. The worker's jobs need the registry anyway, so what a revoked token could
still do while the registry is down is bounded; refusing everything would make a registry outage
a worker outage. (A worker that has never reached the registry starts from an empty list.)
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from anvil_common.jwt import TokenIssuer
from anvil_common.revocations import parse_revocations

__all__ = ["RevocationCache", "RevocationsUnavailable", "SUBJECT", "SCOPE", "FETCH_TIMEOUT_SECONDS"]

log = logging.getLogger("anvil.bundle_worker.revocations")

SUBJECT = "service:bundle-worker"
SCOPE = "events:read"  # the list tells no more than the event feed's token.revoked events
PATH = "/v1/revocations"
# A refresh runs on a request's path: never let a hanging registry hold requests for long.
FETCH_TIMEOUT_SECONDS = 5.0
MAX_LIST_BYTES = 16 * 1024 * 1024
# Verifiers accept a token up to this long past its exp (anvil_common.jwt): the registry stops
# listing a revocation at the token's exp, so the cache keeps it this much longer.
EXPIRY_LEEWAY_SECONDS = 60.0


class RevocationsUnavailable(Exception):
    """The registry's revocation list could not be read."""


class RevocationCache:
    """The jtis of revoked, unexpired tokens, reloaded from the registry when due.

    ``revoked`` maps a jti to its token's expiry (Unix seconds): after it the jti can be
    forgotten (the token is refused as expired anyway). ``loaded_at`` is the monotonic time the
    last successful load started; ``attempted_at`` that of the last attempt, successful or not.
    """

    def __init__(
        self,
        registry_url: str,
        *,
        issuer: TokenIssuer,
        refresh_seconds: float,
        token_seconds: int = 300,
        timeout: float = FETCH_TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.refresh_seconds = refresh_seconds
        self.revoked: dict[str, float] = {}
        self.loaded_at = float("-inf")
        self.attempted_at = float("-inf")
        self._issuer = issuer
        self._token_seconds = token_seconds
        self._lock = asyncio.Lock()
        self._http = httpx.AsyncClient(
            base_url=registry_url.rstrip("/"),
            timeout=min(timeout, FETCH_TIMEOUT_SECONDS),
            transport=transport,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def due(self) -> bool:
        return time.monotonic() - self.attempted_at >= self.refresh_seconds

    async def is_revoked(self, jti: str) -> bool:
        """Whether ``jti`` is revoked, by a list at most ``refresh_seconds`` old when the
        registry answers (else the last list it gave)."""
        if self.due:
            async with self._lock:
                # Requests that waited for another one's refresh use its result.
                if self.due:
                    await self.refresh()
        return jti in self.revoked

    def invalidate(self) -> None:
        """Make the next check reload the list (tests; an operator's signal)."""
        self.attempted_at = float("-inf")

    async def refresh(self) -> bool:
        """Reload the list now; False (the last list kept, a warning logged) if it failed."""
        started = time.monotonic()
        self.attempted_at = started
        try:
            revoked = await self._fetch()
        except RevocationsUnavailable as exc:
            age = (
                "never loaded" if self.loaded_at == float("-inf") else f"{started - self.loaded_at:.0f} s old"
            )
            log.warning(
                "could not refresh the revoked tokens from the registry (%s); "
                "keeping the last list (%d tokens, %s), retrying in %g s",
                exc,
                len(self.revoked),
                age,
                self.refresh_seconds,
            )
            return False
        now = time.time()
        kept = {j: e for j, e in self.revoked.items() if e + EXPIRY_LEEWAY_SECONDS > now}
        self.revoked = kept | revoked
        self.loaded_at = started
        return True

    async def _fetch(self) -> dict[str, float]:
        token, _ = self._issuer.issue(
            subject=SUBJECT,
            kind="service",
            audience="anvil-registry",
            scopes=[SCOPE],
            ttl_seconds=self._token_seconds,
        )
        try:
            response = await self._http.get(PATH, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise RevocationsUnavailable(f"registry unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise RevocationsUnavailable(f"registry answered {response.status_code}: {_detail(response)}")
        if len(response.content) > MAX_LIST_BYTES:
            raise RevocationsUnavailable("registry answered a revocation list above 16 MiB")
        return _parse(response)


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or response.reason_phrase)
    return response.reason_phrase


def _parse(response: httpx.Response) -> dict[str, float]:
    """The list in the answer; anything else is refused whole."""
    try:
        body = response.json()
    except ValueError as exc:
        raise RevocationsUnavailable("registry answered a revocation list that is not JSON") from exc
    try:
        return parse_revocations(body)
    except ValueError as exc:
        raise RevocationsUnavailable(f"registry answered {exc}") from exc
