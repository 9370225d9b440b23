"""Writing a bundle (sections 3 and 4): the manifest from a registry snapshot, then the file.

The body member is a pure function of the manifest and the contents (section 3.3): canonical
JSON, hand-built ustar headers with constant fields, gzip with fixed parameters. Only the seal
member carries the time.

Encoding and checking are most of the per-object cost of a large export, so each is done once:
``assemble_manifest`` validates the manifest and encodes it and every object, and hands those
bytes to ``write_bundle`` inside the contents mapping it returns. ``write_bundle`` given
anything else (another manifest object, plain contents) validates and encodes it itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..keys import SigningKey
from .archive import END_OF_ARCHIVE, gzip_member, object_name, tar_entry
from .errors import BundleDigestMismatch, BundleMalformed
from .fastjson import canonical_bytes, plain_bytes
from .manifest import validate_manifest
from .seal import make_seal
from .spec import FORMAT, FORMAT_VERSION, MANIFEST_ENTRY, SEAL_ENTRY, VERSION_ENTRY

__all__ = ["WrittenBundle", "assemble_manifest", "write_bundle", "version_entry"]

_SNAPSHOT_MEMBERS = ("selection", "options", "organisation", "projects", "dependencies")


@dataclass(frozen=True)
class WrittenBundle:
    """A bundle file, its digest (section 2) and the manifest bytes the digest is taken of."""

    data: bytes
    digest: str
    manifest_bytes: bytes


@dataclass(frozen=True)
class _Plan:
    """What ``write_bundle`` writes, taken from a manifest once it was validated and encoded (so
    that later changes to that manifest object cannot make the file disagree with its bytes)."""

    source: Mapping[str, Any]  # the manifest object this was made from
    manifest_bytes: bytes
    objects: tuple[tuple[str, int], ...]  # (digest, size), in the manifest's order
    issuer: str

    @classmethod
    def of(cls, manifest: Mapping[str, Any]) -> _Plan:
        """Plan a manifest that validate_manifest accepted at this writer's version."""
        objects = tuple((entry["digest"], entry["size"]) for entry in manifest["objects"])
        issuer = manifest["exporter"]["instance"]
        return cls(manifest, plain_bytes(manifest), objects, issuer)


class _Contents(dict[str, dict[str, Any]]):
    """Contents by digest, remembering the bytes ``assemble_manifest`` made of them (each with
    the object it was made from, so that a replaced one is encoded again) and its manifest plan."""

    def __init__(self) -> None:
        super().__init__()
        self.encoded: dict[str, tuple[dict[str, Any], bytes]] = {}
        self.plan: _Plan | None = None


def version_entry(version: str = FORMAT_VERSION) -> bytes:
    """The bytes of ``anvil-bundle.json`` (section 3.1)."""
    return canonical_bytes({"format": FORMAT, "version": version})


def _encode(digest: Any, content: Any) -> bytes:
    if not isinstance(content, dict):
        raise BundleMalformed(f"content {digest!r} must be a JSON object (a prompt version's content)")
    try:
        data = canonical_bytes(content)
    except (TypeError, ValueError) as exc:
        raise BundleMalformed(f"content {digest!r} is not representable as canonical JSON: {exc}") from None
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise _mismatch(digest)
    return data


def _encode_plain(digest: Any, content: Any) -> bytes:
    """``_encode`` of a content known to be plain (see ``assemble_manifest``): the same bytes
    and errors, without the walk that ``canonical_bytes`` makes to find out."""
    if not isinstance(content, dict):
        raise BundleMalformed(f"content {digest!r} must be a JSON object (a prompt version's content)")
    data = plain_bytes(content)
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise _mismatch(digest)
    return data


def _mismatch(digest: Any) -> BundleDigestMismatch:
    return BundleDigestMismatch(
        f"content listed as {digest!r} does not hash to that digest: it is not the canonical "
        "JSON of a prompt content in normal form, or it was changed"
    )


def _listed_digests(projects: Any) -> set[str] | None:
    """Every version digest the projects list; None when they are malformed (reported later)."""
    try:
        return {v["digest"] for p in projects for prompt in p["prompts"] for v in prompt["versions"]}
    except (TypeError, KeyError):
        return None


def _check_coverage(projects: Any, contents: Mapping[str, Any]) -> None:
    listed = _listed_digests(projects)
    if listed is None:
        return
    missing = sorted(d for d in listed if d not in contents)
    if missing:
        raise BundleDigestMismatch(
            f"{len(missing)} version(s) have no content in the snapshot, first {missing[0]!r}"
        )
    extra = sorted(d for d in contents if d not in listed)
    if extra:
        raise BundleDigestMismatch(
            f"{len(extra)} content(s) are not named by any listed version, first {extra[0]!r}"
        )


def _spliced(digest: str, content: Any, text: str | None) -> bytes | None:
    """The given text of a content, if it is the canonical JSON its digest was taken of."""
    if text is None or not isinstance(content, dict):
        return None
    data = text.encode()
    # A content hash is the SHA-256 of the canonical JSON of the content (prompt-format.md
    # section 3): text that hashes to it is that JSON, so it needs no encoding of its own.
    return data if "sha256:" + hashlib.sha256(data).hexdigest() == digest else None


def assemble_manifest(
    snapshot: Mapping[str, Any],
    *,
    exporter: Mapping[str, str],
    plain: bool = False,
    texts: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The manifest (section 4) and the contents by digest, from a registry export snapshot.

    ``snapshot`` holds the manifest members ``selection``, ``options``, ``organisation``,
    ``projects`` and ``dependencies`` plus ``contents`` (digest -> content in normal form).
    ``plain=True`` says that every content is known to be plain (``parse_plain`` said so of the
    snapshot it parsed): each is then encoded without being walked first, to the same bytes.
    ``texts`` maps digests to the JSON text each content was parsed from (``parse_plain_spliced``):
    a text that hashes to its digest is written as it is, any other content is encoded.
    Raises BundleDigestMismatch for a content that does not hash to its digest, a version
    without content or a content no version names; BundleMalformed (or another BundleError)
    when the result is not a valid manifest.
    """
    absent = [m for m in (*_SNAPSHOT_MEMBERS, "contents") if m not in snapshot]
    if absent:
        raise BundleMalformed(f"the export snapshot lacks {', '.join(absent)}")
    raw = snapshot["contents"]
    if not isinstance(raw, Mapping):
        raise BundleMalformed("the export snapshot's contents must map digests to contents")
    _check_coverage(snapshot["projects"], raw)
    contents = _Contents()
    encode = _encode_plain if plain else _encode
    texts = texts or {}
    for digest in sorted(raw):
        content = raw[digest]
        contents[digest] = content
        data = _spliced(digest, content, texts.get(digest))
        contents.encoded[digest] = (content, encode(digest, content) if data is None else data)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "exporter": {"instance": exporter["instance"], "software": exporter["software"]},
        **{member: snapshot[member] for member in _SNAPSHOT_MEMBERS},
        "objects": [{"digest": d, "size": len(data)} for d, (_, data) in contents.encoded.items()],
    }
    validate_manifest(manifest)
    contents.plan = _Plan.of(manifest)
    return manifest, contents


def _plan(manifest: Mapping[str, Any], contents: Mapping[str, dict[str, Any]]) -> _Plan:
    plan = contents.plan if isinstance(contents, _Contents) else None
    if plan is not None and plan.source is manifest:
        return plan
    if manifest.get("version") != FORMAT_VERSION:
        raise BundleMalformed(
            f"this writer writes bundle format {FORMAT_VERSION}, not {manifest.get('version')!r}"
        )
    return _Plan.of(validate_manifest(dict(manifest)))


def _object_bytes(contents: Mapping[str, dict[str, Any]], digest: str, size: int) -> bytes:
    content = contents.get(digest)
    if content is None:
        raise BundleDigestMismatch(f"the manifest lists object {digest} but no content was given for it")
    cached = contents.encoded.get(digest) if isinstance(contents, _Contents) else None
    # The bytes made by assemble_manifest, unless the caller has put another object there since.
    data = cached[1] if cached is not None and cached[0] is content else _encode(digest, content)
    if len(data) != size:
        raise BundleDigestMismatch(f"the manifest gives object {digest} a size of {size}, not {len(data)}")
    return data


def write_bundle(
    manifest: Mapping[str, Any],
    contents: Mapping[str, dict[str, Any]],
    key: SigningKey,
    *,
    created_at: datetime | None = None,
) -> WrittenBundle:
    """The bundle file for a manifest and its contents, sealed with ``key`` (section 3).

    ``manifest`` and ``contents`` are what ``assemble_manifest`` returned, written as they were
    then (changing them in place afterwards changes nothing); any other manifest is validated
    first. ``created_at`` (default: now) goes into the seal only, to the second.
    Raises BundleDigestMismatch when the contents do not match the manifest's ``objects`` and
    another BundleError for a manifest that is not valid.
    """
    plan = _plan(manifest, contents)
    if len(contents) != len(plan.objects):
        listed = {digest for digest, _ in plan.objects}
        extra = sorted(d for d in contents if d not in listed)
        if extra:
            raise BundleDigestMismatch(f"content {extra[0]!r} is not listed in the manifest's objects")
    digest = "sha256:" + hashlib.sha256(plan.manifest_bytes).hexdigest()
    parts = [*tar_entry(VERSION_ENTRY, version_entry())]
    parts += tar_entry(MANIFEST_ENTRY, plan.manifest_bytes)
    for name, size in plan.objects:
        parts += tar_entry(object_name(name), _object_bytes(contents, name, size))
    when = (created_at or datetime.now(UTC)).replace(microsecond=0)
    seal = make_seal(digest, plan.issuer, key, when)
    body = gzip_member(parts)
    data = body + gzip_member((*tar_entry(SEAL_ENTRY, seal), END_OF_ARCHIVE))
    return WrittenBundle(data=data, digest=digest, manifest_bytes=plan.manifest_bytes)
