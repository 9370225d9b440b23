"""One environment as the gateway serves it: its current revision, the last few before it, and
every message made of them, encoded once (docs/push-protocol.md sections 2.3 and 3).

A message is encoded once per (revision, prompt set) for a snapshot and once per (base,
revision, prompt set) for a delta, whatever the number of connections that get it: the same
text goes to each of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from anvil_wire import canonical_json
from anvil_wire.push import (
    PromptSetScope,
    Snapshot,
    encode,
    make_delta,
    narrow_document,
    needed_digests,
)
from anvil_wire.revisions import RevisionManifest

__all__ = ["Revision", "Channel", "Scope", "ChannelKey"]

# (organisation slug, project slug, environment name)
ChannelKey = tuple[str, str, str]
# A subscription's prompt set and its members when the message was made (None: everything).
Scope = tuple[str, tuple[str, ...]] | None


@dataclass(frozen=True)
class Revision:
    """A verified revision: the registry's document (its bytes and parsed) and its manifest."""

    number: int
    manifest_digest: str
    manifest: RevisionManifest
    document: Mapping[str, Any]
    body: bytes

    def served(self, scope: Scope) -> list[str]:
        """The prompts a subscription with ``scope`` serves from this revision, sorted."""
        if scope is None:
            return sorted(self.manifest.prompts)
        return sorted(name for name in scope[1] if name in self.manifest.prompts)

    def contents(self, scope: Scope) -> dict[str, Any]:
        """The contents a client of ``scope`` holds once it applied this revision."""
        contents: Mapping[str, Any] = self.document["contents"]
        if scope is None:
            return dict(contents)
        return {d: contents[d] for d in needed_digests(self.manifest, self.served(scope))}


def _prompt_set(revision: Revision, scope: Scope) -> PromptSetScope | None:
    return None if scope is None else PromptSetScope(name=scope[0], prompts=tuple(revision.served(scope)))


@dataclass
class Channel:
    """An environment's revisions and the frames made of them; sessions live in the hub."""

    key: ChannelKey
    environment_id: str
    history: int
    revisions: dict[int, Revision] = field(default_factory=dict)
    archived: bool = False
    # Set (and replaced) whenever the current revision changes or the environment is archived:
    # what the HTTP fallback's long-polls wait on.
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _frames: dict[tuple[Any, ...], str] = field(default_factory=dict)

    @property
    def current(self) -> Revision | None:
        return self.revisions[max(self.revisions)] if self.revisions else None

    def install(self, revision: Revision) -> bool:
        """Make ``revision`` current if it is newer than what the channel has; True if it was."""
        current = self.current
        if current is not None and revision.number <= current.number:
            return False
        self.revisions[revision.number] = revision
        for old in sorted(self.revisions)[: -self.history]:
            del self.revisions[old]
        kept = set(self.revisions)
        self._frames = {k: v for k, v in self._frames.items() if set(k[1:3]) <= kept | {None}}
        self._wake()
        return True

    def archive(self) -> None:
        self.archived = True
        self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def snapshot(self, number: int, scope: Scope) -> str:
        """The ``snapshot`` message of revision ``number`` for ``scope``, encoded once."""
        key = ("snapshot", number, None, scope)
        frame = self._frames.get(key)
        if frame is None:
            revision = self.revisions[number]
            document = revision.document
            if scope is not None:
                document = narrow_document(document, revision.manifest, revision.served(scope))
            message = Snapshot(
                environment_id=self.environment_id,
                revision=number,
                manifest_digest=revision.manifest_digest,
                prompt_set=_prompt_set(revision, scope),
                document=document,
            )
            frame = self._frames[key] = encode(message).decode()
        return frame

    def document_body(self, number: int, scope: Scope) -> bytes:
        """The revision document of ``number`` for ``scope`` (the HTTP fallback's body)."""
        revision = self.revisions[number]
        if scope is None:
            return revision.body
        key = ("document", number, None, scope)
        frame = self._frames.get(key)
        if frame is None:
            narrowed = narrow_document(revision.document, revision.manifest, revision.served(scope))
            frame = self._frames[key] = canonical_json(narrowed).decode()
        return frame.encode()

    def delta(self, base: int, number: int, scope: Scope) -> str:
        """The ``delta`` message from ``base`` to ``number`` for ``scope``, encoded once."""
        key = ("delta", base, number, scope)
        frame = self._frames.get(key)
        if frame is None:
            old, new = self.revisions[base], self.revisions[number]
            message = make_delta(
                old.contents(scope),
                base,
                old.served(scope),
                new.document,
                new.manifest,
                environment_id=self.environment_id,
                prompt_set=_prompt_set(new, scope),
            )
            frame = self._frames[key] = encode(message).decode()
        return frame

    def frame_for(self, base: int | None, number: int, scope: Scope) -> str:
        """A delta from ``base`` when the channel still has it, else a snapshot."""
        if base is not None and base < number and base in self.revisions:
            return self.delta(base, number, scope)
        return self.snapshot(number, scope)

    def knows(self, number: int, manifest_digest: str) -> bool:
        revision = self.revisions.get(number)
        return revision is not None and revision.manifest_digest == manifest_digest
