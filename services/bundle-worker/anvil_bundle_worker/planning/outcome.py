"""What the target will hold after the apply, and the checks that depend on it (partials)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from anvil_wire.prompts import parse_reference

from .model import PromptPlan, VersionRef
from .state import StateReader

__all__ = ["Outcome", "check_dependencies"]


def _appended(base: Sequence[str], versions: Iterable[VersionRef]) -> tuple[str, ...]:
    # The registry skips a version whose content equals the head, so a repeat never lands.
    after = list(base)
    for version in versions:
        if not after or after[-1] != version.digest:
            after.append(version.digest)
    return tuple(after)


class Outcome:
    """Each prompt's version digests after the apply; ``None`` when the prompt will not exist."""

    def __init__(self, reader: StateReader, prompts: Sequence[PromptPlan]) -> None:
        self._reader = reader
        self._items = {(p.project, p.name): p for p in prompts}
        self._after: dict[tuple[str, str], tuple[str, ...] | None] = {}
        for item in prompts:
            target = reader.prompt(item.project, item.name)
            base = None if target is None else target.versions
            if item.rename_to is not None:
                # Renamed (or found renamed by an earlier import): the original name keeps its versions.
                self._after[(item.project, item.name)] = base
                if item.versions:
                    self._after[(item.project, item.rename_to)] = _appended((), item.versions)
            elif base is None and not item.versions:
                self._after[(item.project, item.name)] = None
            else:
                self._after[(item.project, item.name)] = _appended(base or (), item.versions)

    def versions(self, slug: str, name: str) -> tuple[str, ...] | None:
        if (slug, name) in self._after:
            return self._after[(slug, name)]
        target = self._reader.prompt(slug, name)
        return target.versions if target else None

    def archived(self, slug: str, name: str) -> bool:
        """True when the prompt exists on the target and is archived (an import never unarchives)."""
        target = self._reader.prompt(slug, name)
        return target is not None and target.archived

    def item(self, slug: str, name: str) -> PromptPlan | None:
        return self._items.get((slug, name))

    def why(self, slug: str, name: str) -> str:
        """Why a bundle prompt's content will be missing on the target, for messages ("" if unknown)."""
        item = self.item(slug, name)
        if item is None:
            return ""
        if item.rename_to is not None:
            return f" (the bundle's prompt goes to {item.rename_to})"
        return {"skip": " (the prompt is skipped)", "blocked": " (the prompt is blocked by a conflict)"}.get(
            item.action, ""
        )


def _check_edge(dep: Mapping[str, Any], outcome: Outcome, problems: list[str], warnings: list[str]) -> None:
    to = dep["to"]
    to_key = f"{to['project']}/{to['prompt']}"
    ref = dep["reference"]
    after = outcome.versions(to["project"], to["prompt"])
    if after is None:
        problems.append(
            f"partial {ref!r} points at {to_key}, which will not exist on the target"
            f"{outcome.why(to['project'], to['prompt'])} (dangling reference)"
        )
        return
    target_item = outcome.item(to["project"], to["prompt"])
    if target_item is not None and target_item.rename_to:
        warnings.append(
            f"partial {ref!r} points at {to_key}, which the bundle imports as {target_item.rename_to}; "
            f"the reference keeps resolving to the target's own {to_key}"
        )
    pinned = parse_reference(ref).version
    if pinned is None:
        return
    if pinned > len(after):
        problems.append(
            f"partial {ref!r} pins version {pinned} of {to_key}, which the target will not have after "
            f"the import{outcome.why(to['project'], to['prompt'])}; export with full history"
        )
    elif after[pinned - 1] != to["digest"]:
        warnings.append(
            f"partial {ref!r} pins version {pinned} of {to_key}, which on the target holds "
            f"{after[pinned - 1]}, not the exporter's {to['digest']}"
        )


def check_dependencies(
    dependencies: Iterable[Mapping[str, Any]], prompts: Sequence[PromptPlan], outcome: Outcome
) -> tuple[PromptPlan, ...]:
    """Add the partial-reference problems and warnings of every version a prompt would write."""
    edges: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for dep in dependencies:
        edges[(dep["from"]["project"], dep["from"]["prompt"])].append(dep)
    checked = []
    for item in prompts:
        found = edges.get((item.project, item.name))
        if not found or not item.versions:
            checked.append(item)
            continue
        written = {v.number for v in item.versions}
        problems, warnings = list(item.problems), list(item.warnings)
        for dep in found:
            if dep["from"]["version"] in written:
                _check_edge(dep, outcome, problems, warnings)
        checked.append(
            replace(item, problems=tuple(dict.fromkeys(problems)), warnings=tuple(dict.fromkeys(warnings)))
        )
    return tuple(checked)
