"""Canonical JSON for bundles: the encoder (``anvil_wire.canonical``, which has the fast path) under
the names the bundle code uses, and a strict canonical parser."""

from __future__ import annotations

import json
from typing import Any

from ..canonical import MAX_SAFE_INTEGER, plain_float
from ..canonical import canonical_json as canonical_bytes
from ..canonical import plain_canonical_json as plain_bytes
from .errors import BundleMalformed

__all__ = ["canonical_bytes", "plain_bytes", "parse_canonical", "parse_plain"]

# U+D800 and above (surrogates; U+E000 and up, which sort differently in UTF-16) in a key make
# a value not plain; a ``\u`` escape may spell one, so the text is checked before parsing.
_FIRST_UNPLAIN_CHAR = "\ud800"


def parse_plain(data: bytes | str) -> tuple[Any, bool]:
    """``json.loads(data)`` (the same value, the same errors), and whether every value in it is
    plain: what ``plain_bytes`` encodes canonically, so that its parts need no ``_plain`` walk.

    False may be a false alarm (a ``\\u`` escape or a character from U+D800 anywhere in the
    text, not only in a key); True is exact: no integer beyond 2**53-1, no float Python writes
    unlike ECMAScript, no NaN or infinity, no key that sorts differently in UTF-16.
    """
    # As json.loads decodes bytes (its errors included).
    text = (
        data.decode(json.detect_encoding(data), "surrogatepass")
        if isinstance(data, bytes | bytearray)
        else data
    )
    # One character is looked for faster than two: most texts hold no backslash at all.
    escaped = "\\" in text and "\\u" in text
    plain = not escaped and (text.isascii() or max(text, default="") < _FIRST_UNPLAIN_CHAR)

    def number(value: int | float) -> int | float:
        nonlocal plain
        if plain and not (
            plain_float(value) if type(value) is float else -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER
        ):
            plain = False
        return value

    def parse_int(token: str) -> int | float:
        return number(int(token))

    def parse_float(token: str) -> int | float:
        return number(float(token))

    def parse_constant(token: str) -> float:
        nonlocal plain
        plain = False
        return float(token)

    value = json.loads(text, parse_int=parse_int, parse_float=parse_float, parse_constant=parse_constant)
    return value, plain


def parse_canonical(data: bytes, what: str) -> Any:
    """Parse ``data``, refusing anything that is not the canonical JSON of what it parses to."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise BundleMalformed(f"{what} is not JSON ({exc})") from exc
    try:
        again = canonical_bytes(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise BundleMalformed(f"{what} is not canonical JSON ({exc})") from exc
    if again != data:
        raise BundleMalformed(
            f"{what} is not canonical JSON (RFC 8785): keys must be sorted, without whitespace "
            "or duplicate keys, numbers in their shortest form"
        )
    return value
