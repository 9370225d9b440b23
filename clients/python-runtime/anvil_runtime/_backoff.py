"""Jittered exponential backoff (push-protocol.md section 5.1): "full jitter", reset on welcome."""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """The n-th consecutive failure (n from 0) waits a random time in [0, min(cap, base * 2**n)]."""

    def __init__(self, base: float, cap: float, rng: Callable[[], float] = random.random) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = rng

    def next_delay(self) -> float:
        bound = min(self.cap, self.base * 2 ** min(self.failures, 62))
        self.failures += 1
        return float(self._rng() * bound)

    def soon(self) -> float:
        """After a gateway's drain (1012): a random time in [0, base], without counting a failure."""
        return float(self._rng() * self.base)

    def reset(self) -> None:
        self.failures = 0
