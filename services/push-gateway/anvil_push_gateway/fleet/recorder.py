"""The fleet writer: what sessions report (connected, acked, nacked, disconnected) is kept in
memory and written in one batch every ``fleet_flush_seconds``, so a fan-out that makes thousands
of clients ack at once costs one transaction, not thousands.

Sessions call ``connected``/``acked``/``nacked``/``disconnected`` synchronously: each is a dict
update. ``run()`` flushes; every ``fleet_seen_seconds`` it also rewrites the last-seen time of
every session this replica holds (so a replica that died leaves rows that go stale, then expire)
and deletes rows nobody refreshed for ``fleet_ttl_seconds``.

Several replicas write the same rows. A row is keyed by (client id, environment id), so the
last writer wins: a client that moves to another replica is that replica's from its next write.
Writes are guarded where order matters: a session's disconnect only changes the row while that
session still owns it, an ack or nack never sets ``connected``, and an ack, nack or last-seen
time older than the stored one is not written over it (a retried or late batch).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from anvil_common.db import Database, utcnow
from anvil_wire.push import Ack, Hello, Nack

from ..settings import GatewaySettings
from . import repository

__all__ = ["FleetWriter", "FleetSession", "Key", "MAX_FAILED_FLUSHES"]

log = logging.getLogger("anvil.push_gateway.fleet")

Key = tuple[str, str]  # (client id, environment id)
# A batch that failed this many flushes in a row is dropped (logged) rather than retried forever.
MAX_FAILED_FLUSHES = 5


class _Channel(Protocol):
    @property
    def environment_id(self) -> str: ...

    @property
    def key(self) -> tuple[str, str, str]: ...


class FleetSession(Protocol):
    """What the writer reads of a session (sessions.Session)."""

    @property
    def id(self) -> str: ...

    @property
    def hello(self) -> Hello: ...

    @property
    def channel(self) -> _Channel: ...

    @property
    def prompt_set(self) -> str | None: ...


@dataclass(frozen=True)
class _Identity:
    organisation: str
    project: str
    environment: str
    prompt_set: str | None
    sdk_name: str
    sdk_version: str
    labels: Mapping[str, str]
    transport: str
    session_id: str | None


@dataclass(frozen=True)
class _Live:
    """A session of this replica that holds the client."""

    session_id: str
    identity: _Identity
    connected_at: datetime


@dataclass
class _Change:
    """What happened to one (client, environment) since the last flush."""

    identity: _Identity
    seen_at: datetime
    live: _Live | None = None  # write the row as connected by this session
    gone: str | None = None  # a session that ended: disconnect the row if it still owns it
    http: bool = False  # an HTTP client's report: the row becomes an HTTP client's
    ack: tuple[int, str, datetime] | None = None
    nack: tuple[int, str, str, datetime] | None = None

    def after(self, older: _Change) -> _Change:
        """This change merged over an older one for the same key (newer facts win)."""
        return _Change(
            identity=self.identity,
            seen_at=max(self.seen_at, older.seen_at),
            live=self.live or older.live,
            gone=self.gone or older.gone,
            http=self.http or older.http,
            ack=self.ack or older.ack,
            nack=self.nack or older.nack,
        )


def _identity(session: FleetSession) -> _Identity:
    hello = session.hello
    organisation, project, environment = session.channel.key
    return _Identity(
        organisation=organisation,
        project=project,
        environment=environment,
        prompt_set=session.prompt_set,
        sdk_name=hello.sdk.name,
        sdk_version=hello.sdk.version,
        labels=dict(hello.labels),
        transport="websocket",
        session_id=session.id,
    )


@dataclass
class FleetWriter:
    """Records sessions' reports and writes them in batches (see the module docstring)."""

    db: Database
    replica: str
    settings: GatewaySettings
    clock: Callable[[], datetime] = utcnow
    _live: dict[Key, _Live] = field(default_factory=dict, init=False)
    _pending: dict[Key, _Change] = field(default_factory=dict, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    _failures: int = field(default=0, init=False)
    _closed: bool = field(default=False, init=False)

    @property
    def fresh_for(self) -> timedelta:
        """How long a connected row counts as connected without a rewrite of its last-seen time."""
        s = self.settings
        return timedelta(seconds=2 * s.fleet_seen_seconds + s.fleet_flush_seconds)

    # -- what sessions report (synchronous, cheap) --------------------------------------------

    def _change(self, key: Key, identity: _Identity) -> _Change:
        now = self.clock()
        change = self._pending.get(key)
        if change is None:
            change = self._pending[key] = _Change(identity=identity, seen_at=now)
        else:
            change.identity, change.seen_at = identity, max(change.seen_at, now)
        return change

    def _session_identity(self, key: Key, session: FleetSession) -> _Identity:
        live = self._live.get(key)
        return live.identity if live is not None and live.session_id == session.id else _identity(session)

    @staticmethod
    def _key(session: FleetSession) -> Key:
        return (session.hello.client_id, session.channel.environment_id)

    def connected(self, session: FleetSession) -> None:
        """A session subscribed: its client is connected to this replica."""
        if self._closed:
            return
        key, identity = self._key(session), _identity(session)
        live = self._live[key] = _Live(session.id, identity, self.clock())
        change = self._change(key, identity)
        change.live, change.gone, change.http = live, None, False

    def acked(self, session: FleetSession, ack: Ack) -> None:
        """The session's client applied ``ack.revision``."""
        if self._closed:
            return
        key = self._key(session)
        change = self._change(key, self._session_identity(key, session))
        change.ack = (ack.revision, ack.manifest_digest, change.seen_at)

    def nacked(self, session: FleetSession, nack: Nack) -> None:
        """The session's client refused ``nack.revision``."""
        if self._closed:
            return
        key = self._key(session)
        change = self._change(key, self._session_identity(key, session))
        change.nack = (nack.revision, nack.code, nack.detail, change.seen_at)

    def disconnected(self, session: FleetSession) -> None:
        """The session ended (a newer session of the same client keeps the row connected)."""
        if self._closed:
            return
        key = self._key(session)
        live = self._live.get(key)
        if live is not None and live.session_id == session.id:
            del self._live[key]
        self._change(key, self._session_identity(key, session)).gone = session.id

    def reported(self, hello: Hello, message: Ack | Nack) -> None:
        """An HTTP client's ``POST /v1/acks`` (already checked against the token and environment)."""
        if self._closed:
            return
        sub = hello.subscription
        identity = _Identity(
            organisation=sub.organisation,
            project=sub.project,
            environment=sub.environment,
            prompt_set=sub.prompt_set,
            sdk_name=hello.sdk.name,
            sdk_version=hello.sdk.version,
            labels=dict(hello.labels),
            transport="http",
            session_id=None,
        )
        change = self._change((hello.client_id, message.environment_id), identity)
        change.http = True
        if isinstance(message, Ack):
            change.ack = (message.revision, message.manifest_digest, change.seen_at)
        else:
            change.nack = (message.revision, message.code, message.detail, change.seen_at)

    def refresh(self) -> None:
        """Queue a last-seen rewrite of every session this replica holds."""
        for key, live in self._live.items():
            self._change(key, live.identity).live = live

    # -- writing ------------------------------------------------------------------------------

    async def flush(self) -> None:
        """Write what changed since the last flush, in one transaction; kept for the next on failure."""
        async with self._lock:
            batch, self._pending = self._pending, {}
            if not batch:
                return
            try:
                async with self.db.session() as session:
                    await repository.write_changes(session, self._rows(batch))
            except asyncio.CancelledError:
                self._keep(batch)  # for aclose's final flush
                raise
            except Exception:
                self._failures += 1
                if self._failures >= MAX_FAILED_FLUSHES:
                    log.exception(
                        "dropping %d fleet changes after %d failed writes", len(batch), MAX_FAILED_FLUSHES
                    )
                    self._failures = 0
                    return
                log.warning("fleet write failed; retrying with the next batch", exc_info=True)
                self._keep(batch)
                return
            self._failures = 0

    def _keep(self, batch: Mapping[Key, _Change]) -> None:
        """Put an unwritten batch back under what happened since (writes are idempotent)."""
        for key, older in batch.items():
            newer = self._pending.get(key)
            self._pending[key] = older if newer is None else newer.after(older)

    def _rows(self, batch: Mapping[Key, _Change]) -> repository.Changes:
        changes = repository.Changes()
        for (client_id, environment_id), change in batch.items():
            base = _row(client_id, environment_id, change, self.replica)
            if change.live is not None:
                changes.live.append(_live_row(base, change.live))
            elif change.http:
                changes.http.append(base)
            elif change.ack is not None or change.nack is not None:
                changes.reports.append({**base, "connected": (client_id, environment_id) in self._live})
            if change.gone is not None:
                changes.gone.append(
                    {
                        "k_client": uuid.UUID(client_id),
                        "k_environment": uuid.UUID(environment_id),
                        "k_session": uuid.UUID(change.gone),
                        "k_seen": change.seen_at,
                    }
                )
        return changes

    async def expire(self) -> int:
        """Delete rows nobody refreshed for fleet_ttl_seconds; how many."""
        cutoff = self.clock() - timedelta(seconds=self.settings.fleet_ttl_seconds)
        async with self.db.session() as session:
            return await repository.delete_unseen_since(session, cutoff)

    async def forget_previous_run(self) -> None:
        """Mark disconnected what an earlier run under this replica's name left connected."""
        async with self.db.session() as session:
            await repository.disconnect_replica(session, self.replica)

    async def run(self) -> None:
        """Flush every fleet_flush_seconds; refresh last-seen times and expire rows every
        fleet_seen_seconds. Runs until cancelled."""
        await _logged(self.forget_previous_run(), "could not reset this replica's earlier fleet rows")
        loop = asyncio.get_running_loop()
        next_seen = loop.time() + self.settings.fleet_seen_seconds
        while True:
            await asyncio.sleep(self.settings.fleet_flush_seconds)
            if loop.time() >= next_seen:
                next_seen = loop.time() + self.settings.fleet_seen_seconds
                self.refresh()
                await _logged(self.expire(), "could not expire old fleet rows")
            await self.flush()

    async def aclose(self) -> None:
        """The final flush: every session this replica still holds is written as disconnected."""
        for key, live in self._live.items():
            self._change(key, live.identity).gone = live.session_id
        self._live.clear()
        self._closed = True
        await self.flush()


async def _logged(work: Any, what: str) -> None:
    try:
        await work
    except Exception:
        log.warning(what, exc_info=True)


def _row(client_id: str, environment_id: str, change: _Change, replica: str) -> dict[str, Any]:
    """Every column of the row a change writes (nulls where it says nothing)."""
    identity, ack, nack = change.identity, change.ack, change.nack
    return {
        "client_id": uuid.UUID(client_id),
        "environment_id": uuid.UUID(environment_id),
        "organisation": identity.organisation,
        "project": identity.project,
        "environment": identity.environment,
        "prompt_set": identity.prompt_set,
        "sdk_name": identity.sdk_name,
        "sdk_version": identity.sdk_version,
        "labels": dict(identity.labels),
        "replica": replica,
        "session_id": None if identity.session_id is None else uuid.UUID(identity.session_id),
        "transport": identity.transport,
        "connected": False,
        "connected_at": None,
        "last_seen_at": change.seen_at,
        "revision": ack[0] if ack else None,
        "manifest_digest": ack[1] if ack else None,
        "acked_at": ack[2] if ack else None,
        "nack_revision": nack[0] if nack else None,
        "nack_code": nack[1] if nack else None,
        "nack_detail": nack[2] if nack else None,
        "nacked_at": nack[3] if nack else None,
    }


def _live_row(base: dict[str, Any], live: _Live) -> dict[str, Any]:
    identity = live.identity
    return {
        **base,
        "organisation": identity.organisation,
        "project": identity.project,
        "environment": identity.environment,
        "prompt_set": identity.prompt_set,
        "sdk_name": identity.sdk_name,
        "sdk_version": identity.sdk_version,
        "labels": dict(identity.labels),
        "session_id": uuid.UUID(live.session_id),
        "transport": "websocket",
        "connected": True,
        "connected_at": live.connected_at,
    }
