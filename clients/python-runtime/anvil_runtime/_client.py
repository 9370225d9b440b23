"""``AnvilClient``: the SDK for threaded (and plain synchronous) apps.

It runs an ``AsyncAnvilClient`` on an event loop in one daemon thread of its own. Reads
(``get_prompt``) never touch that thread: they take the served revision, which the loop
replaces whole by one reference assignment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

from ._async_client import AsyncAnvilClient
from ._core import ClientState
from ._errors import NotReadyError
from ._forks import track
from ._prompt import Prompt

__all__ = ["AnvilClient"]

log = logging.getLogger("anvil_runtime")


class AnvilClient:
    """Serves an environment's prompts to a synchronous app, kept current by the push gateway.

    Takes the same arguments as ``AsyncAnvilClient``. Construction never blocks: the
    background thread starts at once and loads the cache, then connects. Use it as a context
    manager, or call ``close()``.

    Example::

        client = AnvilClient("https://gateway.example", token=token, cache_dir=".anvil")
        client.wait_until_ready(timeout=5)
        text = client.get_prompt("support/greeting").render(name="Ada")

    After ``os.fork()`` a client used in the child starts a new background thread (with a
    warning), keeping the revision it held.
    """

    def __init__(self, url: str, **options: Any) -> None:
        """Configure and start a client; see ``AsyncAnvilClient`` for the arguments.

        Raises:
            ConfigurationError: A setting cannot work.
        """
        self._inner = AsyncAnvilClient(url, **options)
        self._forked = False
        self._closed = False
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._start_thread()
        track(self)

    def _start_thread(self) -> None:
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._inner.start())
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=main, name="anvil-runtime", daemon=True)
        self._thread.start()
        started.wait(5.0)  # start() only creates a task: this is a thread switch, not I/O

    def _reinitialise_in_child(self) -> None:
        with self._lock:
            if not self._forked:
                return
            self._forked = False
            log.warning(
                "AnvilClient used in a forked child (pid %d): starting a new background thread "
                "(create clients after forking to avoid this)",
                os.getpid(),
            )
            self._lock = threading.Lock()
            self._inner._reinitialise(warn=False)
            if not self._closed:
                self._start_thread()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the background thread, waiting at most ``timeout`` seconds; never hangs.

        The served revision stays readable after closing.
        """
        if self._closed:
            return
        self._closed = True
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return
        deadline = time.monotonic() + max(timeout, 0.0)
        try:
            # The inner close gets most of the time; stopping the loop and the thread, the rest.
            future = asyncio.run_coroutine_threadsafe(self._inner.close(timeout * 0.8), loop)
            future.result(timeout=max(timeout, 0.0))
        except Exception as exc:  # TimeoutError, or a loop already gone
            log.warning("the client did not close cleanly within %.1f s: %r", timeout, exc)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(loop.stop)
        thread.join(max(deadline - time.monotonic(), 0.0))
        if thread.is_alive():
            log.warning("the client's thread is still running after %.1f s; leaving it (daemon)", timeout)

    @property
    def state(self) -> ClientState:
        """``LIVE``, ``STALE`` or ``OFFLINE`` (see ``ClientState``)."""
        return self._inner.state

    @property
    def is_ready(self) -> bool:
        """True when a verified revision is being served (live or stale)."""
        return self._inner.is_ready

    @property
    def revision(self) -> int | None:
        """The number of the revision being served, or None."""
        return self._inner.revision

    @property
    def last_error(self) -> str | None:
        """Why the client is not live, in words (None when it is)."""
        return self._inner.last_error

    def get_prompt(self, name: str, *, fallback: str | Mapping[str, Any] | None = None) -> Prompt:
        """The served prompt ``name``; see ``AsyncAnvilClient.get_prompt``.

        Raises:
            NotReadyError: No revision is available and no fallback was given.
            PromptNotFoundError: The revision does not serve ``name`` and no fallback was given.
            RenderError: The fallback is not a valid template.
        """
        if self._forked:
            self._reinitialise_in_child()
        return self._inner.get_prompt(name, fallback=fallback)

    def on_change(self, callback: Callable[[frozenset[str]], Any]) -> Callable[[], None]:
        """Call ``callback(names)`` after each applied revision, on the client's thread.

        See ``AsyncAnvilClient.on_change``. Returns a function that removes the callback.
        """
        return self._inner.on_change(callback)

    def wait_until_ready(self, timeout: float = 10.0) -> ClientState:
        """Block until the client is live, or serves a revision while the gateway is unreachable.

        Args:
            timeout: Seconds to wait at most.

        Returns:
            ``ClientState.LIVE`` or ``ClientState.STALE``.

        Raises:
            NotReadyError: There is no revision to serve after ``timeout``.
        """
        if self._forked:
            self._reinitialise_in_child()
        core = self._inner._core
        core.wait_sync(core.ready_enough, timeout)
        if core.current is None:
            raise NotReadyError(core.why_not_ready())
        return core.state
