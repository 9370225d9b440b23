"""Wake-ups for long-polls and caches when events commit, without polling the database.

In-process, every commit that wrote an event calls ``notify()`` (an after-commit hook). On
Postgres, a dedicated connection LISTENs on ``anvil_events`` so commits made by other replicas
wake this one too; the NOTIFY is sent inside the publishing transaction, so Postgres delivers
it only once the commit is visible.
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
    def __init__(self) -> None:
        self._changed = asyncio.Event()
        self._subscribers: list[Callable[[], None]] = []

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (synchronously, cheaply) on every notification."""
        self._subscribers.append(callback)

    def notify(self) -> None:
        for callback in self._subscribers:
            callback()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait(self, timeout: float) -> bool:
        """Wait until the next notification; False on timeout."""
        changed = self._changed
        try:
            await asyncio.wait_for(changed.wait(), timeout)
        except TimeoutError:
            return False
        return True


class PostgresListener:
    """LISTEN on one dedicated asyncpg connection; reconnects and re-notifies after a drop."""

    def __init__(self, url: str, hub: EventHub, *, retry_seconds: float = 1.0) -> None:
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._hub = hub
        self._retry = retry_seconds
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="anvil-events-listen")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        import asyncpg

        def on_notify(*_args: Any) -> None:
            self._hub.notify()

        while True:
            conn = None
            try:
                conn = await asyncpg.connect(self._dsn)
                await conn.add_listener(CHANNEL, on_notify)
                self.connected.set()
                # Whatever committed while we were not listening: wake everyone to re-check.
                self._hub.notify()
                closed = asyncio.Event()
                conn.add_termination_listener(lambda _c, closed=closed: closed.set())
                await closed.wait()
                log.warning("event listener connection closed; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event listener cannot connect: %s", exc)
            finally:
                self.connected.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(self._retry)
