"""The target state (interface B2): reading it, recording every read, and asking for more of it.

Every lookup the planner makes goes through ``StateReader``, which records what it saw; those
records become the ``expect`` of the apply body, so any change on the target between plan and
apply (to any object the plan looked at) makes the apply fail with ``import-target-changed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .model import PlanError, ProjectHeads

__all__ = [
    "SECTIONS",
    "StateReader",
    "TargetEnvironment",
    "TargetPrompt",
    "TargetSet",
    "Names",
    "as_query",
    "manifest_names",
    "merge_state",
    "missing_names",
]

SECTIONS = ("prompts", "prompt_sets", "environments")
# What the target reports for an object that does not exist (interface B3 `expect`).
ABSENT = {"prompts": 0, "prompt_sets": 0, "environments": -1}

# slug -> section -> names
Names = dict[str, dict[str, set[str]]]


@dataclass(frozen=True)
class TargetPrompt:
    head: int
    versions: tuple[str, ...]
    archived: bool

    @property
    def digest(self) -> str | None:
        """The head's digest; ``None`` for a prompt created without a version yet (head 0)."""
        return self.versions[-1] if self.versions else None


@dataclass(frozen=True)
class TargetSet:
    description: str
    members: tuple[str, ...]
    row_version: int
    archived: bool = False


@dataclass(frozen=True)
class TargetEnvironment:
    last_revision: int
    archived: bool
    served: tuple[tuple[str, str], ...]  # name -> digest of the current revision, sorted


def _prompt(key: str, data: Mapping[str, Any]) -> TargetPrompt:
    versions = tuple(data["versions"])
    # A prompt exists from its creation, before its first version: head 0, no versions.
    if data["head"] != len(versions):
        raise PlanError(f"import state for prompt {key}: head {data['head']} but {len(versions)} versions")
    return TargetPrompt(head=data["head"], versions=versions, archived=bool(data.get("archived")))


def _set(data: Mapping[str, Any]) -> TargetSet:
    return TargetSet(
        description=data.get("description") or "",
        members=tuple(sorted(data["prompts"])),
        row_version=data["row_version"],
        archived=bool(data.get("archived")),
    )


def _environment(data: Mapping[str, Any]) -> TargetEnvironment:
    served = tuple(sorted((name, entry["digest"]) for name, entry in data["prompts"].items()))
    return TargetEnvironment(data["last_revision"], bool(data.get("archived")), served)


Target = TargetPrompt | TargetSet | TargetEnvironment


def _parse(section: str, key: str, data: Mapping[str, Any]) -> Target:
    if section == "prompts":
        return _prompt(key, data)
    return _set(data) if section == "prompt_sets" else _environment(data)


def _head_of(entry: Target) -> int:
    if isinstance(entry, TargetPrompt):
        return entry.head
    return entry.row_version if isinstance(entry, TargetSet) else entry.last_revision


class StateReader:
    """Typed, recorded access to a B2 answer."""

    def __init__(self, state: Mapping[str, Any]) -> None:
        try:
            self.organisation: str = state["organisation"]["slug"]
            self._projects: Mapping[str, Any] = state["projects"]
        except (KeyError, TypeError) as exc:
            raise PlanError("import state must be the import-state answer {organisation, projects}") from exc
        self._reads: dict[str, dict[str, dict[str, int]]] = {}
        self._parsed: dict[tuple[str, str, str], Target | None] = {}

    def project(self, slug: str) -> Mapping[str, Any] | None:
        if slug not in self._projects:
            raise PlanError(f"import state has no entry for project {slug!r}; ask import-state for it")
        self._reads.setdefault(slug, {section: {} for section in SECTIONS})
        project: Mapping[str, Any] | None = self._projects[slug]
        return project

    def knows(self, section: str, slug: str, name: str) -> bool:
        """True when the state answers for ``name`` (an absent project answers for everything)."""
        if slug not in self._projects:
            return False
        project = self._projects[slug]
        return project is None or name in (project.get(section) or {})

    def prompt(self, slug: str, name: str) -> TargetPrompt | None:
        found: TargetPrompt | None = self._read("prompts", slug, name)
        return found

    def prompt_set(self, slug: str, name: str) -> TargetSet | None:
        found: TargetSet | None = self._read("prompt_sets", slug, name)
        return found

    def environment(self, slug: str, name: str) -> TargetEnvironment | None:
        found: TargetEnvironment | None = self._read("environments", slug, name)
        return found

    def _read(self, section: str, slug: str, name: str) -> Any:
        key = (section, slug, name)
        if key in self._parsed:
            return self._parsed[key]
        project = self.project(slug)
        entry: Target | None = None
        if project is not None:
            try:
                entries = project.get(section) or {}
                found = name in entries
                if found and entries[name] is not None:
                    entry = _parse(section, f"{slug}/{name}", entries[name])
            except (AttributeError, KeyError, TypeError) as exc:
                raise PlanError(f"import state for {slug}/{name} is malformed: {exc!r}") from exc
            if not found:
                raise PlanError(
                    f"import state has no entry for {section[:-1].replace('_', ' ')} {slug}/{name}; "
                    "ask import-state for it"
                )
        self._reads[slug][section][name] = ABSENT[section] if entry is None else _head_of(entry)
        self._parsed[key] = entry
        return entry

    def heads(self) -> tuple[ProjectHeads, ...]:
        """Everything read so far, as apply expectations."""
        return tuple(
            ProjectHeads(
                slug=slug,
                exists=self._projects[slug] is not None,
                prompts=tuple(sorted(reads["prompts"].items())),
                prompt_sets=tuple(sorted(reads["prompt_sets"].items())),
                environments=tuple(sorted(reads["environments"].items())),
            )
            for slug, reads in sorted(self._reads.items())
        )


def manifest_names(manifest: Mapping[str, Any]) -> Names:
    """Every target object a manifest makes the planner look at (rename candidates aside)."""
    names: Names = {}
    for project in manifest["projects"]:
        prompts = {p["name"] for p in project["prompts"]}
        prompts |= {member for s in project["prompt_sets"] for member in s["prompts"]}
        prompts |= {name for e in project["environments"] for r in e["revisions"] for name in r["prompts"]}
        names[project["slug"]] = {
            "prompts": prompts,
            "prompt_sets": {s["name"] for s in project["prompt_sets"]},
            "environments": {e["name"] for e in project["environments"]},
        }
    return names


def missing_names(names: Names, state: Mapping[str, Any]) -> Names:
    """The part of ``names`` that ``state`` does not answer for."""
    projects = state.get("projects") or {}
    missing: Names = {}
    for slug, sections in names.items():
        if slug not in projects:
            missing[slug] = sections
        elif projects[slug] is not None:
            gaps = {s: {n for n in sections[s] if n not in (projects[slug].get(s) or {})} for s in SECTIONS}
            if any(gaps.values()):
                missing[slug] = gaps
    return missing


def as_query(names: Names) -> dict[str, Any]:
    """The import-state request body (interface B2) for ``names``."""
    return {
        "projects": {
            slug: {section: sorted(sections.get(section, ())) for section in SECTIONS}
            for slug, sections in sorted(names.items())
        }
    }


def merge_state(state: Mapping[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    """Combine two import-state answers (the second answering a follow-up query)."""
    projects: dict[str, Any] = dict(state.get("projects") or {})
    for slug, project in (more.get("projects") or {}).items():
        known = projects.get(slug)
        if known is None or project is None:
            # One answer says the project does not exist: the newer answer wins.
            projects[slug] = project
            continue
        merged = dict(known)
        for section in SECTIONS:
            merged[section] = {**(known.get(section) or {}), **(project.get(section) or {})}
        projects[slug] = merged
    return {"organisation": state.get("organisation") or more.get("organisation"), "projects": projects}
