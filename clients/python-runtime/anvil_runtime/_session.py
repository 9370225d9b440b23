"""The push protocol on the client side (push-protocol.md section 3), as pure decisions.

A ``Session`` is told what arrived and answers what to do: apply a revision and ack it, ack
what it already holds, or nack it (and perhaps ask for a resync). It does no I/O: the
connection code sends what it decides, persists what it applies, and may refresh the
registry's keys and ask again when a manifest named a ``kid`` it did not know.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from anvil_wire.jws import KeyLookup
from anvil_wire.push import Ack, Delta, Nack, PushRefused, Snapshot, Subscription, verify_message

from ._revision import Applied, build_applied, check_binding

__all__ = ["Accept", "AlreadyHeld", "Outcome", "Refuse", "Session", "decide"]


@dataclass(frozen=True)
class Accept:
    """Apply ``applied`` (atomically, persisted), then send ``ack``."""

    applied: Applied
    ack: Ack


@dataclass(frozen=True)
class AlreadyHeld:
    """The revision is the one the client holds (a resync's answer): ack it, change nothing."""

    ack: Ack


@dataclass(frozen=True)
class Refuse:
    """Keep what is held, send ``nack``; then ``resync`` if set (a delta that cannot apply)."""

    nack: Nack
    resync: bool


Outcome = Accept | AlreadyHeld | Refuse
_RESYNC_CODES = frozenset({"base-mismatch", "digest-mismatch"})


def decide(
    message: Snapshot | Delta,
    *,
    subscription: Subscription,
    environment_id: str,
    keys: KeyLookup,
    held: Applied | None,
    floor: int,
    fetched_at: datetime,
) -> Outcome:
    """What to do with a pushed revision for ``subscription`` (environment ``environment_id``).

    ``held`` is what the client serves (possibly of another environment id, then it is not a
    delta base), ``floor`` the highest revision applied for ``environment_id``.
    """
    same_environment = held is not None and held.environment_id == environment_id
    if (
        held is not None
        and same_environment
        and (held.revision, held.manifest_digest) == (message.revision, message.manifest_digest)
        and message.environment_id == environment_id
    ):
        return AlreadyHeld(Ack.of(message))
    base = (held.revision, held.verified.contents) if held is not None and same_environment else None
    try:
        verified = verify_message(
            message, keys, environment_id=environment_id, prompt_set=subscription.prompt_set, held=base
        )
        check_binding(verified.manifest, subscription)
        number = verified.manifest.revision
        # (environment id, number) names one signed revision, so the floor's own revision may be
        # applied again when it is not held (its cache was lost); anything lower never.
        held_number = held.revision if held is not None and same_environment else 0
        highest = max(floor, held_number)
        if number < highest or number == held_number:
            raise PushRefused(
                "rollback", f"revision {number} is not above revision {highest}, applied before"
            )
        jws = message.document["manifest"] if isinstance(message, Snapshot) else message.manifest
        applied = build_applied(
            verified,
            jws,
            message.manifest_digest,
            message.prompt_set,
            source="gateway",
            fetched_at=fetched_at,
        )
    except PushRefused as refused:
        resync = isinstance(message, Delta) and refused.code in _RESYNC_CODES
        return Refuse(Nack.of(message, refused.code, refused.detail), resync)
    return Accept(applied, Ack.of(message))


class Session:
    """One connection's state: the welcomed environment and what the client holds."""

    def __init__(
        self,
        subscription: Subscription,
        *,
        keys: KeyLookup,
        floor: Callable[[str], int],
        held: Applied | None,
    ) -> None:
        self.subscription = subscription
        self.keys = keys
        self.floor = floor
        self.held = held
        self.environment_id: str | None = None

    def on_revision(self, message: Snapshot | Delta, fetched_at: datetime) -> Outcome:
        """Decide on a snapshot or delta (the welcome must have come first)."""
        if self.environment_id is None:
            raise PushRefused("internal", "a revision arrived before the welcome")
        held = self.held
        floor = self.floor(self.environment_id)
        return decide(
            message,
            subscription=self.subscription,
            environment_id=self.environment_id,
            keys=self.keys,
            held=held,
            floor=floor,
            fetched_at=fetched_at,
        )
