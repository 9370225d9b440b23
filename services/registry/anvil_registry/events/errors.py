"""What can go wrong reading the event feed (problem+json)."""

from __future__ import annotations

from anvil_common.problems import BadRequest, Gone

__all__ = ["EventsExpired", "CursorAhead"]


class EventsExpired(Gone):
    """Events after the cursor were removed by retention: the consumer must resync.

    Members: ``head`` (follow from here after resyncing) and ``oldest_available`` (the oldest
    event id still kept; any cursor >= ``oldest_available - 1`` is accepted).
    """

    code, title = "events-expired", "Events expired; resync"


class CursorAhead(BadRequest):
    """The cursor is past the newest event: the consumer followed another (or a restored) instance."""

    code, title = "cursor-ahead", "Cursor is ahead of the event feed"
