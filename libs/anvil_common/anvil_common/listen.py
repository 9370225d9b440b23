"""LISTEN on one dedicated asyncpg connection, reconnecting after a drop (Postgres only).

A subclass says what a notice means (``on_notify``) and what to do once listening again
(``on_listening``: whatever was notified while nobody listened was missed, so wake everyone to
re-check). The connection is checked every ``keepalive_seconds`` so a silently dropped one (no
FIN, no termination callback) is noticed; that check is one round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy.engine import make_url

__all__ = ["PostgresListener"]


class PostgresListener:
    """Listens on ``channel`` until stopped; ``connected`` is set while it listens."""

    def __init__(
        self,
        url: str,
        channel: str,
        *,
        name: str,
        log: logging.Logger,
        retry_seconds: float = 1.0,
        keepalive_seconds: float = 30.0,
    ) -> None:
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._channel = channel
        self._name = name
        self._log = log
        self._retry = retry_seconds
        self._keepalive = keepalive_seconds
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def on_notify(self, payload: str) -> None:
        """One notice on the channel."""

    def on_listening(self) -> None:
        """Listening (again): notices sent while the connection was down are lost."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self._name}-listen")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.on_notify(payload)

    async def _run(self) -> None:
        import asyncpg

        while True:
            conn = None
            try:
                conn = await asyncpg.connect(
                    self._dsn, server_settings={"application_name": f"{self._name}-listen"}
                )
                await conn.add_listener(self._channel, self._on_notify)
                self.connected.set()
                self.on_listening()
                closed = asyncio.Event()
                conn.add_termination_listener(lambda _c, closed=closed: closed.set())
                while not closed.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(closed.wait(), self._keepalive)
                    if not closed.is_set():
                        await asyncio.wait_for(conn.execute("SELECT 1"), self._keepalive)
                self._log.warning("%s listener connection closed; reconnecting", self._channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log.warning(
                    "%s listener lost its connection (%s); retrying in %ss", self._channel, exc, self._retry
                )
            finally:
                self.connected.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=1)
            await asyncio.sleep(self._retry)
