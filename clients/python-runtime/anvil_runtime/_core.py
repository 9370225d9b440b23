"""What a client holds and how it changes: the served revision, its sources, state, listeners.

``Core`` is shared by the connection code (which feeds it revisions) and the public clients
(which read it). Readers take ``core.current`` once, a whole ``Applied`` revision: it is
replaced by a single reference assignment, so no reader ever sees half of one.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from anvil_wire import RevisionError, verify_revision
from anvil_wire.push import Delta, PromptSetScope, PushRefused, Snapshot, Subscription, verify_pushed

from ._config import Options, TokenSource, subscription_from, token_claims
from ._errors import ConfigurationError
from ._keys import TrustedKeys, pinned_keys
from ._revision import Applied, build_applied, changed_names, check_binding
from ._session import Outcome, Refuse, Session
from ._store import CacheError, Store, read_json_file

__all__ = ["ClientState", "Core"]

log = logging.getLogger("anvil_runtime")
ChangeCallback = Callable[[frozenset[str]], Any]


class ClientState(enum.StrEnum):
    """How current the served prompts are.

    ``LIVE``: connected to the gateway and serving the environment's current revision.
    ``STALE``: serving a revision (cached, bootstrapped, or received before the connection
    was lost or a newer revision was refused) while not known to be current.
    ``OFFLINE``: no revision to serve.
    """

    LIVE = "live"
    STALE = "stale"
    OFFLINE = "offline"


class Core:
    """The client's state, fed by the connection loop; every change wakes waiters and listeners."""

    def __init__(self, options: Options, tokens: TokenSource) -> None:
        self.options = options
        self.tokens = tokens
        self.pinned = None if options.public_keys is None else pinned_keys(options.public_keys)
        self.store = None if options.cache_dir is None else Store(options.cache_dir)
        self.current: Applied | None = None
        self.subscription: Subscription | None = None
        self.keys: TrustedKeys | None = None
        self.client_id: str | None = None
        self.connected = False
        self.gateway_current: tuple[str, int, str] | None = None
        self.attempt_failed = False
        self.last_error: str | None = None
        self.sources: dict[str, str] = {}  # source -> why it is not being served
        self.lost_since: float | None = None  # monotonic time the connection was lost (or first failed)
        self.failed_attempts = 0
        self._floors: dict[str, int] = {}
        self._listeners: list[ChangeCallback] = []
        self._condition = threading.Condition()
        self._changed: asyncio.Event | None = None
        self._tasks: set[asyncio.Future[None]] = set()  # async callbacks, kept until done

    # -- reading -------------------------------------------------------------------------------

    @property
    def state(self) -> ClientState:
        current = self.current
        if current is None:
            return ClientState.OFFLINE
        if self.connected and self.gateway_current == (
            current.environment_id,
            current.revision,
            current.manifest_digest,
        ):
            return ClientState.LIVE
        return ClientState.STALE

    def ready_enough(self) -> bool:
        """Live, or holding a revision while the gateway could not be reached (no use waiting)."""
        state = self.state
        return state is ClientState.LIVE or (state is ClientState.STALE and self.attempt_failed)

    def why_not_ready(self) -> str:
        parts = [f"gateway {self.options.url}: {self.last_error or 'not connected yet'}"]
        parts += [f"{source}: {why}" for source, why in self.sources.items()]
        return "no revision to serve (" + "; ".join(parts) + ")"

    # -- change notification -------------------------------------------------------------------

    def add_listener(self, callback: ChangeCallback) -> Callable[[], None]:
        self._listeners.append(callback)

        def remove() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return remove

    def notify(self) -> None:
        """Wake every waiter (threads and the loop): the state may have changed."""
        with self._condition:
            self._condition.notify_all()
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    def changed_event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def wait_sync(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self._condition:
            return self._condition.wait_for(predicate, timeout)

    def _emit(self, names: frozenset[str]) -> None:
        for callback in list(self._listeners):
            try:
                result = callback(names)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(_logged(result))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            except Exception:
                log.exception("on_change callback %r failed", callback)

    # -- the connection, as the log tells it: one line when lost, one when recovered ----------

    def connection_up(self, environment_id: str, current: tuple[int, str] | None) -> None:
        """A gateway accepted the subscription (a welcome, or a fallback answer)."""
        self.gateway_current = None if current is None else (environment_id, *current)
        if self.lost_since is not None:
            log.info(
                "connected to %s after %d failed attempt(s) over %.1f s",
                self.options.url,
                self.failed_attempts,
                time.monotonic() - self.lost_since,
            )
        self.lost_since, self.failed_attempts = None, 0
        self.connected = True
        self.attempt_failed = False
        self.last_error = None if current is not None else "the environment has no revision yet"
        self.notify()

    def connection_down(self, why: str) -> None:
        """A connection ended or an attempt failed: log the first, count the rest."""
        self.connected = False
        if self.lost_since is None:
            self.lost_since = time.monotonic()
            current = self.current
            log.warning(
                "no connection to %s (%s); %s until it is back",
                self.options.url,
                why,
                f"serving revision {current.revision}" if current else "nothing to serve",
            )
        else:
            log.debug("connection attempt failed: %s", why)
        self.failed_attempts += 1
        self.last_error = why
        self.attempt_failed = True
        self.notify()

    # -- preparing -----------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Token, subscription, keys and client id; ConfigurationError if they cannot work."""
        token = await self.tokens.get()
        self.subscription = subscription_from(self.options, token)
        jwks_url = None if self.pinned is not None else self.options.jwks_url(token_claims(token).get("iss"))
        if self.pinned is None and jwks_url is None:
            raise ConfigurationError(
                "no keys to verify revisions with: pass public_keys, registry_url, or a token with an 'iss'"
            )
        if self.store is not None:
            self.client_id = await asyncio.to_thread(self.store.client_id)
        else:
            import uuid

            self.client_id = str(uuid.uuid4())
        self.keys = TrustedKeys(
            pinned=self.pinned,
            jwks_url=jwks_url,
            store=self.store,
            refresh_seconds=self.options.jwks_refresh_seconds,
            http=self.http_client,
        )

    def http_client(self, **kwargs: Any) -> Any:
        import httpx

        return httpx.AsyncClient(timeout=self.options.connect_timeout, **kwargs)

    def floor(self, environment_id: str) -> int:
        remembered = self._floors.get(environment_id, 0)
        if self.store is None:
            return remembered
        try:
            return max(remembered, self.store.floor(environment_id))
        except (OSError, ValueError):
            return remembered

    # -- applying ------------------------------------------------------------------------------

    async def apply(self, applied: Applied, *, persist: bool) -> None:
        """Persist (best effort), swap in, notify. The floor only grows."""
        env = applied.environment_id
        self._floors[env] = max(self._floors.get(env, 0), applied.revision)
        if persist and self.store is not None:
            try:
                await asyncio.to_thread(self._persist, applied)
            except OSError as exc:
                log.error("cannot persist revision %d to %s: %s", applied.revision, self.store.root, exc)
        old, self.current = self.current, applied
        self.notify()
        names = changed_names(old, applied)
        if names:
            self._emit(names)

    def _persist(self, applied: Applied) -> None:
        assert self.store is not None
        assert self.subscription is not None
        record = {
            "environment_id": applied.environment_id,
            "revision": applied.revision,
            "manifest_digest": applied.manifest_digest,
            "prompt_set": None if applied.scope is None else applied.scope.to_json(),
            "fetched_at": applied.fetched_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "document": applied.document,
        }
        # The revision first: a floor without the revision it guards would refuse that revision.
        self.store.save_lkg(self.subscription, record)
        self.store.raise_floor(applied.environment_id, applied.revision)

    async def decide(self, session: Session, message: Snapshot | Delta) -> Outcome:
        """The session's decision, asked again once after a key refresh if a ``kid`` was unknown."""
        assert self.keys is not None
        session.held = self.current
        self.keys.missed = None
        # Verifying and compiling a large revision takes a while: not on the app's event loop.
        outcome = await asyncio.to_thread(session.on_revision, message, datetime.now(UTC))
        if (
            isinstance(outcome, Refuse)
            and outcome.nack.code == "bad-signature"
            and self.keys.missed is not None
            and await self.keys.refresh()
        ):
            outcome = await asyncio.to_thread(session.on_revision, message, datetime.now(UTC))
        if isinstance(outcome, Refuse):
            self.last_error = (
                f"refused revision {message.revision}: {outcome.nack.code} ({outcome.nack.detail})"
            )
            log.warning(
                "refused revision %d of %s: %s (%s)",
                message.revision,
                self.subscription_text,
                outcome.nack.code,
                outcome.nack.detail,
            )
        return outcome

    @property
    def subscription_text(self) -> str:
        s = self.subscription
        if s is None:
            return "(no subscription)"
        return f"{s.organisation}/{s.project}/{s.environment}" + (
            f" (prompt set {s.prompt_set})" if s.prompt_set else ""
        )

    # -- starting from disk --------------------------------------------------------------------

    async def load_start_revision(self) -> None:
        """Serve the persisted last-known-good revision if it verifies, else the bootstrap file."""
        for source, load in (("cache", self._load_cache), ("bootstrap", self._load_bootstrap)):
            try:
                applied = await self._with_keys(load)
            except (CacheError, PushRefused, RevisionError, OSError) as exc:
                detail = exc.detail if isinstance(exc, PushRefused) else str(exc)
                self.sources[source] = f"refused: {detail}"
                log.warning("not serving the %s revision: %s", source, detail)
                continue
            if applied is None:
                continue
            self.sources.pop(source, None)
            await self.apply(applied, persist=source == "bootstrap")
            log.info(
                "serving revision %d of %s from the %s", applied.revision, self.subscription_text, source
            )
            return

    async def _with_keys(self, load: Callable[[], Applied | None]) -> Applied | None:
        assert self.keys is not None
        if not self.keys.loaded:
            await self.keys.refresh()
        self.keys.missed = None
        try:
            return load()
        except (PushRefused, RevisionError):
            if self.keys.missed is None or not await self.keys.refresh():
                raise
        return load()

    def _load_cache(self) -> Applied | None:
        assert self.subscription is not None
        assert self.keys is not None
        if self.store is None:
            self.sources["cache"] = "no cache_dir configured"
            return None
        record = self.store.load_lkg(self.subscription)
        if record is None:
            self.sources["cache"] = f"nothing cached in {self.store.root}"
            return None
        try:
            scope = None if record["prompt_set"] is None else PromptSetScope.from_json(record["prompt_set"])
            environment_id, revision, digest = (
                record["environment_id"],
                record["revision"],
                record["manifest_digest"],
            )
            fetched_at = datetime.strptime(record["fetched_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            document = record["document"]
        except (KeyError, TypeError, ValueError) as exc:
            raise CacheError(
                f"cached revision {self.store.lkg_path(self.subscription)} is damaged: {exc}"
            ) from None
        verified = verify_pushed(
            document,
            self.keys.lookup,
            environment_id=environment_id,
            prompts=None if scope is None else scope.prompts,
            expected=(revision, digest),
        )
        return self._checked(verified, document["manifest"], digest, scope, "cache", fetched_at)

    def _load_bootstrap(self) -> Applied | None:
        assert self.keys is not None
        path = self.options.bootstrap
        if path is None:
            self.sources["bootstrap"] = "no bootstrap file configured"
            return None
        document = read_json_file(path, what="bootstrap file")
        verified = verify_revision(document, self.keys.lookup)
        from anvil_wire.push import manifest_digest

        jws = document["manifest"]
        return self._checked(verified, jws, manifest_digest(jws), None, "bootstrap", datetime.now(UTC))

    def _checked(
        self,
        verified: Any,
        jws: str,
        digest: str,
        scope: PromptSetScope | None,
        source: Any,
        fetched_at: datetime,
    ) -> Applied:
        assert self.subscription is not None
        manifest = verified.manifest
        check_binding(manifest, self.subscription)
        floor = self.floor(manifest.environment_id)
        if manifest.revision < floor:
            raise PushRefused(
                "rollback", f"revision {manifest.revision} is below revision {floor}, applied before"
            )
        return build_applied(verified, jws, digest, scope, source=source, fetched_at=fetched_at)


async def _logged(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("on_change callback failed")
