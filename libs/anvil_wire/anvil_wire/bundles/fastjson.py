"""Canonical JSON at C speed for the values a bundle is made of, and a strict canonical parser.

``canonical_json`` is written in Python and takes ~50 µs for a 1 KiB prompt, which alone would
spend half a second on a 10,000-object bundle. ``json.dumps`` with sorted keys and no
whitespace produces the same bytes (RFC 8785) whenever the value holds no float that Python
writes differently from ECMAScript, no integer beyond 2**53-1 and no key whose sort order
differs between code points and UTF-16 code units; ``_plain`` checks exactly that and
everything else goes through ``canonical_json``. The two must always agree (a test fuzzes it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..canonical import MAX_SAFE_INTEGER, canonical_json
from .errors import BundleMalformed

__all__ = ["canonical_bytes", "plain_bytes", "parse_canonical"]


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON")


def _c_encoder() -> Callable[[Any], str]:
    """The C encoder that ``json.dumps`` uses, built once (dumps builds it on every call)."""
    try:
        from _json import encode_basestring, make_encoder
    except ImportError:  # pragma: no cover - an interpreter without the C accelerator
        return json.JSONEncoder(
            ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
        ).encode
    # No circular-reference markers (a shared dict would not be thread-safe); a cycle ends in
    # RecursionError instead, and JSON parsed from bytes has none.
    encode = make_encoder(None, _refuse, encode_basestring, None, ":", ",", True, False, False)
    return lambda value: "".join(encode(value, 0))


_encode = _c_encoder()
# Code points from U+E000 sort above surrogate pairs (U+10000 and up) in UTF-16 order only.
_FIRST_DIVERGENT_CHAR = "\ue000"
_MAX_CONTAINERS = 10_000_000


def _plain_keys(obj: dict[Any, Any]) -> bool:
    try:
        keys = "".join(obj)
    except TypeError:  # a key that is not a string: canonical_json refuses it with a clear error
        return False
    return keys.isascii() or max(keys) < _FIRST_DIVERGENT_CHAR


def _plain_float(value: float) -> bool:
    # Inside [1e-4, 1e16) Python's repr uses fixed notation with the same shortest digits as
    # ECMAScript, except that integral values keep a ".0" that ECMAScript drops.
    return 1e-4 <= abs(value) < 1e16 and not value.is_integer()


def _plain(value: Any) -> bool:
    """True when ``json.dumps`` writes ``value`` exactly as RFC 8785 does."""
    stack = [value]
    containers = 0
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is dict or kind is list:
            containers += 1
            if containers > _MAX_CONTAINERS:  # a cycle, or too large to walk: canonical_json decides
                return False
            if kind is dict:
                if not _plain_keys(item):
                    return False
                stack.extend(item.values())
            else:
                stack.extend(item)
        elif kind is int:
            if not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                return False
        elif kind is float:
            if not _plain_float(item):
                return False
        else:
            return False
    return True


def canonical_bytes(value: Any) -> bytes:
    """The canonical JSON (RFC 8785) of ``value``; the same bytes as ``canonical_json``."""
    if _plain(value):
        return _encode(value).encode("utf-8")
    return canonical_json(value)


def plain_bytes(value: Any) -> bytes:
    """``canonical_bytes`` for a value already known to be plain: a manifest that
    ``validate_manifest`` checked at this implementation's own version (it holds only strings,
    booleans, null, safe integers and ASCII keys)."""
    return _encode(value).encode("utf-8")


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
