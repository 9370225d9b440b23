"""Per-prompt planning: status, the action the strategy picks, rename names, content diffs."""

from __future__ import annotations

import difflib
import itertools
import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from anvil_wire.prompts import MAX_NAME_LENGTH, is_prompt_name

from .model import Head, PlanError, PromptPlan, VersionRef
from .state import Names, StateReader, TargetPrompt

__all__ = [
    "RENAME_INFIX",
    "RENAME_PROBES",
    "PromptPlanner",
    "classify",
    "content_diff",
    "decide",
    "rename_candidates",
]

RENAME_INFIX = ".import-"
# Rename candidates asked of import-state per round when the state does not cover them yet.
RENAME_PROBES = 4
_SEGMENT_MAX = 63
_CONFLICT_ACTIONS = {"fail": "blocked", "skip": "skip", "overwrite": "overwrite", "rename": "rename"}
_PLAIN_ACTIONS = {"new": "create", "identical": "none", "fast-forward": "append"}


def listed_versions(incoming: Mapping[str, Any]) -> tuple[VersionRef, ...]:
    listed = tuple(VersionRef(v["number"], v["digest"], v.get("message", "")) for v in incoming["versions"])
    if not listed:
        raise PlanError(f"bundle prompt {incoming['name']!r} lists no versions")
    return listed


def classify(incoming: Mapping[str, Any], target: TargetPrompt | None) -> tuple[str, tuple[VersionRef, ...]]:
    """Status of an incoming prompt against the target, and the versions a fast-forward appends."""
    listed = listed_versions(incoming)
    if target is None:
        return "new", listed
    if listed[-1].digest in target.versions:
        return "identical", ()
    if target.digest is None:
        # A prompt created without a version: its empty history precedes any version.
        return "fast-forward", listed
    ancestors = list(incoming.get("ancestors") or [])
    line = ancestors + [v.digest for v in listed]
    if target.digest not in line:
        return "conflict", ()
    # The last occurrence: content can come back (v1 = A, v2 = B, v3 = A), and everything after
    # the target head's last position is what the target lacks.
    position = len(line) - 1 - line[::-1].index(target.digest)
    return "fast-forward", listed[max(position + 1 - len(ancestors), 0) :]


def decide(status: str, strategy: str, override: str | None) -> str:
    """The action for a status: strategies decide conflicts; an override ``skip`` excludes anything."""
    if override == "skip" and status != "identical":
        return "skip"
    if status != "conflict":
        return _PLAIN_ACTIONS[status]
    return _CONFLICT_ACTIONS[override or strategy]


def rename_candidates(name: str, digest: str) -> Iterator[str]:
    """``<name>.import-<8 hex>``, then ``-2``, ``-3``, ...; the last segment is cut to fit the grammar."""
    hex8 = digest.removeprefix("sha256:")[:8]
    head, slash, last = name.rpartition("/")
    prefix = head + slash
    for n in itertools.count(1):
        suffix = RENAME_INFIX + hex8 + ("" if n == 1 else f"-{n}")
        keep = min(len(last), _SEGMENT_MAX - len(suffix), MAX_NAME_LENGTH - len(prefix) - len(suffix))
        candidate = prefix + last[: max(keep, 0)] + suffix
        if keep < 1 or not is_prompt_name(candidate):
            return
        yield candidate


def _pretty(content: Mapping[str, Any]) -> list[str]:
    return json.dumps(content, sort_keys=True, indent=2, ensure_ascii=False).splitlines()


def content_diff(old: Mapping[str, Any], new: Mapping[str, Any], *, old_label: str, new_label: str) -> str:
    """Unified diff of two contents as pretty JSON with sorted keys and a 2-space indent."""
    lines = difflib.unified_diff(_pretty(old), _pretty(new), old_label, new_label, lineterm="")
    return "\n".join(lines)


class _Unknown(Exception):
    def __init__(self, candidates: list[str]) -> None:
        self.candidates = candidates


class PromptPlanner:
    """Plans each bundle prompt; ``probe`` collects unanswered rename candidates instead of failing."""

    def __init__(
        self,
        manifest: Mapping[str, Any],
        reader: StateReader,
        *,
        strategy: str,
        overrides: Mapping[str, str],
        contents: Mapping[str, Any],
        target_contents: Mapping[str, Any],
        probe: bool = False,
    ) -> None:
        self._reader = reader
        self._strategy = strategy
        self._overrides = overrides
        self._contents = contents
        self._target_contents = target_contents
        self._probe = probe
        self._bundle_names = {p["slug"]: {q["name"] for q in p["prompts"]} for p in manifest["projects"]}
        self._assigned: set[tuple[str, str]] = set()
        self.needed: Names = {}

    def plan(self, slug: str, incoming: Mapping[str, Any]) -> PromptPlan:
        """Plan one incoming prompt of project ``slug``."""
        name = incoming["name"]
        target = self._reader.prompt(slug, name)
        status, versions = classify(incoming, target)
        override = self._overrides.get(f"{slug}/{name}")
        latest = listed_versions(incoming)[-1]
        changed = status in ("fast-forward", "conflict")
        item = PromptPlan(
            project=slug,
            name=name,
            role=incoming.get("role", "selected"),
            status=status,
            action=decide(status, self._strategy, override),
            strategy=override or self._strategy,
            incoming=Head(latest.number, latest.digest),
            target=Head(target.head, target.digest) if target else None,
            versions=versions,
            diff=self._diff(slug, name, target, latest.digest) if changed else None,
        )
        item = self._apply_action(item, incoming, latest)
        return self._archived(item, incoming, target)

    def _apply_action(self, item: PromptPlan, incoming: Mapping[str, Any], latest: VersionRef) -> PromptPlan:
        if item.action in ("skip", "none"):
            return replace(item, versions=()) if item.versions else item
        if item.action == "overwrite":
            return replace(item, versions=(latest,))
        if item.action == "blocked":
            assert item.target is not None  # only conflicts are blocked, and a conflict has a target
            problem = (
                f"conflict: the target head (version {item.target.number}, {item.target.digest}) is not in "
                f"the bundle's history and the bundle's latest ({latest.digest}) is not on the target; "
                "choose a strategy (skip, overwrite, rename) or an override"
            )
            return replace(item, versions=(), problems=(problem,))
        if item.action == "rename":
            return self._rename(item, listed_versions(incoming))
        return item

    def _rename(self, item: PromptPlan, listed: tuple[VersionRef, ...]) -> PromptPlan:
        try:
            picked = self._pick_name(item.project, item.name, listed[-1].digest)
        except _Unknown as unknown:
            if not self._probe:
                raise PlanError(
                    f"import state has no entry for rename candidate {item.project}/{unknown.candidates[0]}; "
                    "ask import-state for it (state_query)"
                ) from None
            sections = self.needed.setdefault(item.project, {"prompts": set()})
            sections["prompts"].update(unknown.candidates)
            return replace(item, versions=())
        if picked is None:
            problem = f"cannot rename: no name {item.name}{RENAME_INFIX}... fits the prompt name grammar"
            return replace(item, action="blocked", versions=(), problems=(problem,))
        name, done = picked
        if done:
            return replace(item, action="none", rename_to=name, versions=())
        return replace(item, rename_to=name, versions=listed)

    def _pick_name(self, slug: str, name: str, latest: str) -> tuple[str, bool] | None:
        """The first free candidate, or one that already holds ``latest`` (renamed by an earlier import)."""
        candidates = rename_candidates(name, latest)
        for candidate in candidates:
            if candidate in self._bundle_names.get(slug, ()) or (slug, candidate) in self._assigned:
                continue
            if not self._reader.knows("prompts", slug, candidate):
                raise _Unknown([candidate, *itertools.islice(candidates, RENAME_PROBES - 1)])
            target = self._reader.prompt(slug, candidate)
            if target is None or latest in target.versions:
                self._assigned.add((slug, candidate))
                return candidate, target is not None
        return None

    def _diff(self, slug: str, name: str, target: TargetPrompt | None, latest: str) -> str | None:
        if target is None or target.digest is None:
            return None
        old = self._target_contents.get(target.digest)
        new = self._contents.get(latest)
        if old is None or new is None:
            return None
        old_label = f"target/{slug}/{name}@{target.head} {target.digest}"
        return content_diff(old, new, old_label=old_label, new_label=f"bundle/{slug}/{name} {latest}")

    @staticmethod
    def _archived(item: PromptPlan, incoming: Mapping[str, Any], target: TargetPrompt | None) -> PromptPlan:
        """The registry refuses versions on an archived prompt; a new prompt keeps the exporter's state."""
        if target is not None and target.archived and item.action in ("append", "overwrite"):
            problem = (
                "the target prompt is archived (read-only): unarchive it on the target, "
                "or leave it out with the override skip"
            )
            return replace(item, problems=(*item.problems, problem))
        if incoming.get("archived") and item.versions and item.action in ("create", "rename"):
            warning = f"archived on the exporter: {item.written_name} is created archived"
            return replace(item, warnings=(*item.warnings, warning))
        return item
