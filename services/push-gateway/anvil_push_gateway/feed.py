"""Following the registry's event feed (docs/api.md section 6) from the last event id seen.

The follower keeps its cursor across every failure: after the registry comes back it asks for
the events after that id, so no revision is missed. A cursor the registry can no longer serve
(410 ``events-expired``, 400 ``cursor-ahead``) means resync: note the head, reload the
revocation list and bring every loaded environment to its current revision, then follow on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from datetime import datetime
from typing import Any

from anvil_common.registry_http import RegistryError

from .channels import Channel
from .hub import Hub
from .metrics import GatewayMetrics
from .registry_client import FeedReset, RegistryClient

__all__ = ["FeedFollower", "Revocations"]

log = logging.getLogger("anvil.push_gateway.feed")

# Verifiers accept a token this long past its exp; a revocation is kept as long (anvil_common.jwt).
EXPIRY_LEEWAY_SECONDS = 60.0


class Revocations:
    """Revoked token ids (jti → expiry), from the registry's list and ``token.revoked`` events."""

    def __init__(self) -> None:
        self.revoked: dict[str, float] = {}

    def __contains__(self, jti: object) -> bool:
        return jti in self.revoked

    def replace(self, revoked: dict[str, float]) -> None:
        now = time.time()
        kept = {j: e for j, e in self.revoked.items() if e + EXPIRY_LEEWAY_SECONDS > now}
        self.revoked = kept | revoked

    def add(self, jti: str, expires_at: float) -> None:
        self.revoked[jti] = expires_at


class FeedFollower:
    def __init__(
        self,
        registry: RegistryClient,
        hub: Hub,
        revocations: Revocations,
        metrics: GatewayMetrics,
        *,
        wait_seconds: float,
        retry_max_seconds: float,
    ) -> None:
        self.registry = registry
        self.hub = hub
        self.revocations = revocations
        self.metrics = metrics
        self.wait_seconds = wait_seconds
        self.retry_max_seconds = retry_max_seconds
        self.cursor: int | None = None  # the last event id handled; None before the first resync
        self.healthy = False
        self._work: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Follow the feed until cancelled, retrying with jittered backoff when it fails."""
        failures = 0
        reset: int | None = None  # the head to resync from after a FeedReset, until one succeeds
        while True:
            try:
                # Resync inside the try: a registry failure while resyncing is retried like any
                # other (with the cursor kept, so readiness is unaffected), never the end of the feed.
                if reset is not None or self.cursor is None:
                    await self.resync(reset if reset is not None else await self._head())
                    reset = None
                page = await self.registry.events(self.cursor or 0, wait=self.wait_seconds)
                for event in page.events:
                    self.handle(event)
                self.cursor = page.next_after
                self.metrics.feed_event.set(self.cursor)
                self.healthy, failures = True, 0
            except FeedReset as exc:
                log.warning("%s", exc)
                reset = exc.head
            except RegistryError as exc:
                self.healthy = False
                delay = random.uniform(0, min(self.retry_max_seconds, 0.5 * 2**failures))
                failures += 1
                log.warning("event feed unavailable (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)

    async def _head(self) -> int:
        try:
            return (await self.registry.events(0, wait=0, limit=1)).head
        except FeedReset as exc:
            return exc.head

    async def resync(self, head: int) -> None:
        """Start over from ``head``: the revocation list and every loaded environment, reloaded."""
        self.revocations.replace(await self.registry.revocations())
        for revoked in list(self.revocations.revoked):
            self.hub.on_revoked(revoked)
        for channel in list(self.hub.by_key.values()):
            info = await self.registry.environment(*channel.key)
            if info.get("archived_at") is not None:
                self.hub.on_archived(channel.key[0], channel.key[1], channel.key[2])
            elif info.get("current_revision"):
                self._spawn(self._advance(channel, int(info["current_revision"]), None))
        self.cursor = head
        self.healthy = True

    def handle(self, event: dict[str, Any]) -> None:
        """Act on one event; unknown kinds are ignored (api.md section 6)."""
        kind, payload = event.get("kind"), event.get("payload") or {}
        created = _timestamp(event.get("created_at"))
        if created is not None:
            self.metrics.feed_lag.set(max(0.0, time.time() - created))
        if kind == "revision.created":
            target = self.hub.on_revision(payload)
            if target is not None:
                self._spawn(self._advance(*target, created))
        elif kind == "token.revoked" and isinstance(payload.get("jti"), str):
            expires = _timestamp(payload.get("expires_at"))
            self.revocations.add(payload["jti"], expires if expires is not None else time.time() + 86400)
            self.hub.on_revoked(payload["jti"])
        elif kind in ("environment.archived", "project.archived"):
            environment = payload.get("environment") or {}
            name = environment.get("name") if kind == "environment.archived" else None
            self.hub.on_archived(str(payload.get("organisation")), str(payload.get("project")), name)

    async def _advance(self, channel: Channel, number: int, announced_at: float | None) -> None:
        """Bring ``channel`` to ``number``, retrying while the registry fails: the event that
        announced it has been consumed, so giving up would miss the revision until the next."""
        failures = 0
        while not channel.archived and (channel.current is None or channel.current.number < number):
            try:
                await self.hub.advance(channel, number, announced_at=announced_at)
            except RegistryError as exc:
                delay = random.uniform(0, min(self.retry_max_seconds, 0.5 * 2**failures))
                failures += 1
                log.warning(
                    "could not fetch revision %d of %s (%s); retrying in %.1f s",
                    number,
                    "/".join(channel.key),
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._work.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._work.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("could not bring an environment up to date: %r", task.exception())

    async def aclose(self) -> None:
        for task in list(self._work):
            task.cancel()
        for task in list(self._work):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
