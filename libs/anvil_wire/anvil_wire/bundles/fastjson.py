"""Canonical JSON for bundles: the encoder (``anvil_wire.canonical``, which has the fast path) under
the names the bundle code uses, and a strict canonical parser."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from ..canonical import MAX_SAFE_INTEGER, plain_float
from ..canonical import canonical_json as canonical_bytes
from ..canonical import plain_canonical_json as plain_bytes
from .errors import BundleMalformed

__all__ = ["canonical_bytes", "plain_bytes", "parse_canonical", "parse_plain", "parse_plain_spliced"]

# U+D800 and above (surrogates; U+E000 and up, which sort differently in UTF-16) in a key make
# a value not plain; a ``\u`` escape may spell one, so the text is checked before parsing.
_FIRST_UNPLAIN_CHAR = "\ud800"


class _PlainDecoder(json.JSONDecoder):
    """A JSON decoder that notes whether every value it decoded is plain (see ``parse_plain``)."""

    def __init__(self, text: str) -> None:
        # One character is looked for faster than two: most texts hold no backslash at all.
        escaped = "\\" in text and "\\u" in text
        self.plain = not escaped and (text.isascii() or max(text, default="") < _FIRST_UNPLAIN_CHAR)
        super().__init__(
            parse_int=lambda token: self._number(int(token)),
            parse_float=lambda token: self._number(float(token)),
            parse_constant=self._constant,
        )

    def _number(self, value: int | float) -> int | float:
        if self.plain and not (
            plain_float(value) if type(value) is float else -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER
        ):
            self.plain = False
        return value

    def _constant(self, token: str) -> float:
        self.plain = False
        return float(token)


def _text(data: bytes | str) -> str:
    # As json.loads decodes bytes (its errors included).
    if isinstance(data, bytes | bytearray):
        return data.decode(json.detect_encoding(data), "surrogatepass")
    return data


def parse_plain(data: bytes | str) -> tuple[Any, bool]:
    """``json.loads(data)`` (the same value, the same errors), and whether every value in it is
    plain: what ``plain_bytes`` encodes canonically, so that its parts need no ``_plain`` walk.

    False may be a false alarm (a ``\\u`` escape or a character from U+D800 anywhere in the
    text, not only in a key); True is exact: no integer beyond 2**53-1, no float Python writes
    unlike ECMAScript, no NaN or infinity, no key that sorts differently in UTF-16.
    """
    text = _text(data)
    decoder = _PlainDecoder(text)
    return decoder.decode(text), decoder.plain


_SPACE = re.compile(r"[ \t\n\r]*")


class _Shape(Exception):
    """Not an object of the expected shape: the text is parsed the ordinary way instead."""


def _skip(text: str, at: int) -> int:
    return _SPACE.match(text, at).end()  # type: ignore[union-attr]  # matches the empty string


def _walk_object(text: str, at: int, member: Callable[[str, int], int]) -> int:
    """Walk the object at ``at``: ``member(key, value_start)`` decodes each value and returns
    where it ends. Returns the position after the closing brace."""
    if not text.startswith("{", at):
        raise _Shape
    at = _skip(text, at + 1)
    if text.startswith("}", at):
        return at + 1
    while True:
        if not text.startswith('"', at):
            raise _Shape
        key, at = json.decoder.scanstring(text, at + 1)  # type: ignore[attr-defined]
        at = _skip(text, at)
        if not text.startswith(":", at):
            raise _Shape
        at = _skip(text, member(key, _skip(text, at + 1)))
        if text.startswith("}", at):
            return at + 1
        if not text.startswith(",", at):
            raise _Shape
        at = _skip(text, at + 1)


def _split(text: str, name: str, decoder: _PlainDecoder) -> tuple[dict[str, Any], dict[str, str]]:
    result: dict[str, Any] = {}
    raw: dict[str, str] = {}

    def inner(key: str, start: int) -> int:
        result[name][key], end = decoder.raw_decode(text, start)
        raw[key] = text[start:end]
        return end

    def outer(key: str, start: int) -> int:
        if key == name:
            raw.clear()  # a repeated member replaces the first, as json.loads does
            if text.startswith("{", start):
                result[name] = {}
                return _walk_object(text, start, inner)
        result[key], end = decoder.raw_decode(text, start)
        return end

    end = _walk_object(text, _skip(text, 0), outer)
    if _skip(text, end) != len(text):
        raise _Shape
    return result, raw


def parse_plain_spliced(data: bytes | str, name: str) -> tuple[Any, bool, dict[str, str]]:
    """``parse_plain(data)``, and the JSON text of each member of the object ``data[name]``.

    The text of a member is exactly as it stands in ``data`` (a registry snapshot's contents are
    the canonical JSON their digests were taken of, so that text can be used without encoding
    the parsed value again). The mapping is empty when ``data`` is not an object with an
    object ``name``; the value, the flag and the errors are always those of ``parse_plain``.
    """
    text = _text(data)
    decoder = _PlainDecoder(text)
    try:
        value, raw = _split(text, name, decoder)
    except (_Shape, ValueError, RecursionError):
        value, plain = parse_plain(text)  # the ordinary parse: its value, or its error
        return value, plain, {}
    return value, decoder.plain, raw


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
