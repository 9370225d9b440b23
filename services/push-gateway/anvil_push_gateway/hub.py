"""The gateway's live state: environments (channels) loaded on first use and kept current from
the registry's event feed, the sessions subscribed to each, and the fan-out between them.

Loading is lazy: an environment is read from the registry when its first client subscribes (or
an HTTP fallback asks for it), then every ``revision.created`` event for it brings the new
revision, fetched once however many clients get it. Revision numbers only grow, so a revision
fetched late (a slow fetch overtaken by a newer one) is dropped, and an event that arrives while
an environment is loading is remembered and honoured once it has loaded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Iterable
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection, broadcast

from anvil_common.problems import Gone, NotFound
from anvil_common.registry_http import RegistryError, RegistryProblem
from anvil_wire.jws import UnknownKey
from anvil_wire.push import CloseCode, manifest_digest
from anvil_wire.revisions import RevisionError, verify_revision

from .channels import Channel, ChannelKey, Revision, Scope
from .keys import RegistryKeys
from .metrics import GatewayMetrics
from .registry_client import RegistryClient

__all__ = ["Hub", "Subscriber", "EnvironmentArchived", "NoSuchEnvironment"]

log = logging.getLogger("anvil.push_gateway.hub")


class NoSuchEnvironment(NotFound):
    """No such organisation, project, environment or prompt set (4004 / 404)."""


class EnvironmentArchived(Gone):
    code, title = "environment-archived", "Environment archived"


class Subscriber(Protocol):
    """What the hub needs of a session (sessions.py)."""

    connection: ServerConnection
    channel: Channel
    prompt_set: str | None
    jti: str
    base: int | None  # the revision the client holds (said in hello, or acked)
    sent: int  # the newest revision sent on this connection (0: none)
    delivered: set[int]  # every revision sent on this connection that the channel still has

    def close(self, code: int, reason: str) -> None: ...

    def after_send(self) -> None: ...


class Hub:
    def __init__(
        self, registry: RegistryClient, keys: RegistryKeys, metrics: GatewayMetrics, *, history: int
    ) -> None:
        self.registry = registry
        self.keys = keys
        self.metrics = metrics
        self.history = history
        self.by_key: dict[ChannelKey, Channel] = {}
        self.by_id: dict[str, Channel] = {}
        self.subscribers: dict[str, set[Subscriber]] = defaultdict(set)
        self.by_jti: dict[str, set[Subscriber]] = defaultdict(set)
        self.sets: dict[tuple[str, str], tuple[str, ...]] = {}  # (environment id, set) -> members
        self._loading: dict[ChannelKey, asyncio.Future[Channel]] = {}
        self._announced: dict[ChannelKey, int] = {}  # newest revision announced while loading
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    # -- environments -------------------------------------------------------------------------

    async def channel(self, key: ChannelKey) -> Channel:
        """The environment ``key``, loaded from the registry on first use."""
        channel = self.by_key.get(key)
        if channel is None:
            future = self._loading.get(key)
            if future is None:
                future = self._loading[key] = asyncio.ensure_future(self._load(key))
                future.add_done_callback(lambda _: self._loading.pop(key, None))
            channel = await asyncio.shield(future)
        if channel.archived:
            raise EnvironmentArchived(f"environment {key[2]!r} is archived and serves nothing")
        return channel

    async def _load(self, key: ChannelKey) -> Channel:
        self._announced[key] = 0
        try:
            info = await self._ask(self.registry.environment(*key), key)
            channel = Channel(key=key, environment_id=str(info["id"]), history=self.history)
            channel.archived = info.get("archived_at") is not None
            if info.get("current_revision"):
                revision = await self._fetch(channel, int(info["current_revision"]))
                channel.install(revision)
                self.metrics.revision.labels(environment=channel.environment_id).set(revision.number)
            self.by_key[key] = channel
            self.by_id[channel.environment_id] = channel
            announced = self._announced.get(key, 0)
        finally:
            self._announced.pop(key, None)
        if announced > (channel.current.number if channel.current else 0):
            await self.advance(channel, announced)
        return channel

    async def _ask(self, call: Awaitable[Any], key: ChannelKey, *, what: str | None = None) -> Any:
        try:
            return await call
        except RegistryProblem as exc:
            if exc.status == 404:
                raise NoSuchEnvironment(f"{what or 'environment ' + '/'.join(key)} not found") from exc
            if exc.status == 410:
                raise EnvironmentArchived(f"environment {key[2]!r} is archived and serves nothing") from exc
            raise

    async def prompt_set(self, channel: Channel, name: str) -> tuple[str, ...]:
        """The members of prompt set ``name`` of the channel's project (cached, refreshed per revision)."""
        members = self.sets.get((channel.environment_id, name))
        if members is None:
            org, project, _ = channel.key
            what = f"prompt set {name!r} in project {org}/{project}"
            members = tuple(
                await self._ask(self.registry.prompt_set(org, project, name), channel.key, what=what)
            )
            self.sets[(channel.environment_id, name)] = members
        return members

    def scope_of(self, subscriber: Subscriber) -> Scope:
        name = subscriber.prompt_set
        return None if name is None else (name, self.sets[(subscriber.channel.environment_id, name)])

    async def _fetch(self, channel: Channel, number: int) -> Revision:
        """Revision ``number`` of the channel, fetched and verified against the registry's keys."""
        body = await self.registry.revision_document(*channel.key, number)
        try:
            document = json.loads(body)
            try:
                verified = verify_revision(document, self.keys.public, environment_id=channel.environment_id)
            except RevisionError as exc:
                if not isinstance(exc.__cause__, UnknownKey) or not await self.keys.refresh_for(
                    exc.__cause__.kid
                ):
                    raise
                verified = verify_revision(document, self.keys.public, environment_id=channel.environment_id)
        except (ValueError, RevisionError) as exc:
            raise RegistryError(
                f"revision {number} of {'/'.join(channel.key)} does not verify: {exc}"
            ) from exc
        if verified.manifest.revision != number:
            raise RegistryError(f"the registry answered revision {verified.manifest.revision} for {number}")
        return Revision(
            number=number,
            manifest_digest=manifest_digest(document["manifest"]),
            manifest=verified.manifest,
            document=document,
            body=body,
        )

    async def advance(self, channel: Channel, number: int, *, announced_at: float | None = None) -> None:
        """Bring the channel to revision ``number`` (if it is newer) and send it to its sessions."""
        async with self._locks[channel.environment_id]:
            current = channel.current
            if current is not None and current.number >= number:
                return
            revision = await self._fetch(channel, number)
            await self._refresh_sets(channel)
            if not channel.install(revision):
                return
        self.fanout(channel)
        self.metrics.revision.labels(environment=channel.environment_id).set(number)
        if announced_at is not None:
            self.metrics.propagation.observe(max(0.0, time.time() - announced_at))

    async def _refresh_sets(self, channel: Channel) -> None:
        # The sets this replica has served for the channel (not a pass over every session).
        names = sorted(name for environment_id, name in self.sets if environment_id == channel.environment_id)
        for name in names:
            org, project, _ = channel.key
            try:
                self.sets[(channel.environment_id, name)] = tuple(
                    await self.registry.prompt_set(org, project, name)
                )
            except RegistryError as exc:
                log.warning("keeping prompt set %s/%s/%s as it was: %s", org, project, name, exc)

    # -- sessions -----------------------------------------------------------------------------

    def attach(self, subscriber: Subscriber) -> None:
        self.subscribers[subscriber.channel.environment_id].add(subscriber)
        self.by_jti[subscriber.jti].add(subscriber)
        self.metrics.connections.inc()

    def detach(self, subscriber: Subscriber) -> None:
        self.subscribers[subscriber.channel.environment_id].discard(subscriber)
        sessions = self.by_jti.get(subscriber.jti)
        if sessions is not None:
            sessions.discard(subscriber)
            if not sessions:
                del self.by_jti[subscriber.jti]
        self.metrics.connections.dec()

    def connections_of(self, jti: str) -> int:
        return len(self.by_jti.get(jti, ()))

    def fanout(self, channel: Channel, subscribers: Iterable[Subscriber] | None = None) -> None:
        """Send the current revision to every session of the channel (or ``subscribers``) that
        lacks it: one frame per (base, prompt set), the same text to all of its sessions."""
        current = channel.current
        if current is None:
            return
        groups: dict[tuple[int | None, Scope], list[Subscriber]] = defaultdict(list)
        for subscriber in self.subscribers[channel.environment_id] if subscribers is None else subscribers:
            if subscriber.sent >= current.number:
                continue
            # A revision still unacknowledged may or may not be applied by now: a delta from
            # either side of it could miss, so such a client gets a snapshot.
            in_flight = subscriber.sent > (subscriber.base or 0)
            base = None if in_flight else subscriber.base
            groups[(base, self.scope_of(subscriber))].append(subscriber)
        for (base, scope), members in groups.items():
            self.send(members, channel.frame_for(base, current.number, scope), current.number)

    def resync(self, subscriber: Subscriber) -> None:
        """Answer ``resync``: a snapshot of the current revision, even if it was sent before."""
        current = subscriber.channel.current
        if current is not None:
            frame = subscriber.channel.snapshot(current.number, self.scope_of(subscriber))
            self.send([subscriber], frame, current.number)

    def send(self, members: list[Subscriber], frame: str, number: int) -> None:
        """Send revision ``number``'s ``frame`` to ``members``."""
        for member in members:
            member.sent = number
            member.delivered.add(number)
        self.deliver(members, frame)

    def deliver(self, members: list[Subscriber], frame: str) -> None:
        """Queue ``frame`` on every member's connection without waiting for any of them."""
        broadcast([m.connection for m in members], frame)
        for member in members:
            member.after_send()

    # -- events -------------------------------------------------------------------------------

    def on_revision(self, payload: dict[str, Any]) -> tuple[Channel, int] | None:
        """``revision.created``: the loaded channel it moves and to which revision, if any."""
        environment = payload.get("environment") or {}
        number = payload.get("revision")
        if not isinstance(number, int):
            return None
        channel = self.by_id.get(str(environment.get("id")))
        if channel is None:
            key = (payload.get("organisation"), payload.get("project"), environment.get("name"))
            if key in self._announced:
                self._announced[key] = max(self._announced[key], number)
            return None
        return channel, number

    def on_revoked(self, jti: str) -> None:
        for subscriber in list(self.by_jti.get(jti, ())):
            subscriber.close(CloseCode.TOKEN_REVOKED, "token revoked")

    def on_archived(self, organisation: str, project: str, environment: str | None) -> None:
        for key, channel in list(self.by_key.items()):
            if key[:2] == (organisation, project) and environment in (None, key[2]):
                channel.archive()
                for subscriber in list(self.subscribers[channel.environment_id]):
                    subscriber.close(CloseCode.ENVIRONMENT_ARCHIVED, "environment archived")

    def all_subscribers(self) -> list[Subscriber]:
        return [s for group in self.subscribers.values() for s in group]
