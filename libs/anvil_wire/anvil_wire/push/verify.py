"""The client's check of a pushed revision (push-protocol.md section 3.3), mapped to nack codes.

Built from the same pieces as ``anvil_wire.verify_revision`` (JWS verification, the manifest
reader, ``verify_contents``) so that each failure maps to its ``nack`` reason code. The
anti-rollback floor is the SDK's to check: it alone knows the highest revision applied.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ..jws import TYP_REVISION_MANIFEST, JWSError, KeyLookup, verify
from ..revisions import DOCUMENT_FORMAT, RevisionError, RevisionManifest, VerifiedRevision, verify_contents
from .deltas import manifest_digest, needed_digests, rebuild_document
from .errors import PushRefused
from .messages import Delta, Snapshot

__all__ = ["verify_pushed", "verify_message"]


def _signed_manifest(jws: Any, keys: KeyLookup, digest: str) -> tuple[RevisionManifest, str]:
    """The manifest and key id of a manifest JWS whose text has ``digest``; else bad-signature."""
    if not isinstance(jws, str) or not jws.isascii():
        raise PushRefused("bad-signature", "manifest is not a compact JWS")
    actual = manifest_digest(jws)
    if actual != digest:
        raise PushRefused("bad-signature", f"manifest digest is {actual}, the message said {digest}")
    try:
        verified = verify(jws, keys, typ=TYP_REVISION_MANIFEST)
        payload = json.loads(verified.payload)
    except JWSError as exc:
        raise PushRefused("bad-signature", f"manifest signature refused: {exc}") from None
    except (ValueError, RecursionError):
        raise PushRefused("bad-signature", "signed manifest is not JSON") from None
    try:
        if not isinstance(payload, dict):
            raise RevisionError("signed manifest must be an object")
        return RevisionManifest.from_json(payload), verified.kid
    except RevisionError as exc:
        raise PushRefused("bad-signature", f"signed manifest refused: {exc}") from None


def verify_pushed(
    document: Mapping[str, Any],
    keys: KeyLookup,
    *,
    environment_id: str,
    prompts: Iterable[str] | None,
    expected: tuple[int, str],
) -> VerifiedRevision:
    """Verify a snapshot's or rebuilt delta's document for a client; PushRefused(code) if refused.

    ``keys`` is the registry's key set (never the gateway's), ``environment_id`` the
    subscription's, ``prompts`` the served prompts of a prompt set (None: the whole manifest)
    and ``expected`` the message's (revision, manifest_digest).
    """
    revision, digest = expected
    if (
        not isinstance(document, Mapping)
        or set(document) != {"format", "manifest", "contents"}
        or document["format"] != DOCUMENT_FORMAT
    ):
        raise PushRefused("internal", f"not a {DOCUMENT_FORMAT} revision document")
    manifest, kid = _signed_manifest(document["manifest"], keys, digest)
    if manifest.environment_id != environment_id:
        raise PushRefused(
            "environment-mismatch", f"revision is bound to environment {manifest.environment_id}"
        )
    if manifest.revision != revision:
        raise PushRefused("rollback", f"signed revision is {manifest.revision}, the message said {revision}")
    contents = document["contents"]
    if not isinstance(contents, Mapping):
        raise PushRefused("digest-mismatch", "contents must be an object")
    if prompts is not None:
        missing = sorted(needed_digests(manifest, prompts) - set(contents))
        if missing:
            raise PushRefused("digest-mismatch", f"needed content {missing[0]} is missing")
    try:
        verify_contents(manifest, contents, complete=prompts is None)
    except RevisionError as exc:
        raise PushRefused("digest-mismatch", str(exc)) from None
    return VerifiedRevision(manifest=manifest, contents=dict(contents), kid=kid)


def verify_message(
    message: Snapshot | Delta,
    keys: KeyLookup,
    *,
    environment_id: str,
    prompt_set: str | None = None,
    held: tuple[int, Mapping[str, Any]] | None = None,
) -> VerifiedRevision:
    """Verify a snapshot, or rebuild and verify a delta, for a subscription; PushRefused(code).

    ``prompt_set`` is the subscription's set name and ``held`` the (revision, contents) the
    client holds for this environment, which a delta needs. The floor is not checked here.
    """
    if message.environment_id != environment_id:
        raise PushRefused("environment-mismatch", f"message is for environment {message.environment_id}")
    scope = message.prompt_set
    if (scope.name if scope else None) != prompt_set:
        raise PushRefused("internal", f"message is for prompt set {scope.name if scope else None!r}")
    prompts = None if scope is None else scope.prompts
    if isinstance(message, Snapshot):
        document: Mapping[str, Any] = message.document
    else:
        if held is None:
            raise PushRefused("base-mismatch", "the client holds no revision to apply a delta to")
        document = rebuild_document(message, held[0], held[1], prompts)
    return verify_pushed(
        document,
        keys,
        environment_id=environment_id,
        prompts=prompts,
        expected=(message.revision, message.manifest_digest),
    )
