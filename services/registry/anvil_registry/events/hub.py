"""Wake-ups for long-polls and caches when events commit, without polling the database.

In-process, every commit that wrote an event calls ``notify()`` (an after-commit hook). On
Postgres, a dedicated connection LISTENs on ``anvil_events`` so commits made by other replicas
wake this one too; the NOTIFY is sent inside the publishing transaction, so Postgres delivers
it only once the commit is visible. Its payload is ``<schema>:<event id>``: the channel is
database-wide, and a listener given its schema ignores registries living in other schemas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import make_url

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


class PostgresListener:
    """LISTEN on one dedicated asyncpg connection; reconnects and re-notifies after a drop.

    The connection is checked every ``keepalive_seconds`` so a silently dropped one (no FIN,
    no termination callback) is noticed; that check is one round trip, not a feed query.
    """

    def __init__(
        self,
        url: str,
        hub: EventHub,
        *,
        retry_seconds: float = 1.0,
        schema: str | None = None,
        keepalive_seconds: float = 30.0,
    ) -> None:
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._hub = hub
        self._retry = retry_seconds
        self._keepalive = keepalive_seconds
        self.schema = schema
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="anvil-events-listen")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        schema, sep, _event_id = payload.rpartition(":")
        if self.schema is not None and sep and schema != self.schema:
            return
        self._hub.notify()

    async def _run(self) -> None:
        import asyncpg

        while True:
            conn = None
            try:
                conn = await asyncpg.connect(
                    self._dsn, server_settings={"application_name": "anvil-registry-listen"}
                )
                await conn.add_listener(CHANNEL, self._on_notify)
                self.connected.set()
                # Whatever committed while we were not listening: wake everyone to re-check.
                self._hub.notify()
                closed = asyncio.Event()
                conn.add_termination_listener(lambda _c, closed=closed: closed.set())
                while not closed.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(closed.wait(), self._keepalive)
                    if not closed.is_set():
                        await asyncio.wait_for(conn.execute("SELECT 1"), self._keepalive)
                log.warning("event listener connection closed; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event listener lost its connection: %s", exc)
            finally:
                self.connected.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(self._retry)
