"""What ``POST /v1/imports`` takes besides the bundle file: the strategy and its overrides."""

from __future__ import annotations

from typing import Literal

from anvil_common.problems import ValidationFailed
from anvil_wire import is_prompt_name, is_slug

from ..planning import STRATEGIES

__all__ = ["Strategy", "UPLOAD_MEDIA_TYPES", "MAX_OVERRIDES", "parse_overrides"]

Strategy = Literal["fail", "skip", "overwrite", "rename"]
# The bundle media type (docs/bundle-format.md), and what generic tools send for a file.
UPLOAD_MEDIA_TYPES = frozenset(
    {"application/vnd.anvil.bundle", "application/octet-stream", "application/gzip", "application/x-gzip"}
)
MAX_OVERRIDES = 1000


def _invalid(index: int, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"query.override.{index}: {message}",
        errors=[{"loc": ["query", "override", index], "msg": message, "type": "value_error"}],
    )


def parse_overrides(values: list[str]) -> dict[str, str]:
    """``["project/name=strategy", ...]`` -> ``{"project/name": strategy}`` (a 422 names the bad one)."""
    if len(values) > MAX_OVERRIDES:
        raise _invalid(MAX_OVERRIDES, f"at most {MAX_OVERRIDES} overrides")
    overrides: dict[str, str] = {}
    for index, raw in enumerate(values):
        key, sep, strategy = raw.rpartition("=")
        project, slash, name = key.partition("/")
        if not sep or not slash or not is_slug(project) or not is_prompt_name(name):
            raise _invalid(index, f"{raw!r} is not project/name=strategy")
        if strategy not in STRATEGIES:
            raise _invalid(index, f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
        if key in overrides:
            raise _invalid(index, f"{key!r} is overridden twice")
        overrides[key] = strategy
    return dict(sorted(overrides.items()))
