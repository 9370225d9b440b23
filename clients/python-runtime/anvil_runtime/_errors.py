"""The SDK's exceptions: every one an ``AnvilError``, so an app can catch them all at once."""

from __future__ import annotations

__all__ = ["AnvilError", "ConfigurationError", "NotReadyError", "PromptNotFoundError"]


class AnvilError(Exception):
    """Base class of the errors the runtime SDK raises."""


class ConfigurationError(AnvilError, ValueError):
    """The client was constructed with settings that cannot work (raised by the constructor)."""


class NotReadyError(AnvilError):
    """No revision is available yet (nothing live, cached or bootstrapped) and no fallback given.

    The message says why: what the client tried and what failed.
    """


class PromptNotFoundError(AnvilError, KeyError):
    """The revision the client serves has no prompt of that name, and no fallback was given."""

    def __str__(self) -> str:
        # KeyError's str() quotes its argument; this one carries a sentence.
        return str(self.args[0]) if self.args else ""
