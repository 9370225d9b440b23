"""Unpadded base64url, strict on decode."""

from __future__ import annotations

import base64
import binascii

__all__ = ["b64url_encode", "b64url_decode"]

_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url; raise ValueError on padding, foreign characters or a
    non-canonical spelling (non-zero trailing bits), so one value has exactly one encoding."""
    if not isinstance(text, str) or not set(text) <= _ALPHABET or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not unpadded base64url") from exc
    if b64url_encode(data) != text:
        raise ValueError("not canonical base64url (non-zero trailing bits)")
    return data
