"""ETag / If-Match handling for mutable resources (412 on a stale tag, 428 when one is required)."""

from __future__ import annotations

from anvil_common.http import parse_etags
from anvil_common.problems import PreconditionFailed, PreconditionRequired

__all__ = ["check_if_match"]


def check_if_match(if_match: str | None, current: str, *, required: bool = False) -> None:
    """Raise unless ``If-Match`` names ``current`` (or is ``*``); absent is fine unless required."""
    tags = parse_etags(if_match, weak=False)
    if tags is None:
        if required:
            raise PreconditionRequired(
                "this change needs If-Match with the resource's current ETag", current_etag=current
            )
        return
    if "*" not in tags and current not in tags:
        raise PreconditionFailed(
            f"the resource changed: its ETag is {current}, not {', '.join(tags)}", current_etag=current
        )
