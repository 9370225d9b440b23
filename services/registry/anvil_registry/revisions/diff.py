"""Diff of two revisions' manifests (pure: no I/O)."""

from __future__ import annotations

from anvil_wire import ManifestEntry

from ..models import ConfigRevision
from .schemas import EntryChange, EntryPublic, RevisionDiff
from .service import revision_manifest

__all__ = ["diff_revisions"]


def diff_revisions(before: ConfigRevision, after: ConfigRevision) -> RevisionDiff:
    """Added, removed, changed and unchanged served prompts; dependencies added and removed."""
    a, b = revision_manifest(before), revision_manifest(after)

    def pub(entry: ManifestEntry) -> EntryPublic:
        return EntryPublic(**entry.to_json())

    return RevisionDiff(
        from_revision=before.number,
        to_revision=after.number,
        added={k: pub(v) for k, v in b.prompts.items() if k not in a.prompts},
        removed={k: pub(v) for k, v in a.prompts.items() if k not in b.prompts},
        changed={
            k: EntryChange(before=pub(a.prompts[k]), after=pub(v))
            for k, v in b.prompts.items()
            if k in a.prompts and a.prompts[k] != v
        },
        unchanged=sorted(k for k, v in b.prompts.items() if a.prompts.get(k) == v),
        dependencies_added={k: pub(v) for k, v in b.dependencies.items() if k not in a.dependencies},
        dependencies_removed={k: pub(v) for k, v in a.dependencies.items() if k not in b.dependencies},
    )
