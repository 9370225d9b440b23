"""Names and numbers of the push protocol (docs/push-protocol.md sections 1, 2.2, 5.1 and 6)."""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "SUBPROTOCOL",
    "BEARER_PREFIX",
    "CloseCode",
    "RECONNECT_CODES",
    "PERSON_CODES",
    "CLIENT_BUG_CODES",
    "NACK_CODES",
    "should_reconnect",
]

SUBPROTOCOL = "anvil.push.v1"
# Browsers cannot set headers on a WebSocket: they offer the token as a second subprotocol,
# which the gateway reads and never selects.
BEARER_PREFIX = "anvil.bearer."


class CloseCode(IntEnum):
    """WebSocket close codes the gateway sends (section 6)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    PROTOCOL_ERROR = 4000
    TOKEN_EXPIRED = 4001
    TOKEN_REVOKED = 4002
    FORBIDDEN = 4003
    NOT_FOUND = 4004
    ENVIRONMENT_ARCHIVED = 4005
    HELLO_TIMEOUT = 4006
    TOO_SLOW = 4007


# Closes after which a client reconnects on its own, with jittered backoff (section 5.1; after
# TOKEN_EXPIRED it first gets a fresh token).
RECONNECT_CODES = frozenset(
    {
        CloseCode.NORMAL,
        CloseCode.GOING_AWAY,
        CloseCode.INTERNAL_ERROR,
        CloseCode.SERVICE_RESTART,
        CloseCode.TOKEN_EXPIRED,
        CloseCode.HELLO_TIMEOUT,
        CloseCode.TOO_SLOW,
    }
)
# Closes that need a person or a new token first: retry no more than every few minutes.
PERSON_CODES = frozenset(
    {CloseCode.TOKEN_REVOKED, CloseCode.FORBIDDEN, CloseCode.NOT_FOUND, CloseCode.ENVIRONMENT_ARCHIVED}
)
# Closes caused by a client bug: reconnecting would only repeat it.
CLIENT_BUG_CODES = frozenset({CloseCode.PROTOCOL_ERROR, CloseCode.MESSAGE_TOO_BIG})

# The ``reason.code`` values of a ``nack`` (section 2.2).
NACK_CODES = frozenset(
    {
        "bad-signature",
        "environment-mismatch",
        "digest-mismatch",
        "rollback",
        "invalid-prompt",
        "base-mismatch",
        "internal",
    }
)


def should_reconnect(code: int | None) -> bool:
    """True when a client reconnects with backoff after this close code (None: no close frame)."""
    # "Any close except ...": a dropped connection (1006) or a code a newer gateway adds is
    # treated like a gateway failure.
    return code not in PERSON_CODES and code not in CLIENT_BUG_CODES
