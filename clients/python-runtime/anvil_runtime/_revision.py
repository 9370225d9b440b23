"""The revision a client serves: verified, checked prompt by prompt, compiled, then swapped in whole.

Pure code. ``build_applied`` turns a verified revision into ``Applied`` (every served prompt
compiled, so a reader only ever looks up a finished object); any prompt that fails the
client's checks refuses the whole revision (``invalid-prompt``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from anvil_wire import (
    ManifestEntry,
    PromptFormatError,
    RenderError,
    RevisionManifest,
    VerifiedRevision,
    normalize_content,
)
from anvil_wire.push import Holds, PromptSetScope, PushRefused, Subscription
from anvil_wire.revisions import DOCUMENT_FORMAT

from ._prompt import Prompt, Source, freeze

__all__ = ["Applied", "build_applied", "changed_names", "check_binding", "document_of"]


@dataclass(frozen=True)
class Applied:
    """One applied revision: what readers see, replaced as a whole by one reference swap."""

    verified: VerifiedRevision
    manifest_jws: str
    manifest_digest: str
    scope: PromptSetScope | None
    source: Source
    fetched_at: datetime
    prompts: Mapping[str, Prompt]
    render_keys: Mapping[str, frozenset[str]]

    @property
    def environment_id(self) -> str:
        return self.verified.manifest.environment_id

    @property
    def revision(self) -> int:
        return self.verified.manifest.revision

    @property
    def holds(self) -> Holds:
        return Holds(self.environment_id, self.revision, self.manifest_digest)

    @property
    def document(self) -> dict[str, Any]:
        return document_of(self.verified, self.manifest_jws)


def document_of(verified: VerifiedRevision, manifest_jws: str) -> dict[str, Any]:
    """The revision document (api.md section 5.1) of a verified revision, as it was signed."""
    return {"format": DOCUMENT_FORMAT, "manifest": manifest_jws, "contents": dict(verified.contents)}


def check_binding(manifest: RevisionManifest, subscription: Subscription) -> None:
    """The signed names must be the subscription's: a gateway cannot substitute an environment."""
    signed = (
        manifest.organisation.get("slug"),
        manifest.project.get("slug"),
        manifest.environment.get("name"),
    )
    wanted = (subscription.organisation, subscription.project, subscription.environment)
    if signed != wanted:
        raise PushRefused(
            "environment-mismatch",
            f"revision is signed for {'/'.join(map(str, signed))}, the subscription is {'/'.join(wanted)}",
        )


def _closure(manifest: RevisionManifest, key: str) -> frozenset[str]:
    """The digests a served prompt's rendering depends on: its own and every partial's reached."""
    seen: dict[str, ManifestEntry] = {}
    stack = [key]
    while stack:
        current = stack.pop()
        entry = manifest.entry(current)
        if entry is None or current in seen:
            continue
        seen[current] = entry
        stack.extend(entry.partials.values())
    return frozenset(e.digest for e in seen.values())


def build_applied(
    verified: VerifiedRevision,
    manifest_jws: str,
    manifest_digest: str,
    scope: PromptSetScope | None,
    *,
    source: Source,
    fetched_at: datetime,
) -> Applied:
    """Check and compile every served prompt; PushRefused("invalid-prompt") if one fails."""
    manifest = verified.manifest
    for digest, content in verified.contents.items():
        try:
            if normalize_content(content) != content:
                raise PromptFormatError("content is not in normal form")
        except PromptFormatError as exc:
            raise PushRefused("invalid-prompt", f"content {digest}: {exc}") from None
    served = sorted(manifest.prompts) if scope is None else list(scope.prompts)
    prompts: dict[str, Prompt] = {}
    for name in served:
        entry = manifest.prompts.get(name)
        if entry is None:
            raise PushRefused("invalid-prompt", f"prompt set serves {name!r}, which the manifest lacks")
        try:
            compiled = verified.compile(name)
        except (RenderError, PromptFormatError) as exc:
            raise PushRefused("invalid-prompt", f"prompt {name!r}: {exc}") from None
        prompts[name] = Prompt(
            name=name,
            content=freeze(verified.contents[entry.digest]),
            version=entry.version,
            content_hash=entry.digest,
            revision=manifest.revision,
            fetched_at=fetched_at,
            source=source,
            _template=compiled,
        )
    return Applied(
        verified=verified,
        manifest_jws=manifest_jws,
        manifest_digest=manifest_digest,
        scope=scope,
        source=source,
        fetched_at=fetched_at,
        prompts=prompts,
        render_keys={name: _closure(manifest, name) for name in prompts},
    )


def changed_names(old: Applied | None, new: Applied) -> frozenset[str]:
    """Served prompts that render differently: added, removed, or any digest they reach changed."""
    if old is None:
        return frozenset(new.prompts)
    names = old.render_keys.keys() | new.render_keys.keys()
    return frozenset(n for n in names if old.render_keys.get(n) != new.render_keys.get(n))
