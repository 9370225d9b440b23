"""Fork safety: clients registered here are marked ``_forked`` in a child after ``os.fork()``,
and re-initialise themselves (with a warning) the next time the child uses them."""

from __future__ import annotations

import os
import weakref
from typing import Any

__all__ = ["track"]

_CLIENTS: weakref.WeakSet[Any] = weakref.WeakSet()


def track(client: Any) -> None:
    """Mark ``client`` (an object with a ``_forked`` attribute) in every forked child."""
    _CLIENTS.add(client)


def _after_fork_in_child() -> None:
    for client in list(_CLIENTS):
        client._forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
