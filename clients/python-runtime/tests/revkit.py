"""Signed revisions for the runtime SDK's tests: documents, snapshots, deltas, and ways to tamper.

Everything here is built with anvil_wire, as the registry builds it: contents in normal form
(``content``), a ``RevisionManifest`` bound to an organisation, project and environment (ids and
names), prompts and dependencies with their partials, signed with a given ``SigningKey``
(``revision``). The tamper helpers then break one thing at a time, each a way a hostile gateway
could try to make a client serve what the registry did not sign.

Default layout: organisation ``acme``, project ``web``, environment ``prod`` (``ENV_ID``); a
prompt whose template uses ``{{> shared:footer}}`` reaches the dependency ``shared:footer@1``,
which itself includes ``shared:header@1``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from anvil_runtime._revision import Applied, build_applied
from anvil_runtime._store import Store
from anvil_wire import (
    TYP_REVISION_MANIFEST,
    ManifestEntry,
    PromptFormatError,
    RevisionManifest,
    SigningKey,
    digest_of,
    normalize_content,
    sign_document,
    sign_revision,
    template_references,
    verify_revision,
)
from anvil_wire.b64 import b64url_decode, b64url_encode
from anvil_wire.canonical import canonical_json
from anvil_wire.jws import KeyLookup
from anvil_wire.push import Delta, PromptSetScope, Snapshot, Subscription, make_delta, manifest_digest
from anvil_wire.revisions import DOCUMENT_FORMAT

ORG_ID = "11111111-1111-4111-8111-111111111111"
PROJECT_ID = "22222222-2222-4222-8222-222222222222"
ENV_ID = "6f1f0a55-35a3-4f0e-9a56-0c8d8d1c2f10"
OTHER_ENV_ID = "0b7d5c1e-2f43-4d8e-8a41-5b0e5b9c7a21"
SUBSCRIPTION = Subscription("acme", "web", "prod")


def content(template: str | list[dict[str, str]], **variables: str | None) -> dict[str, Any]:
    """Prompt content in normal form; ``name=None`` declares a variable, ``name="x"`` with a default."""
    declared = {name: {} if default is None else {"default": default} for name, default in variables.items()}
    return normalize_content({"template": template, "variables": declared})


HEADER = content("Acme support")
FOOTER = content("Bye from {{> header}}")


@dataclass(frozen=True)
class Dependency:
    """A dependency entry (a prompt of another project a partial reaches)."""

    content: Mapping[str, Any]
    project: str
    name: str
    version: int = 1
    partials: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.project}:{self.name}@{self.version}"


SHARED = (
    Dependency(FOOTER, "shared", "footer", partials={"header": "shared:header@1"}),
    Dependency(HEADER, "shared", "header"),
)


@dataclass(frozen=True)
class Rev:
    """A signed revision: its manifest (as signed) and its document (as a gateway relays it)."""

    manifest: RevisionManifest
    document: dict[str, Any]

    @property
    def jws(self) -> str:
        jws: str = self.document["manifest"]
        return jws

    @property
    def digest(self) -> str:
        return manifest_digest(self.jws)

    @property
    def contents(self) -> dict[str, Any]:
        contents: dict[str, Any] = self.document["contents"]
        return contents

    @property
    def revision(self) -> int:
        return self.manifest.revision

    def digest_of_prompt(self, name: str) -> str:
        return self.manifest.prompts[name].digest


def _partials(raw: Mapping[str, Any], prompts: Iterable[str], deps: Iterable[Dependency]) -> dict[str, str]:
    """Where each ``{{> ref}}`` of ``raw`` points: a dependency by project:name, else a prompt."""
    by_ref = {f"{d.project}:{d.name}": d.key for d in deps}
    names = set(prompts)
    partials: dict[str, str] = {}
    try:
        refs = template_references(raw)
    except (PromptFormatError, KeyError, TypeError):
        return partials  # hostile content: whatever the template says, nothing resolves
    for ref in refs:
        if ref.text in by_ref:
            partials[ref.text] = by_ref[ref.text]
        elif ref.text in names:
            partials[ref.text] = ref.text
    return partials


def manifest(
    number: int,
    prompts: Mapping[str, Mapping[str, Any]],
    *,
    dependencies: Iterable[Dependency] | None = None,
    partials: Mapping[str, Mapping[str, str]] | None = None,
    versions: Mapping[str, int] | None = None,
    environment_id: str = ENV_ID,
    organisation: str = "acme",
    project: str = "web",
    environment: str = "prod",
    rollback_of: int | None = None,
    created_at: str = "2026-11-25T09:00:00Z",
) -> RevisionManifest:
    """The manifest of ``prompts`` (name -> content, hashed as given: it may be hostile)."""
    if dependencies is None:
        uses_shared = any("shared:" in json.dumps(c["template"]) for c in prompts.values())
        dependencies = SHARED if uses_shared else ()
    deps = tuple(dependencies)
    partials = partials or {}
    versions = versions or {}
    entries = {
        name: ManifestEntry(
            version=versions.get(name, 1),
            digest=digest_of(c),
            partials=partials.get(name, _partials(c, prompts, deps)),
        )
        for name, c in prompts.items()
    }
    dep_entries = {
        d.key: ManifestEntry(
            version=d.version,
            digest=digest_of(d.content),
            partials=dict(d.partials),
            project=d.project,
            name=d.name,
        )
        for d in deps
    }
    return RevisionManifest(
        issuer="http://registry.test",
        organisation={"id": ORG_ID, "slug": organisation},
        project={"id": PROJECT_ID, "slug": project},
        environment={"id": environment_id, "name": environment},
        revision=number,
        rollback_of=rollback_of,
        created_at=created_at,
        prompts=entries,
        dependencies=dep_entries,
    )


def revision(
    number: int,
    prompts: Mapping[str, Mapping[str, Any]],
    key: SigningKey,
    **options: Any,
) -> Rev:
    """A signed revision of ``prompts`` (``options``: those of ``manifest``)."""
    deps = options.get("dependencies")
    signed = manifest(number, prompts, **options)
    everything = [*prompts.values()]
    dep_keys = set(signed.dependencies)
    if deps is None:
        deps = SHARED if dep_keys else ()
    everything += [d.content for d in deps]
    contents = {digest_of(c): c for c in everything}
    return Rev(signed, sign_revision(signed, contents, key))


def signed_as(rev: Rev, key: SigningKey, *, typ: str = TYP_REVISION_MANIFEST, **changes: Any) -> Rev:
    """``rev`` signed again by ``key`` (with ``typ``), its manifest changed by ``changes`` first."""
    changed = dataclasses.replace(rev.manifest, **changes)
    jws = sign_document(changed.to_json(), key, typ=typ)
    return Rev(changed, {**rev.document, "manifest": jws})


# -- the document on disk and in memory ----------------------------------------------------------


def applied(
    rev: Rev, keys: KeyLookup, *, source: Any = "gateway", scope: PromptSetScope | None = None
) -> Applied:
    """What a client holds after applying ``rev`` (verified with ``keys``)."""
    verified = verify_revision(rev.document, keys)
    return build_applied(
        verified, rev.jws, rev.digest, scope, source=source, fetched_at=datetime(2026, 11, 25, tzinfo=UTC)
    )


def lkg_record(rev: Rev, *, environment_id: str | None = None) -> dict[str, Any]:
    """The last-known-good record the client persists for ``rev`` (see anvil_runtime._core)."""
    return {
        "environment_id": environment_id or rev.manifest.environment_id,
        "revision": rev.revision,
        "manifest_digest": rev.digest,
        "prompt_set": None,
        "fetched_at": "2026-11-25T09:00:00.000000Z",
        "document": rev.document,
    }


def write_lkg(cache_dir: Path, rev: Rev, subscription: Subscription = SUBSCRIPTION) -> Path:
    """Persist ``rev`` as the last-known-good revision of ``subscription`` in ``cache_dir``."""
    store = Store(cache_dir)
    store.save_lkg(subscription, lkg_record(rev))
    return store.lkg_path(subscription)


def write_bootstrap(path: Path, rev: Rev) -> Path:
    """A bootstrap file: the revision document as ``anvil config ENV --save FILE`` writes it."""
    path.write_bytes(canonical_json(rev.document))
    return path


def client_token(**claims: Any) -> str:
    """A JWT-looking client token carrying ``claims`` (the SDK reads, never verifies, them)."""
    header = b64url_encode(canonical_json({"alg": "ES256", "typ": "JWT"}))
    return f"{header}.{b64url_encode(canonical_json(claims))}.{b64url_encode(b'not-checked')}"


# -- messages -------------------------------------------------------------------------------------


def snapshot(rev: Rev, *, prompt_set: PromptSetScope | None = None, **overrides: Any) -> Snapshot:
    """The snapshot of ``rev`` (narrowed to ``prompt_set``), members overridden by ``overrides``."""
    document = rev.document
    if prompt_set is not None:
        from anvil_wire.push import needed_digests

        needed = needed_digests(rev.manifest, prompt_set.prompts)
        document = {**document, "contents": {d: c for d, c in rev.contents.items() if d in needed}}
    message = Snapshot(
        environment_id=rev.manifest.environment_id,
        revision=rev.revision,
        manifest_digest=rev.digest,
        document=document,
        prompt_set=prompt_set,
    )
    return dataclasses.replace(message, **overrides) if overrides else message


def delta(base: Rev, target: Rev, **overrides: Any) -> Delta:
    """The delta from ``base`` to ``target`` (whole subscription), members overridden by ``overrides``."""
    message = make_delta(
        base.contents,
        base.revision,
        base.manifest.prompts,
        target.document,
        target.manifest,
        environment_id=target.manifest.environment_id,
        prompt_set=None,
    )
    return dataclasses.replace(message, **overrides) if overrides else message


# -- tampering ------------------------------------------------------------------------------------


def _parts(jws: str) -> tuple[dict[str, Any], bytes, bytes]:
    head, body, sig = jws.split(".")
    return json.loads(b64url_decode(head)), b64url_decode(body), b64url_decode(sig)


def compact(header: Mapping[str, Any], payload: bytes, signature: bytes) -> str:
    """A compact JWS from its parts, whatever they say."""
    return ".".join(b64url_encode(p) for p in (canonical_json(dict(header)), payload, signature))


def sign_with_header(payload: bytes, key: SigningKey, header: Mapping[str, Any]) -> str:
    """An ES256 signature by ``key`` over any header (so a refusal is for the header, not the bytes)."""
    head = b64url_encode(canonical_json(dict(header)))
    signing_input = f"{head}.{b64url_encode(payload)}".encode("ascii")
    r, s = decode_dss_signature(key.private_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return f"{head}.{b64url_encode(payload)}.{b64url_encode(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def unsigned(jws: str, *, alg: str = "none") -> str:
    """The JWS with ``alg`` none (or another) and no signature."""
    header, payload, _ = _parts(jws)
    return compact({**header, "alg": alg}, payload, b"")


def hs256_with_public_key(jws: str, key: SigningKey) -> str:
    """Algorithm confusion: HS256 "signed" with the public key's JWK text as the HMAC secret."""
    header, payload, _ = _parts(jws)
    header = {**header, "alg": "HS256"}
    head = b64url_encode(canonical_json(header))
    signing_input = f"{head}.{b64url_encode(payload)}".encode("ascii")
    secret = canonical_json(key.public_jwk())
    return (
        f"{head}.{b64url_encode(payload)}.{b64url_encode(hmac.digest(secret, signing_input, hashlib.sha256))}"
    )


def flip_signature(jws: str) -> str:
    """The JWS with one bit of its signature flipped (still 64 well-encoded bytes)."""
    header, payload, signature = _parts(jws)
    return compact(header, payload, bytes([signature[0] ^ 0x01]) + signature[1:])


def with_payload(jws: str, manifest_json: Mapping[str, Any]) -> str:
    """The JWS's header and signature over another payload (an edit after signing)."""
    header, _, signature = _parts(jws)
    return compact(header, canonical_json(dict(manifest_json)), signature)


def splice_signature(jws: str, other: str) -> str:
    """``jws``'s header and payload with ``other``'s (valid, same key) signature."""
    header, payload, _ = _parts(jws)
    return compact(header, payload, _parts(other)[2])


def with_manifest(rev: Rev, jws: str) -> Rev:
    """``rev``'s document with another manifest text (the manifest object is left as it was)."""
    return Rev(rev.manifest, {**rev.document, "manifest": jws})


def with_contents(rev: Rev, contents: Mapping[str, Any]) -> Rev:
    """``rev``'s document with other contents (the signed manifest unchanged)."""
    return Rev(rev.manifest, {**rev.document, "contents": dict(contents)})


def altered_content(rev: Rev, digest: str, content_: Mapping[str, Any]) -> Rev:
    """The content under ``digest`` replaced, its key kept (a body that does not match)."""
    return with_contents(rev, {**rev.contents, digest: dict(content_)})


def without_content(rev: Rev, digest: str) -> Rev:
    """The content under ``digest`` dropped."""
    return with_contents(rev, {d: c for d, c in rev.contents.items() if d != digest})


def with_extra_content(rev: Rev, content_: Mapping[str, Any]) -> Rev:
    """One more, correctly hashed, content the manifest does not list."""
    return with_contents(rev, {**rev.contents, digest_of(content_): dict(content_)})


def document_of(rev: Rev) -> dict[str, Any]:
    """A fresh copy of the revision document."""
    return {"format": DOCUMENT_FORMAT, "manifest": rev.jws, "contents": dict(rev.contents)}
