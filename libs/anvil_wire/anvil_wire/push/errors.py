"""Errors of the push protocol: a broken message, and a revision a client refuses."""

from __future__ import annotations

from .codes import NACK_CODES

__all__ = ["ProtocolError", "PushRefused", "DeltaError"]


class ProtocolError(ValueError):
    """A message that breaks the protocol: the gateway closes the connection with 4000."""


class PushRefused(ValueError):
    """A revision the client must not apply; ``code`` is the ``nack`` reason code."""

    def __init__(self, code: str, detail: str) -> None:
        if code not in NACK_CODES:
            raise ValueError(f"unknown nack code {code!r}")
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class DeltaError(PushRefused):
    """A delta that cannot be applied to what the client holds (``base-mismatch``, ``digest-mismatch``)."""
