"""Wake-ups for long-polls and caches when events commit, without polling the database.

In-process, every commit that wrote an event calls ``notify()`` (an after-commit hook). On
Postgres, a dedicated connection LISTENs on ``anvil_events`` so commits made by other replicas
wake this one too; the NOTIFY is sent inside the publishing transaction, so Postgres delivers
it only once the commit is visible. Its payload is ``<schema>:<event id>``: the channel is
database-wide, and a listener given its schema ignores registries living in other schemas.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from anvil_common.listen import PostgresListener as BaseListener

__all__ = ["CHANNEL", "EventHub", "PostgresListener"]

CHANNEL = "anvil_events"
log = logging.getLogger("anvil.registry.events")


class EventHub:
    """One per process: ``notify()`` wakes every waiter and calls every subscriber."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()
        self._subscribers: list[Callable[[], None]] = []
        # Bumped by every notify(): a waiter that read it before querying the database can tell
        # that a commit landed between its query and its wait (the lost wake-up race).
        self.generation = 0

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (synchronously, cheaply) on every notification."""
        self._subscribers.append(callback)

    def notify(self) -> None:
        self.generation += 1
        for callback in self._subscribers:
            try:
                callback()
            except Exception:
                # A failing subscriber must not keep long-polls asleep.
                log.exception("event hub subscriber failed")
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait(self, timeout: float, *, since: int | None = None) -> bool:
        """Wait until the next notification (or one after generation ``since``); False on timeout."""
        if since is not None and since != self.generation:
            return True
        if timeout <= 0:
            return False
        changed = self._changed
        try:
            await asyncio.wait_for(changed.wait(), timeout)
        except TimeoutError:
            return False
        return True


class PostgresListener(BaseListener):
    """Wakes the hub on every ``anvil_events`` notice of this registry's schema (and once each
    time it is listening again, for what committed while it was not)."""

    def __init__(
        self,
        url: str,
        hub: EventHub,
        *,
        retry_seconds: float = 1.0,
        schema: str | None = None,
        keepalive_seconds: float = 30.0,
    ) -> None:
        super().__init__(
            url,
            CHANNEL,
            name="anvil-registry",
            log=log,
            retry_seconds=retry_seconds,
            keepalive_seconds=keepalive_seconds,
        )
        self._hub = hub
        self.schema = schema

    def on_notify(self, payload: str) -> None:
        schema, sep, _event_id = payload.rpartition(":")
        if self.schema is not None and sep and schema != self.schema:
            return
        self._hub.notify()

    def on_listening(self) -> None:
        self._hub.notify()
