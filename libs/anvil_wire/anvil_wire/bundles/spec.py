"""Names, versions and limits of the bundle format (docs/bundle-format.md sections 1, 3 and 5)."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from .errors import BundleMalformed, BundleVersionUnsupported

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MEDIA_TYPE",
    "SEAL_FORMAT",
    "SEAL_VERSION",
    "VERSION_ENTRY",
    "MANIFEST_ENTRY",
    "SEAL_ENTRY",
    "Limits",
    "reader_is_strict",
    "check_members",
    "SELECTION_KINDS",
    "check_selection",
]

FORMAT = "anvil.bundle"
FORMAT_VERSION = "1.0"
MEDIA_TYPE = "application/vnd.anvil.bundle"
SEAL_FORMAT = "anvil.bundle-seal"
SEAL_VERSION = "1.0"
VERSION_ENTRY = "anvil-bundle.json"
MANIFEST_ENTRY = "manifest.json"
SEAL_ENTRY = "signature.jws"

_MAJOR, _MINOR = (int(part) for part in FORMAT_VERSION.split("."))
_VERSION_RE = re.compile(r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})")
_MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What a reader accepts before refusing a bundle as too large (section 3.2)."""

    max_compressed: int = 64 * _MIB
    max_uncompressed: int = 512 * _MIB
    max_ratio: int = 200
    max_entries: int = 100_001


def reader_is_strict(version: Any, what: str, *, kind: str = "bundle format") -> bool:
    """Check a ``MAJOR.MINOR`` version against this reader (section 1).

    Returns True when unknown members are errors (a minor version at or below ours) and False
    when they are to be ignored (a later minor version). Raises BundleVersionUnsupported for
    another major version (``kind`` names what has the version in that message) and
    BundleMalformed for a value that is no version (``what`` names where it was found).
    """
    match = _VERSION_RE.fullmatch(version) if isinstance(version, str) else None
    if match is None:
        raise BundleMalformed(f"{what} {version!r} is not a MAJOR.MINOR version such as {FORMAT_VERSION!r}")
    major, minor = int(match[1]), int(match[2])
    if major > _MAJOR:
        raise BundleVersionUnsupported(
            f"{kind} {version} needs a reader >= {major}; this instance reads {_MAJOR}.x"
        )
    if major < _MAJOR:
        raise BundleVersionUnsupported(
            f"{kind} {version} is older than this reader supports; this instance reads {_MAJOR}.x"
        )
    return minor <= _MINOR


def check_members(value: Any, members: Collection[str], where: str, *, strict: bool) -> dict[str, Any]:
    """``value`` as a JSON object holding ``members``; other members are errors when ``strict``."""
    if not isinstance(value, dict):
        raise BundleMalformed(f"{where} must be a JSON object")
    missing = [m for m in members if m not in value]
    if missing:
        raise BundleMalformed(f"{where} lacks {_names(missing)}")
    if strict and len(value) != len(members):
        unknown = sorted(set(value) - set(members))
        raise BundleMalformed(f"{where} has unknown member(s) {_names(unknown)}")
    return value


def _names(names: Collection[str]) -> str:
    return ", ".join(repr(n) for n in names)


# Selection kind -> the members it sets; the others of project, prompt_set, prompts are null (4.1).
SELECTION_KINDS: dict[str, tuple[str, ...]] = {
    "organisation": (),
    "project": ("project",),
    "prompt_set": ("project", "prompt_set"),
    "prompts": ("prompts",),
}


def check_selection(kind: Any, project: Any, prompt_set: Any, prompts: Any) -> None:
    """Refuse (ValueError, saying what to change) an unknown selection kind, or a member the kind
    needs left null or one it does not take set (section 4.1). The members' values are not checked."""
    if not isinstance(kind, str) or kind not in SELECTION_KINDS:
        raise ValueError(f"selection.kind must be one of {', '.join(SELECTION_KINDS)}")
    takes = SELECTION_KINDS[kind]
    given = {"project": project, "prompt_set": prompt_set, "prompts": prompts}
    for member, value in given.items():
        if (value is not None) != (member in takes):
            state = "set" if member in takes else "null"
            raise ValueError(
                f"selection.{member} must be {state} for a {kind!r} selection"
                f" (it takes {' and '.join(takes) or 'none of project, prompt_set, prompts'})"
            )
