"""Member checks shared by the push messages; each raises ProtocolError naming the member.

The JSON Schemas in ``schemas/`` say the same in JSON Schema; tests keep the two in step.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, NoReturn

from ..canonical import MAX_SAFE_INTEGER, is_digest
from ..prompts import is_prompt_name, is_slug
from ..revisions import DOCUMENT_FORMAT
from .errors import ProtocolError

__all__ = [
    "MAX_LABELS",
    "MAX_LABEL_VALUE",
    "MAX_SDK_TEXT",
    "MAX_DETAIL",
    "load_json",
    "fail",
    "set_member",
    "member",
    "json_object",
    "uuid",
    "digest",
    "revision",
    "positive_integer",
    "positive_number",
    "text",
    "slug",
    "prompt_name",
    "prompt_names",
    "labels",
    "contents",
    "document",
]

MAX_LABELS = 16
MAX_LABEL_VALUE = 256
MAX_SDK_TEXT = 64
MAX_DETAIL = 1000
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_LABEL_KEY_RE = re.compile(r"[a-z0-9._/-]{1,63}")
# Past UTF-8 decoding a lone surrogate can only come from a \uD800-\uDFFF escape: worth a walk
# over the value only when the text holds one (a literal-prefixed pattern: fast on megabytes).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = "message is not JSON (a string holds a lone surrogate)"


def fail(where: str, what: str) -> NoReturn:
    raise ProtocolError(f"{where} must be {what}")


def set_member(obj: object, name: str, value: Any) -> None:
    """Store a normalised member on a frozen dataclass (from its ``__post_init__``)."""
    object.__setattr__(obj, name, value)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: I-JSON numbers are finite
        raise ValueError("number out of range")
    return value


def _all_unicode(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        try:
            if isinstance(item, str):
                item.encode("utf-8")
            elif isinstance(item, dict):
                "".join(item).encode("utf-8")
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
        except UnicodeEncodeError:
            return False
    return True


def load_json(data: str | bytes) -> Any:
    """Read one message: UTF-8 JSON text (I-JSON: no NaN, no infinity, no lone surrogate)."""
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("message is not UTF-8 text") from None
    elif not isinstance(data, str):
        raise ProtocolError("message must be text")
    elif not data.isascii():
        try:
            data.encode("utf-8")  # a str made in Python may hold a raw surrogate
        except UnicodeEncodeError:
            raise ProtocolError(_LONE_SURROGATE) from None
    try:
        value = json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):
        raise ProtocolError("message is not JSON") from None
    if _SURROGATE_ESCAPE.search(data) and not _all_unicode(value):
        raise ProtocolError(_LONE_SURROGATE)
    return value


def member(doc: Mapping[str, Any], where: str, name: str) -> Any:
    """``doc[name]``; ``where`` is the path of ``doc`` with a trailing dot ("" for the message)."""
    if name not in doc:
        raise ProtocolError(f"{where}{name} is missing")
    return doc[name]


def json_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        fail(where, "an object")
    return value if isinstance(value, dict) else dict(value)


def uuid(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _UUID_RE.fullmatch(value):
        fail(where, "a lowercase hyphenated uuid")
    return value


def digest(value: Any, where: str) -> str:
    if not is_digest(value):
        fail(where, "'sha256:' and 64 lowercase hex digits")
    return str(value)


def _integer(value: Any) -> int | None:
    # JSON has one number type: 7.0 is the integer 7 (as JSON Schema's "integer" says).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def revision(value: Any, where: str) -> int:
    number = _integer(value)
    if number is None or not 1 <= number <= MAX_SAFE_INTEGER:
        fail(where, "a revision number (an integer from 1 to 2^53-1)")
    return number


def positive_integer(value: Any, where: str) -> int:
    number = _integer(value)
    if number is None or not 1 <= number <= MAX_SAFE_INTEGER:
        fail(where, "an integer from 1 to 2^53-1")
    return number


def positive_number(value: Any, where: str) -> int | float:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not 0 < value <= MAX_SAFE_INTEGER
        or not math.isfinite(value)
    ):
        fail(where, "a number above 0")
    return value


def text(value: Any, where: str, *, minimum: int = 0, maximum: int) -> str:
    if not isinstance(value, str) or not minimum <= len(value) <= maximum:
        fail(where, f"a string of {minimum} to {maximum} characters")
    return value


def slug(value: Any, where: str) -> str:
    if not is_slug(value):
        fail(where, "a slug")
    return str(value)


def prompt_name(value: Any, where: str) -> str:
    if not is_prompt_name(value):
        fail(where, "a prompt name")
    return str(value)


def prompt_names(value: Any, where: str) -> tuple[str, ...]:
    """A list of distinct prompt names, returned sorted (the canonical order on the wire)."""
    if not isinstance(value, list | tuple | set | frozenset):
        fail(where, "an array of prompt names")
    names = tuple(value)
    if not all(is_prompt_name(name) for name in names):
        fail(where, "an array of prompt names")
    if len(set(names)) != len(names):
        fail(where, "an array of distinct prompt names")
    return tuple(sorted(names))


def labels(value: Any, where: str) -> dict[str, str]:
    result = json_object(value, where)
    if len(result) > MAX_LABELS:
        fail(where, f"an object of at most {MAX_LABELS} labels")
    for key, label in result.items():
        if not isinstance(key, str) or not _LABEL_KEY_RE.fullmatch(key):
            fail(where, "an object whose keys are 1 to 63 characters of a-z 0-9 . _ - /")
        if not isinstance(label, str) or len(label) > MAX_LABEL_VALUE:
            fail(where, f"an object of strings of at most {MAX_LABEL_VALUE} characters")
    return result


def contents(value: Any, where: str) -> dict[str, Any]:
    """Revision contents: digest -> content object (hashes are checked by verification, not here)."""
    result = json_object(value, where)
    for key, content in result.items():
        if not is_digest(key) or not isinstance(content, dict):
            fail(where, "an object mapping digests to content objects")
    return result


def document(value: Any, where: str) -> dict[str, Any]:
    """A revision document's shape (api.md section 5.1); its signature is checked by verification."""
    doc = json_object(value, where)
    if set(doc) != {"format", "manifest", "contents"}:
        fail(where, "an object with exactly format, manifest and contents")
    if doc["format"] != DOCUMENT_FORMAT:
        fail(f"{where}.format", repr(DOCUMENT_FORMAT))
    if not isinstance(doc["manifest"], str):
        fail(f"{where}.manifest", "a string (a compact JWS)")
    checked = contents(doc["contents"], f"{where}.contents")
    return doc if checked is doc["contents"] else {**doc, "contents": checked}
