from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from anvil_common.problems import ValidationFailed

from ..auth import Principal, require
from ..deps import State
from . import service
from .schemas import EventPage, EventPublic

router = APIRouter(tags=["events"])

MAX_EVENT_ID = 2**63 - 1


@router.get("/events", operation_id="list_events")
async def list_events(
    state: State,
    response: Response,
    principal: Annotated[Principal, Depends(require("events:read"))],
    after: Annotated[
        int, Query(ge=0, le=MAX_EVENT_ID, description="The last event id you processed (0: from the start).")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many events.")] = 100,
    wait: Annotated[
        float,
        Query(
            ge=0,
            allow_inf_nan=False,
            description="Long-poll: when nothing is new, wait up to this many seconds "
            "(at most the long_poll_max_seconds setting) for an event to commit.",
        ),
    ] = 0,
) -> EventPage:
    """The event feed after a cursor, in id order; 410 events-expired means resync from head."""
    maximum = state.settings.long_poll_max_seconds
    if wait > maximum:
        msg = f"Input should be less than or equal to {maximum:g}"
        raise ValidationFailed(
            f"query.wait: {msg}", errors=[{"loc": ["query", "wait"], "msg": msg, "type": "less_than_equal"}]
        )
    # No per-request Session here: the feed opens short read transactions of its own, so a
    # long-poll holds no connection or transaction while it waits.
    page = await service.list_events(state, principal, after=after, limit=limit, wait=wait)
    response.headers["Cache-Control"] = "no-store"
    return EventPage(
        events=[EventPublic.model_validate(e) for e in page.events],
        next_after=page.next_after,
        head=page.head,
    )
