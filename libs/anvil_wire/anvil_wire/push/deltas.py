"""What a client needs of a revision, and deltas between revisions (push-protocol.md section 3).

The gateway narrows documents and makes deltas from manifests it has not verified (it only
relays them); the client rebuilds a delta into a revision document and verifies that
(``verify_pushed``), so nothing here is trusted on the client before that check.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ..b64 import b64url_decode
from ..canonical import sha256_digest
from ..revisions import DOCUMENT_FORMAT, RevisionError, RevisionManifest
from .errors import DeltaError
from .members import PromptSetScope
from .messages import Delta, Snapshot

__all__ = [
    "manifest_digest",
    "unverified_manifest",
    "needed_digests",
    "narrow_document",
    "make_snapshot",
    "make_delta",
    "rebuild_document",
]


def manifest_digest(jws_text: str) -> str:
    """``sha256:<hex>`` of the ASCII text of a manifest JWS (as ``revision.created`` carries it)."""
    return sha256_digest(jws_text.encode("ascii"))


def unverified_manifest(jws: str) -> RevisionManifest:
    """The manifest a compact JWS carries, WITHOUT checking its signature (RevisionError if unreadable)."""
    parts = jws.split(".") if isinstance(jws, str) else []
    if len(parts) != 3:
        raise RevisionError("manifest is not a compact JWS")
    try:
        payload = json.loads(b64url_decode(parts[1]))
    except (ValueError, RecursionError):
        raise RevisionError("manifest payload is not base64url JSON") from None
    if not isinstance(payload, dict):
        raise RevisionError("manifest payload must be a JSON object")
    return RevisionManifest.from_json(payload)


def needed_digests(manifest: RevisionManifest, prompts: Iterable[str] | None) -> set[str]:
    """The digests a client needs (section 3.1): all of them, or those ``prompts`` reach."""
    if prompts is None:
        return manifest.digests()
    pending = [name for name in prompts if name in manifest.prompts]
    seen: set[str] = set()
    needed: set[str] = set()
    while pending:
        key = pending.pop()
        entry = manifest.entry(key)
        if key in seen or entry is None:
            continue
        seen.add(key)
        needed.add(entry.digest)
        pending.extend(entry.partials.values())
    return needed


def _pick(contents: Mapping[str, Any], digests: Iterable[str], what: str) -> dict[str, Any]:
    missing = [d for d in digests if d not in contents]
    if missing:
        raise RevisionError(f"{what} lack digest {sorted(missing)[0]}")
    return {d: contents[d] for d in sorted(digests)}


def narrow_document(
    document: Mapping[str, Any], manifest: RevisionManifest, prompts: Iterable[str]
) -> dict[str, Any]:
    """The revision document with ``contents`` restricted to what ``prompts`` need."""
    contents = _pick(document["contents"], needed_digests(manifest, prompts), "document contents")
    return {"format": document["format"], "manifest": document["manifest"], "contents": contents}


def make_snapshot(
    document: Mapping[str, Any], manifest: RevisionManifest, *, prompt_set: PromptSetScope | None
) -> Snapshot:
    """The snapshot of a revision for a subscription (narrowed when it has a prompt set)."""
    if prompt_set is not None:
        document = narrow_document(document, manifest, prompt_set.prompts)
    return Snapshot(
        environment_id=manifest.environment_id,
        revision=manifest.revision,
        manifest_digest=manifest_digest(document["manifest"]),
        prompt_set=prompt_set,
        document=document,
    )


def make_delta(
    base_contents: Mapping[str, Any],
    base_revision: int,
    base_prompts: Iterable[str],
    target_document: Mapping[str, Any],
    target_manifest: RevisionManifest,
    *,
    environment_id: str,
    prompt_set: PromptSetScope | None,
) -> Delta:
    """The delta from what a client holds at ``base_revision`` to the target revision."""
    if environment_id != target_manifest.environment_id:
        raise ValueError("the target revision belongs to another environment")
    prompts = None if prompt_set is None else prompt_set.prompts
    fresh = needed_digests(target_manifest, prompts) - set(base_contents)
    served = set(target_manifest.prompts) if prompts is None else set(prompts)
    return Delta(
        environment_id=environment_id,
        revision=target_manifest.revision,
        manifest_digest=manifest_digest(target_document["manifest"]),
        prompt_set=prompt_set,
        base_revision=base_revision,
        manifest=target_document["manifest"],
        contents=_pick(target_document["contents"], fresh, "target document contents"),
        removed=tuple(sorted(set(base_prompts) - served)),
    )


def rebuild_document(
    delta: Delta, base_revision: int, base_contents: Mapping[str, Any], prompts: Iterable[str] | None
) -> dict[str, Any]:
    """Client side (section 3.2): the revision document a delta makes of what the client holds.

    Raises DeltaError ``base-mismatch`` (the client then sends ``resync``), ``digest-mismatch``
    (a needed digest in neither, or a delta content not needed) or ``bad-signature`` (a
    manifest that cannot even be read). The result still has to pass ``verify_pushed``.
    """
    if delta.base_revision != base_revision:
        raise DeltaError(
            "base-mismatch", f"delta starts from revision {delta.base_revision}, client holds {base_revision}"
        )
    try:
        manifest = unverified_manifest(delta.manifest)
    except RevisionError as exc:
        raise DeltaError("bad-signature", f"unreadable manifest: {exc}") from None
    needed = needed_digests(manifest, prompts)
    extra = sorted(set(delta.contents) - needed)
    if extra:
        raise DeltaError("digest-mismatch", f"delta carries {extra[0]}, which the client does not need")
    missing = sorted(d for d in needed if d not in delta.contents and d not in base_contents)
    if missing:
        raise DeltaError("digest-mismatch", f"content {missing[0]} is neither in the delta nor held")
    contents = {d: delta.contents[d] if d in delta.contents else base_contents[d] for d in sorted(needed)}
    return {"format": DOCUMENT_FORMAT, "manifest": delta.manifest, "contents": contents}
