"""Signed config revisions (docs/api.md, "Config revisions"): manifest, document, verification.

A revision document is ``{"format", "manifest": <JWS>, "contents": {digest: content}}``. The
manifest (signed, ``typ`` anvil-revision-manifest+jws) binds organisation, project,
environment id, revision number and ``rollback_of`` to every prompt's digest; contents are
content-addressed, so a client can verify one prompt, a delta or a whole snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .canonical import digest_of, is_digest
from .jws import TYP_REVISION_MANIFEST, JWSError, KeyLookup, sign_document, verify
from .keys import SigningKey
from .prompts import (
    CompiledTemplate,
    PartialRef,
    PartialResolver,
    RenderError,
    compile_template,
    is_prompt_name,
    is_slug,
    render,
)

__all__ = [
    "DOCUMENT_FORMAT",
    "MANIFEST_FORMAT",
    "RevisionError",
    "ManifestEntry",
    "RevisionManifest",
    "VerifiedRevision",
    "sign_revision",
    "verify_revision",
    "verify_contents",
]

DOCUMENT_FORMAT = "anvil.revision.v1"
MANIFEST_FORMAT = "anvil.revision-manifest.v1"


class RevisionError(ValueError):
    """A revision document or manifest that must not be applied."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise RevisionError(message)


@dataclass(frozen=True)
class ManifestEntry:
    """One prompt in a revision: exact version, content digest, and where its partials point."""

    version: int
    digest: str
    partials: Mapping[str, str] = field(default_factory=dict)
    project: str | None = None  # set on dependencies only
    name: str | None = None  # set on dependencies only

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "version": self.version,
            "digest": self.digest,
            "partials": dict(self.partials),
        }
        if self.project is not None:
            doc["project"], doc["name"] = self.project, self.name
        return doc

    @classmethod
    def from_json(cls, key: str, doc: Any, *, dependency: bool) -> ManifestEntry:
        allowed = {"version", "digest", "partials"} | ({"project", "name"} if dependency else set())
        _require(
            isinstance(doc, Mapping) and set(doc) == allowed, f"manifest entry {key!r} has the wrong members"
        )
        version = doc["version"]
        _require(
            isinstance(version, int) and not isinstance(version, bool) and version >= 1,
            f"entry {key!r}: bad version",
        )
        _require(is_digest(doc["digest"]), f"entry {key!r}: bad digest")
        _require(
            not dependency or (is_slug(doc["project"]) and is_prompt_name(doc["name"])),
            f"dependency {key!r}: project must be a slug and name a prompt name",
        )
        partials = doc["partials"]
        _require(
            isinstance(partials, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in partials.items()),
            f"entry {key!r}: partials must map reference text to entry keys",
        )
        return cls(
            version=doc["version"],
            digest=doc["digest"],
            partials=dict(partials),
            project=doc.get("project"),
            name=doc.get("name"),
        )


@dataclass(frozen=True)
class RevisionManifest:
    issuer: str
    organisation: Mapping[str, str]
    project: Mapping[str, str]
    environment: Mapping[str, str]
    revision: int
    rollback_of: int | None
    created_at: str
    prompts: Mapping[str, ManifestEntry]
    dependencies: Mapping[str, ManifestEntry] = field(default_factory=dict)

    @property
    def environment_id(self) -> str:
        return self.environment["id"]

    def digests(self) -> set[str]:
        return {e.digest for e in (*self.prompts.values(), *self.dependencies.values())}

    def entry(self, key: str) -> ManifestEntry | None:
        return self.prompts.get(key) or self.dependencies.get(key)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "issuer": self.issuer,
            "organisation": dict(self.organisation),
            "project": dict(self.project),
            "environment": dict(self.environment),
            "revision": self.revision,
            "rollback_of": self.rollback_of,
            "created_at": self.created_at,
            "prompts": {k: v.to_json() for k, v in self.prompts.items()},
            "dependencies": {k: v.to_json() for k, v in self.dependencies.items()},
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> RevisionManifest:
        _require(
            doc.get("format") == MANIFEST_FORMAT,
            f"manifest format must be {MANIFEST_FORMAT!r}, got {doc.get('format')!r}",
        )
        expected = {
            "format",
            "issuer",
            "organisation",
            "project",
            "environment",
            "revision",
            "rollback_of",
            "created_at",
            "prompts",
            "dependencies",
        }
        _require(set(doc) == expected, "revision manifest has missing or unknown members")
        _require(
            isinstance(doc["issuer"], str) and isinstance(doc["created_at"], str),
            "manifest issuer and created_at must be strings",
        )
        for part, keys in (
            ("organisation", {"id", "slug"}),
            ("project", {"id", "slug"}),
            ("environment", {"id", "name"}),
        ):
            value = doc[part]
            _require(
                isinstance(value, Mapping)
                and set(value) == keys
                and all(isinstance(v, str) for v in value.values()),
                f"manifest {part} must have exactly {sorted(keys)}",
            )
        revision, rollback_of = doc["revision"], doc["rollback_of"]
        _require(
            isinstance(revision, int) and not isinstance(revision, bool) and revision >= 1,
            "bad revision number",
        )
        _require(
            rollback_of is None
            or (
                isinstance(rollback_of, int)
                and not isinstance(rollback_of, bool)
                and 1 <= rollback_of < revision
            ),
            "rollback_of must name an earlier revision",
        )
        _require(
            isinstance(doc["prompts"], Mapping) and isinstance(doc["dependencies"], Mapping), "bad entries"
        )
        _require(all(is_prompt_name(k) for k in doc["prompts"]), "bad prompt name in manifest")
        prompts = {k: ManifestEntry.from_json(k, v, dependency=False) for k, v in doc["prompts"].items()}
        deps = {k: ManifestEntry.from_json(k, v, dependency=True) for k, v in doc["dependencies"].items()}
        manifest = cls(
            issuer=doc["issuer"],
            organisation=dict(doc["organisation"]),
            project=dict(doc["project"]),
            environment=dict(doc["environment"]),
            revision=revision,
            rollback_of=rollback_of,
            created_at=doc["created_at"],
            prompts=prompts,
            dependencies=deps,
        )
        for key, entry in (*prompts.items(), *deps.items()):
            for ref, target in entry.partials.items():
                _require(
                    manifest.entry(target) is not None,
                    f"entry {key!r}: partial {ref!r} points at missing {target!r}",
                )
        return manifest


@dataclass(frozen=True)
class VerifiedRevision:
    manifest: RevisionManifest
    contents: Mapping[str, Mapping[str, Any]]
    kid: str

    def content(self, key: str) -> Mapping[str, Any]:
        entry = self.manifest.entry(key)
        if entry is None:
            raise KeyError(key)
        return self.contents[entry.digest]

    def render(self, name: str, variables: Mapping[str, Any]) -> str | list[dict[str, str]]:
        """Render served prompt ``name``, resolving partials through the manifest."""
        content, resolve = self._served(name)
        return render(content, variables, resolve)

    def compile(self, name: str) -> CompiledTemplate:
        """Compile served prompt ``name`` (partials resolved through the manifest) for fast renders."""
        content, resolve = self._served(name)
        return compile_template(content, resolve)

    def _served(self, name: str) -> tuple[Mapping[str, Any], PartialResolver]:
        """Served prompt ``name``'s content and the resolver of its partials."""
        entry = self.manifest.prompts.get(name)
        if entry is None:
            raise RenderError(f"prompt {name!r} is not in revision {self.manifest.revision}")
        # One object per manifest entry, not per digest: two entries with identical content
        # (say the same template in two projects) may resolve their partials differently,
        # and render() recognises a cycle by the identity of what a partial resolves to.
        views: dict[str, Mapping[str, Any]] = {}
        owners: dict[int, ManifestEntry] = {}

        def view(key: str, target: ManifestEntry) -> Mapping[str, Any]:
            if key not in views:
                views[key] = dict(self.contents[target.digest])
                owners[id(views[key])] = target
            return views[key]

        def resolve(parent: Mapping[str, Any], ref: PartialRef) -> Mapping[str, Any]:
            target_key = owners[id(parent)].partials.get(ref.text)
            target = self.manifest.entry(target_key) if target_key else None
            if target_key is None or target is None:
                raise RenderError(f"partial {ref.text!r} is not resolved in this revision")
            return view(target_key, target)

        return view(name, entry), resolve


def sign_revision(
    manifest: RevisionManifest, contents: Mapping[str, Mapping[str, Any]], key: SigningKey
) -> dict[str, Any]:
    """Build the signed revision document; contents must hold exactly the manifest's digests."""
    verify_contents(manifest, contents)
    return {
        "format": DOCUMENT_FORMAT,
        "manifest": sign_document(manifest.to_json(), key, typ=TYP_REVISION_MANIFEST),
        "contents": {d: dict(contents[d]) for d in sorted(contents)},
    }


def verify_contents(
    manifest: RevisionManifest, contents: Mapping[str, Any], *, complete: bool = True
) -> None:
    """Check every content hashes to its key and, if ``complete``, that keys equal the manifest's."""
    wanted = manifest.digests()
    if complete:
        _require(set(contents) == wanted, "contents do not match the manifest's digests exactly")
    else:
        _require(set(contents) <= wanted, "contents carry a digest the manifest does not list")
    for digest, content in contents.items():
        try:
            actual = digest_of(content)
        except (TypeError, ValueError) as exc:
            raise RevisionError(f"content {digest} is not canonical JSON") from exc
        _require(actual == digest, f"content does not match its digest {digest}")


def verify_revision(
    document: Mapping[str, Any], keys: KeyLookup, *, environment_id: str | None = None
) -> VerifiedRevision:
    """Verify a revision document: signature, manifest, environment binding and every digest."""
    _require(isinstance(document, Mapping), "revision document must be an object")
    _require(
        document.get("format") == DOCUMENT_FORMAT, f"revision document format must be {DOCUMENT_FORMAT!r}"
    )
    _require(
        set(document) == {"format", "manifest", "contents"},
        "revision document has missing or unknown members",
    )
    try:
        verified = verify(document["manifest"], keys, typ=TYP_REVISION_MANIFEST)
        signed = json.loads(verified.payload)
    except JWSError as exc:
        raise RevisionError(f"manifest signature refused: {exc}") from exc
    except ValueError as exc:
        raise RevisionError("signed manifest is not JSON") from exc
    _require(isinstance(signed, dict), "signed manifest must be an object")
    manifest = RevisionManifest.from_json(signed)
    if environment_id is not None:
        _require(manifest.environment_id == environment_id, "revision is bound to another environment")
    contents = document["contents"]
    _require(isinstance(contents, Mapping), "contents must be an object")
    verify_contents(manifest, contents)
    return VerifiedRevision(manifest=manifest, contents=dict(contents), kid=verified.kid)
