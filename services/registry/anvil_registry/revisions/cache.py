"""The hot read path: each environment's current signed document, cached by revision.

Any committed event may change what an environment serves, so every event notification
(in-process after commit; LISTEN/NOTIFY from other replicas) empties the cache. A reader that
missed the cache only stores what it read if no notification arrived meanwhile (generation
check), so a slow read can never re-insert a superseded revision.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CachedConfig", "ConfigCache"]

Key = tuple[str, str, str]


@dataclass(frozen=True)
class CachedConfig:
    etag: str
    body: bytes


class ConfigCache:
    def __init__(self) -> None:
        self._entries: dict[Key, CachedConfig] = {}
        self.generation = 0

    def get(self, key: Key) -> CachedConfig | None:
        return self._entries.get(key)

    def put(self, key: Key, value: CachedConfig, *, generation: int) -> None:
        if generation == self.generation:
            self._entries[key] = value

    def invalidate(self) -> None:
        self.generation += 1
        self._entries.clear()
