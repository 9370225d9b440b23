"""Reading a bundle (section 3.2): in memory, within limits, every rule checked before trust.

The checks run in the order the format gives them: the version entry first (so that a bundle
of another major version is refused with a message a person understands, whatever else it
holds), then the whole archive (sizes, ratio, entries, names, order, object digests), the
manifest, the objects against the manifest, and last the seal.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .archive import Archive, read_archive, read_first_entry
from .errors import (
    BundleDigestMismatch,
    BundleMalformed,
    BundleTooLarge,
    BundleUnsigned,
    BundleVersionUnsupported,
)
from .fastjson import parse_canonical
from .manifest import validate_manifest
from .seal import Seal, TrustedKeys, verify_seal
from .spec import FORMAT, MANIFEST_ENTRY, SEAL_ENTRY, VERSION_ENTRY, Limits, check_members, reader_is_strict

__all__ = ["Bundle", "read_bundle", "peek_version"]


@dataclass(frozen=True)
class Bundle:
    """A bundle that passed every check; ``seal`` is None when it was not verified or absent."""

    digest: str
    manifest: dict[str, Any]
    contents: dict[str, dict[str, Any]]
    seal: Seal | None
    size: int


def _version(raw: bytes) -> str:
    """The version ``anvil-bundle.json`` declares, once format and major version are ours."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BundleMalformed(f"{VERSION_ENTRY} is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise BundleMalformed(f"{VERSION_ENTRY} must be a JSON object with a format and a version")
    if doc.get("format") != FORMAT:
        raise BundleVersionUnsupported(
            f"not an Anvil bundle: {VERSION_ENTRY} declares the format {doc.get('format')!r}, not {FORMAT!r}"
        )
    # Only once the major version is known to be ours may the rest of this entry be judged.
    strict = reader_is_strict(doc.get("version"), "the bundle format version")
    check_members(parse_canonical(raw, VERSION_ENTRY), ("format", "version"), VERSION_ENTRY, strict=strict)
    return str(doc["version"])


def peek_version(data: bytes) -> str:
    """The format version of a bundle, read from its first entry alone (section 1).

    Raises BundleVersionUnsupported for another format or major version and BundleMalformed
    when the file does not start with a readable ``anvil-bundle.json``.
    """
    if not data:
        raise BundleMalformed("not a bundle: the file is empty")
    return _version(read_first_entry(data))


def _manifest(archive: Archive, version: str) -> dict[str, Any]:
    if archive.manifest is None:
        raise BundleMalformed(f"the bundle has no {MANIFEST_ENTRY}; it must follow {VERSION_ENTRY}")
    manifest: dict[str, Any] = validate_manifest(parse_canonical(archive.manifest, MANIFEST_ENTRY))
    if manifest["version"] != version:
        raise BundleMalformed(
            f"the manifest's version {manifest['version']!r} differs from {VERSION_ENTRY}'s {version!r}"
        )
    return manifest


def _contents(archive: Archive, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    listed = {entry["digest"]: entry["size"] for entry in manifest["objects"]}
    for digest in archive.objects:
        if digest not in listed:
            raise BundleDigestMismatch(
                f"object {digest} is in the archive but not in the manifest's objects, which the seal covers"
            )
    contents: dict[str, dict[str, Any]] = {}
    for digest, size in listed.items():
        data = archive.objects.get(digest)
        if data is None:
            raise BundleDigestMismatch(f"the manifest lists object {digest}, which the archive does not hold")
        if len(data) != size:
            raise BundleDigestMismatch(f"object {digest} is {len(data)} bytes; the manifest says {size}")
        value = parse_canonical(data, f"object {digest}")
        if not isinstance(value, dict):
            raise BundleMalformed(f"object {digest} must be a JSON object (a prompt version's content)")
        contents[digest] = value
    return contents


def _seal(
    archive: Archive, manifest: dict[str, Any], digest: str, trust: TrustedKeys | None, allow_unsigned: bool
) -> Seal | None:
    if trust is None:
        return None
    if archive.seal is None:
        if allow_unsigned:
            return None
        raise BundleUnsigned(
            f"the bundle has no {SEAL_ENTRY}: nothing proves who made it; unsigned bundles are refused"
        )
    return verify_seal(archive.seal, digest=digest, issuer=manifest["exporter"]["instance"], trust=trust)


def read_bundle(
    data: bytes, *, trust: TrustedKeys | None, limits: Limits = Limits(), allow_unsigned: bool = False
) -> Bundle:
    """Read and check a bundle file held in memory; nothing is ever written to disk.

    ``trust(issuer, kid)`` returns the public key trusted for that issuer and key id, or None.
    With ``trust=None`` the seal is not verified (``Bundle.seal`` is None): only for showing
    what a bundle holds, never for importing it. A bundle without a seal is refused
    (BundleUnsigned) unless ``allow_unsigned``. Every refusal is a BundleError subclass.
    """
    version = peek_version(data)
    if len(data) > limits.max_compressed:
        raise BundleTooLarge(f"the bundle is {len(data)} bytes; the limit is {limits.max_compressed} bytes")
    archive = read_archive(data, limits)
    manifest = _manifest(archive, version)
    contents = _contents(archive, manifest)
    digest = "sha256:" + hashlib.sha256(archive.manifest or b"").hexdigest()
    seal = _seal(archive, manifest, digest, trust, allow_unsigned)
    return Bundle(digest=digest, manifest=manifest, contents=contents, seal=seal, size=len(data))
