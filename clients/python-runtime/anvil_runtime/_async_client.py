"""``AsyncAnvilClient``: the SDK for asyncio apps, and the engine of the threaded ``AnvilClient``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from anvil_wire.push import CLIENT_BUG_CODES, PERSON_CODES, CloseCode

from ._backoff import Backoff
from ._config import Options, TokenProvider, TokenSource, Transport
from ._core import ClientState, Core
from ._errors import ConfigurationError, NotReadyError, PromptNotFoundError
from ._forks import track
from ._links import Ended, run_http, run_websocket
from ._prompt import Prompt, fallback_prompt

__all__ = ["AsyncAnvilClient"]

log = logging.getLogger("anvil_runtime")
# Refusals that need a person (or a new token) first: retried every person_retry_seconds.
_PERSON_PROBLEMS = frozenset(
    {"invalid-token", "forbidden", "not-found", "origin-not-allowed", "environment-archived"}
)


class AsyncAnvilClient:
    """Serves an environment's prompts to an asyncio app, kept current by the push gateway.

    Construction never blocks and never touches the network. ``start()`` (or ``async with``)
    begins, in the background: load the persisted last-known-good revision or the bootstrap
    file, connect to the gateway, receive and verify revisions, reconnect when the connection
    is lost. Every revision is verified against the registry's keys before it is served.

    Example::

        async with AsyncAnvilClient("https://gateway.example", token=token, cache_dir=".anvil") as client:
            await client.wait_until_ready(timeout=5)
            text = client.get_prompt("support/greeting").render(name="Ada")
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | TokenProvider,
        cache_dir: str | os.PathLike[str] | None = None,
        public_keys: Any = None,
        registry_url: str | None = None,
        organisation: str | None = None,
        project: str | None = None,
        environment: str | None = None,
        prompt_set: str | None = None,
        bootstrap: str | os.PathLike[str] | None = None,
        labels: Mapping[str, str] | None = None,
        transport: Transport = "auto",
        allow_insecure: bool = False,
        connect_timeout: float = 10.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        long_poll_seconds: float = 30.0,
        jwks_refresh_seconds: float = 60.0,
        person_retry_seconds: float = 300.0,
        websocket_retry_seconds: float = 300.0,
    ) -> None:
        """Configure a client; nothing starts until ``start()``.

        Args:
            url: The push gateway's base URL (``https://...``; ``wss://`` is accepted too).
            token: A client token (JWT with scope ``config:read``), or a callable (sync or async)
                returning one, called at start and again when the gateway says the token
                expired or was revoked.
            cache_dir: Where the client keeps its id, its anti-rollback floors and the
                last-known-good revision (None: nothing persisted, a new client id each run).
            public_keys: The registry's keys, pinned: a JWKS object, a path to a JWKS file, or
                a mapping of ``kid`` to EC public key. Exclusive with ``registry_url``.
            registry_url: The registry whose ``/.well-known/jwks.json`` holds the keys
                (default: the token's ``iss``). Keys never come from the gateway.
            organisation: Organisation slug (default: the client token's ``org``).
            project: Project slug (default: the client token's ``project``).
            environment: Environment name (default: the client token's ``environment``).
            prompt_set: Serve only this prompt set's prompts (and what their partials reach).
            bootstrap: A signed revision document shipped with the app (``anvil config ENV
                --save FILE``), served when there is no usable cache.
            labels: Labels shown in the fleet view (at most 16).
            transport: ``"auto"`` (WebSocket, HTTP long-poll if WebSockets are blocked),
                ``"websocket"`` or ``"http"``.
            allow_insecure: Accept http:// and ws:// URLs (local development only).
            connect_timeout: Seconds for a connection or HTTP request to be established.
            backoff_base: First reconnect delay bound, in seconds (doubles per failure).
            backoff_cap: Largest reconnect delay bound, in seconds.
            long_poll_seconds: How long one HTTP fallback request waits for a new revision.
            jwks_refresh_seconds: Least time between two fetches of the registry's keys.
            person_retry_seconds: Wait after a refusal that needs a person (revoked token,
                forbidden, not found, archived) before trying again.
            websocket_retry_seconds: In ``"auto"`` mode, how long to stay on the HTTP fallback
                before trying WebSockets again.

        Raises:
            ConfigurationError: A setting cannot work (an http:// URL without
                ``allow_insecure``, both ``public_keys`` and ``registry_url``, ...).
        """
        options = Options.build(
            url,
            cache_dir=None if cache_dir is None else Path(cache_dir),
            public_keys=public_keys,
            registry_url=registry_url,
            organisation=organisation,
            project=project,
            environment=environment,
            prompt_set=prompt_set,
            bootstrap=None if bootstrap is None else Path(bootstrap),
            labels=labels,
            transport=transport,
            allow_insecure=allow_insecure,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            connect_timeout=connect_timeout,
            long_poll_seconds=long_poll_seconds,
            jwks_refresh_seconds=jwks_refresh_seconds,
            person_retry_seconds=person_retry_seconds,
            websocket_retry_seconds=websocket_retry_seconds,
        )
        self._core = Core(options, TokenSource(token))
        self._task: asyncio.Task[None] | None = None
        self._closing: asyncio.Event | None = None
        self._forked = False
        self._fallbacks: dict[tuple[str, str], Prompt] = {}
        track(self)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background work (idempotent); returns at once.

        Raises:
            RuntimeError: The client was closed.
        """
        if self._forked:
            self._reinitialise()
        if self._task is not None:
            if self._closing is not None and self._closing.is_set():
                raise RuntimeError("this client was closed")
            return
        self._closing = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="anvil-runtime")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self, timeout: float = 5.0) -> None:
        """Stop the background work and close the connection, waiting at most ``timeout`` seconds.

        The served revision stays readable. Never hangs: whatever has not stopped by then is
        left to finish on its own (and logged).
        """
        task = self._task
        if self._closing is not None:
            self._closing.set()
        if task is None or task.done():
            return
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=max(timeout, 0.0))
        if not done:
            log.warning("the client did not stop within %.1f s; leaving it to finish", timeout)

    def _reinitialise(self, *, warn: bool = True) -> None:
        """In a forked child: the parent's task and loop are gone; start over, keeping the revision."""
        self._forked = False
        if warn:
            log.warning(
                "AsyncAnvilClient used in a forked child (pid %d): re-initialising its connection "
                "(create clients after forking to avoid this)",
                os.getpid(),
            )
        self._task = None
        self._closing = None
        core = self._core
        core.connected = False
        core._changed = None
        core._condition = type(core._condition)()
        if core.keys is not None:
            core.keys._lock = asyncio.Lock()

    # -- reading -------------------------------------------------------------------------------

    @property
    def state(self) -> ClientState:
        """``LIVE``, ``STALE`` or ``OFFLINE`` (see ``ClientState``)."""
        return self._core.state

    @property
    def is_ready(self) -> bool:
        """True when a verified revision is being served (live or stale)."""
        return self._core.current is not None

    @property
    def revision(self) -> int | None:
        """The number of the revision being served, or None."""
        current = self._core.current
        return None if current is None else current.revision

    @property
    def last_error(self) -> str | None:
        """Why the client is not live, in words (None when it is)."""
        core = self._core
        return None if core.state is ClientState.LIVE else core.last_error

    def get_prompt(self, name: str, *, fallback: str | Mapping[str, Any] | None = None) -> Prompt:
        """The served prompt ``name`` (an immutable ``Prompt``).

        Args:
            name: The prompt's name.
            fallback: Used only when no revision is available or it lacks ``name``: template
                text (its ``{{variables}}`` declared without defaults) or content in prompt
                format. It is never signed; its ``source`` is ``"fallback"``.

        Returns:
            The prompt from the revision being served, or one built from ``fallback``.

        Raises:
            NotReadyError: No revision is available and no fallback was given.
            PromptNotFoundError: The revision does not serve ``name`` and no fallback was given.
            RenderError: The fallback is not a valid template.
        """
        if self._forked:
            self._restart_in_child()
        current = self._core.current
        if current is not None:
            prompt = current.prompts.get(name)
            if prompt is not None:
                return prompt
        if fallback is not None:
            return self._fallback(name, fallback)
        if current is None:
            raise NotReadyError(self._core.why_not_ready())
        raise PromptNotFoundError(f"revision {current.revision} does not serve a prompt named {name!r}")

    def _fallback(self, name: str, fallback: str | Mapping[str, Any]) -> Prompt:
        if not isinstance(fallback, str):
            return fallback_prompt(name, fallback)
        key = (name, fallback)
        prompt = self._fallbacks.get(key)
        if prompt is None:
            prompt = fallback_prompt(name, fallback)
            if len(self._fallbacks) < 1024:
                self._fallbacks[key] = prompt
        return prompt

    def _restart_in_child(self) -> None:
        self._reinitialise()
        with contextlib.suppress(RuntimeError):  # no running loop: start() will do it
            loop = asyncio.get_running_loop()
            self._closing = asyncio.Event()
            self._task = loop.create_task(self._run(), name="anvil-runtime")

    def on_change(self, callback: Callable[[frozenset[str]], Any]) -> Callable[[], None]:
        """Call ``callback(names)`` after each applied revision with the prompts that changed.

        ``names`` holds the served prompts that were added, removed, or render differently
        (their content or a partial they reach changed). The callback runs on the client's
        event loop (a coroutine function is scheduled there); its exceptions are logged.

        Returns:
            A function that removes the callback.
        """
        return self._core.add_listener(callback)

    async def wait_until_ready(self, timeout: float = 10.0) -> ClientState:
        """Wait until the client is live, or serves a revision while the gateway is unreachable.

        Args:
            timeout: Seconds to wait at most.

        Returns:
            ``ClientState.LIVE``, or ``ClientState.STALE`` when it serves a cached or
            bootstrapped revision that the gateway could not confirm in time.

        Raises:
            NotReadyError: There is no revision to serve after ``timeout`` (the message says
                what was tried and why it failed).
        """
        if self._forked or self._task is None:
            await self.start()
        core = self._core
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not core.ready_enough() and not (self._task is not None and self._task.done()):
                    await core.changed_event().wait()
        if core.current is None:
            raise NotReadyError(core.why_not_ready())
        return core.state

    # -- the background work -------------------------------------------------------------------

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless closing; False when the client is closing."""
        assert self._closing is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)
        return not self._closing.is_set()

    async def _run(self) -> None:
        core = self._core
        backoff = Backoff(core.options.backoff_base, core.options.backoff_cap)
        try:
            while core.subscription is None:
                try:
                    await core.prepare()
                except ConfigurationError as exc:
                    core.last_error = str(exc)
                    log.error("anvil_runtime cannot start: %s", exc)
                    core.notify()
                    return
                except Exception as exc:  # a token provider that failed
                    core.last_error = f"cannot get a token: {exc}"
                    core.attempt_failed = True
                    log.warning("%s", core.last_error)
                    core.notify()
                    if not await self._sleep(backoff.next_delay()):
                        return
            if core.current is None:
                await core.load_start_revision()
            await self._connect_forever(backoff)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("anvil_runtime stopped unexpectedly; serving what it holds")
            core.last_error = "the client stopped after an internal error (see the log)"
            core.notify()

    async def _connect_forever(self, backoff: Backoff) -> None:
        core = self._core
        transport = "http" if core.options.transport == "http" else "websocket"
        fresh_token = False
        on_fallback = False  # the HTTP fallback works; a WebSocket attempt is only a retry
        while True:
            try:
                token = await core.tokens.get(fresh=fresh_token)
            except Exception as exc:
                ended = Ended("unreachable", detail=f"cannot get a token: {exc}")
            else:
                if transport == "websocket":
                    ended = await run_websocket(core, token)
                else:
                    until = None
                    if core.options.transport == "auto":
                        until = time.monotonic() + core.options.websocket_retry_seconds
                    ended = await run_http(core, token, until=until)
            if ended.welcomed:
                backoff.reset()
            quiet = ended.kind == "retry-websocket" or (on_fallback and ended.kind == "blocked")
            if not quiet:
                core.connection_down(ended.describe())
            if ended.kind == "blocked" and not on_fallback and core.options.transport == "auto":
                log.warning(
                    "WebSockets to %s look blocked (%s); using the HTTP fallback",
                    core.options.url,
                    ended.detail,
                )
            on_fallback = ended.kind in ("blocked", "retry-websocket") and core.options.transport == "auto"
            transport, delay, fresh_token = self._next_step(ended, transport, backoff)
            if not await self._sleep(delay):
                return

    def _next_step(self, ended: Ended, transport: str, backoff: Backoff) -> tuple[str, float, bool]:
        """(transport, delay, ask the provider for a fresh token) after a connection ended."""
        options = self._core.options
        provider = self._core.tokens.is_provider
        if ended.kind == "blocked" and options.transport == "auto":
            return "http", 0.0, False
        if ended.kind == "retry-websocket":
            return "websocket", 0.0, False
        if ended.kind == "closed":
            if ended.code == CloseCode.TOKEN_EXPIRED:
                return transport, backoff.soon(), True
            if ended.code == CloseCode.SERVICE_RESTART:
                return transport, backoff.soon(), False
            if ended.code in PERSON_CODES or ended.code in CLIENT_BUG_CODES:
                return transport, options.person_retry_seconds, provider
        if ended.kind == "refused":
            if ended.problem == "token-expired":
                return transport, backoff.next_delay(), True
            if ended.problem in _PERSON_PROBLEMS:
                return transport, options.person_retry_seconds, provider
        return transport, backoff.next_delay(), False
