"""Canonical JSON: RFC 8785 (JCS), so every value has one byte string in any language.

Hashes and signatures are computed over these bytes, so another SDK (JavaScript, Go, ...)
reproduces the same digests with an off-the-shelf JCS implementation.

Two encoders, one answer. ``canonical_json_reference`` is RFC 8785 written out in Python and
takes ~40 µs for a 1 KiB prompt. Python's C encoder (what ``json.dumps`` uses) with sorted keys
and no whitespace writes the same bytes whenever the value holds no float that Python writes
differently from ECMAScript, no integer beyond 2**53-1 and no key whose sort order differs
between code points and UTF-16 code units: ``canonical_json`` checks exactly that (``_plain``)
and sends everything else, errors included, to the reference encoder. Tests fuzz the two
against each other.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

__all__ = [
    "canonical_json",
    "canonical_json_reference",
    "plain_canonical_json",
    "sha256_digest",
    "digest_of",
    "is_digest",
    "MAX_SAFE_INTEGER",
]

_DIGEST_PREFIX = "sha256:"
# I-JSON (RFC 7493): integers beyond 2**53 - 1 cannot be read exactly by every JSON parser.
MAX_SAFE_INTEGER = 2**53 - 1


def canonical_json(value: Any) -> bytes:
    """Encode ``value`` per RFC 8785: keys sorted by UTF-16 code units, no whitespace, strings
    escaped minimally, numbers in ECMAScript's shortest form (``1.0`` is ``1``, ``1e21`` is
    ``1e+21``). NaN, infinities, integers beyond 2**53-1 and non-string keys are refused
    (ValueError, TypeError), as is a string that is not Unicode (a lone surrogate:
    UnicodeEncodeError). The same bytes and errors as ``canonical_json_reference``, faster."""
    if _plain(value):
        return _c_encode(value).encode("utf-8")
    return canonical_json_reference(value)


def plain_canonical_json(value: Any) -> bytes:
    """``canonical_json`` of a value already known to be plain: only strings, booleans, null,
    integers within 2**53-1, floats Python and ECMAScript write alike (``plain_float``), and
    dicts and lists of them whose keys sort alike in code points and UTF-16 (for example a
    manifest ``validate_manifest`` accepted). Anything else may give non-canonical bytes."""
    return _c_encode(value).encode("utf-8")


def canonical_json_reference(value: Any) -> bytes:
    """RFC 8785 written out in Python: the definition ``canonical_json`` is tested against."""
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts).encode("utf-8")


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
    # No circular-reference markers (a shared dict would not be thread-safe); ``_plain`` sends
    # a cycle to the reference encoder, which ends in RecursionError.
    encode = make_encoder(None, _refuse, encode_basestring, None, ":", ",", True, False, False)
    return lambda value: "".join(encode(value, 0))


_c_encode = _c_encoder()
# Code points from U+E000 sort above surrogate pairs (U+10000 and up) in UTF-16 order only; a
# key holding a lone surrogate (U+D800-U+DFFF, never valid text) goes to the reference encoder
# too, so that it fails with the reference's error.
_FIRST_UNPLAIN_KEY_CHAR = "\ud800"
_MAX_CONTAINERS = 10_000_000


def _plain_keys(obj: dict[Any, Any]) -> bool:
    try:
        keys = "".join(obj)
    except TypeError:  # a key that is not a string: the reference encoder refuses it clearly
        return False
    return keys.isascii() or max(keys) < _FIRST_UNPLAIN_KEY_CHAR


def plain_float(value: float) -> bool:
    """True when Python's ``repr`` of this float is its RFC 8785 (ECMAScript) form."""
    # Inside [1e-4, 1e16) Python's repr uses fixed notation with the same shortest digits as
    # ECMAScript, except that integral values keep a ".0" that ECMAScript drops.
    return 1e-4 <= abs(value) < 1e16 and not value.is_integer()


def _plain(value: Any) -> bool:
    """True when the C encoder writes ``value`` exactly as RFC 8785 does."""
    stack = [value]
    containers = 0
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is dict or kind is list:
            containers += 1
            if containers > _MAX_CONTAINERS:  # a cycle, or too large to walk: the reference decides
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
            if not plain_float(item):
                return False
        else:
            return False
    return True


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError(f"integer {value} is outside the interoperable range (|n| <= 2**53-1)")
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("canonical JSON object keys must be strings")
        out.append("{")
        for index, key in enumerate(sorted(value, key=lambda k: k.encode("utf-16-be"))):
            if index:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _encode(value[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"{type(value).__name__} is not JSON")


def _number(value: float) -> str:
    """ECMAScript Number::toString (RFC 8785 section 3.2.2.3) from Python's shortest repr."""
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("NaN and infinities are not JSON")
    if value == 0:
        return "0"
    if value < 0:
        return "-" + _number(-value)
    _, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    exponent = int(exponent) + len(digit_tuple) - len(digits)
    k = len(digits)
    n = exponent + k  # the decimal point sits after the n-th digit
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    e = n - 1
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


def sha256_digest(data: bytes) -> str:
    """Return ``sha256:<hex>`` of raw bytes."""
    return _DIGEST_PREFIX + hashlib.sha256(data).hexdigest()


def digest_of(value: Any) -> str:
    """Return the ``sha256:<hex>`` digest of a value's canonical JSON."""
    return sha256_digest(canonical_json(value))


def is_digest(value: object) -> bool:
    """True when ``value`` looks like ``sha256:`` followed by 64 lowercase hex digits."""
    if not isinstance(value, str) or not value.startswith(_DIGEST_PREFIX):
        return False
    hexpart = value[len(_DIGEST_PREFIX) :]
    return len(hexpart) == 64 and all(c in "0123456789abcdef" for c in hexpart)
