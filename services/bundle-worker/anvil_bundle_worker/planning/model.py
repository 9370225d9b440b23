"""The plan: frozen dataclasses and their stable JSON shape (stored and served by the worker)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "STRATEGIES",
    "PlanError",
    "PlanNotApplicable",
    "Head",
    "VersionRef",
    "ProjectPlan",
    "PromptPlan",
    "SetPlan",
    "RevisionPlan",
    "EnvironmentPlan",
    "ProjectHeads",
    "Plan",
]

STRATEGIES = ("fail", "skip", "overwrite", "rename")
PROJECT_STATUSES = ("new", "exists")
PROJECT_ACTIONS = ("create", "none")
PROMPT_STATUSES = ("new", "identical", "fast-forward", "conflict")
PROMPT_ACTIONS = ("create", "append", "overwrite", "rename", "skip", "none", "blocked")
SET_STATUSES = ("new", "identical", "changed")
SET_ACTIONS = ("create", "update", "none")
ENVIRONMENT_STATUSES = ("new", "identical", "changed")
ENVIRONMENT_ACTIONS = ("create", "publish", "none")

Pairs = tuple[tuple[str, Any], ...]


class PlanError(ValueError):
    """Inputs the planner cannot plan from (unknown strategy or override, incomplete state, ...)."""


class PlanNotApplicable(PlanError):
    """``plan_to_apply`` was given a plan with unresolved problems."""


@dataclass(frozen=True)
class Head:
    """A version of a prompt: its number (on the side it comes from) and content digest.

    A target prompt created without any version yet has the head ``Head(0, None)``.
    """

    number: int
    digest: str | None

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "digest": self.digest}


@dataclass(frozen=True)
class VersionRef:
    """An incoming version the apply would append (``number`` is the exporter's number)."""

    number: int
    digest: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "digest": self.digest, "message": self.message}


@dataclass(frozen=True)
class ProjectPlan:
    slug: str
    name: str
    status: str
    action: str
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self.slug

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "slug": self.slug,
            "name": self.name,
            "status": self.status,
            "action": self.action,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class PromptPlan:
    project: str
    name: str
    role: str
    status: str
    action: str
    strategy: str
    incoming: Head
    target: Head | None = None
    rename_to: str | None = None
    versions: tuple[VersionRef, ...] = ()
    diff: str | None = None
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.project}/{self.name}"

    @property
    def written_name(self) -> str:
        return self.rename_to or self.name

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "project": self.project,
            "name": self.name,
            "role": self.role,
            "status": self.status,
            "action": self.action,
            "strategy": self.strategy,
            "rename_to": self.rename_to,
            "target": self.target.to_json() if self.target else None,
            "incoming": self.incoming.to_json(),
            "versions": [v.to_json() for v in self.versions],
            "diff": self.diff,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class SetPlan:
    project: str
    name: str
    status: str
    action: str
    members: tuple[str, ...]
    target_members: tuple[str, ...] | None = None
    changes: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.project}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "project": self.project,
            "name": self.name,
            "status": self.status,
            "action": self.action,
            "members": list(self.members),
            "target_members": None if self.target_members is None else list(self.target_members),
            "changes": list(self.changes),
            "problems": list(self.problems),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class RevisionPlan:
    """A revision the apply would publish: ``number`` on the target, ``source_number`` in the bundle.

    ``prompts`` maps served names to digests; ``versions`` names the target version serving a
    prompt where the target's numbering matches the exporter's (else the registry serves the
    newest version with the digest). ``rollback_of`` is a target revision number.
    """

    number: int
    source_number: int
    message: str
    prompts: tuple[tuple[str, str], ...]
    versions: tuple[tuple[str, int], ...] = ()
    kind: str = "publish"
    rollback_of: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "source_number": self.source_number,
            "kind": self.kind,
            "rollback_of": self.rollback_of,
            "message": self.message,
            "prompts": dict(self.prompts),
            "versions": dict(self.versions),
        }


@dataclass(frozen=True)
class EnvironmentPlan:
    project: str
    name: str
    status: str
    action: str
    from_revision: int | None
    to_revision: int | None
    revisions: tuple[RevisionPlan, ...] = ()
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.project}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "project": self.project,
            "name": self.name,
            "status": self.status,
            "action": self.action,
            "from_revision": self.from_revision,
            "to_revision": self.to_revision,
            "revisions": [r.to_json() for r in self.revisions],
            "problems": list(self.problems),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class ProjectHeads:
    """What the plan saw of one target project: the ``expect`` entry of the apply body."""

    slug: str
    exists: bool
    prompts: tuple[tuple[str, int], ...] = ()
    prompt_sets: tuple[tuple[str, int], ...] = ()
    environments: tuple[tuple[str, int], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "exists": self.exists,
            "prompts": dict(self.prompts),
            "prompt_sets": dict(self.prompt_sets),
            "environments": dict(self.environments),
        }


def _counts(items: Sequence[Any], attribute: str, names: Iterable[str]) -> dict[str, int]:
    counted = Counter(getattr(item, attribute) for item in items)
    return {name: counted[name] for name in names}


def _section(items: Sequence[Any], statuses: Iterable[str], actions: Iterable[str]) -> dict[str, Any]:
    return {"statuses": _counts(items, "status", statuses), "actions": _counts(items, "action", actions)}


@dataclass(frozen=True)
class Plan:
    """An import plan: what applying a bundle would do to one target organisation."""

    bundle: str
    exporter: str
    organisation: str
    strategy: str
    overrides: tuple[tuple[str, str], ...]
    heads: tuple[ProjectHeads, ...]
    projects: tuple[ProjectPlan, ...]
    prompts: tuple[PromptPlan, ...]
    prompt_sets: tuple[SetPlan, ...]
    environments: tuple[EnvironmentPlan, ...]

    @property
    def reasons(self) -> tuple[str, ...]:
        """Every problem that makes the plan not applicable, prefixed with its object."""
        return tuple(
            f"{kind} {item.key}: {problem}"
            for kind, items in self._problem_sections()
            for item in items
            for problem in item.problems
        )

    @property
    def warnings(self) -> tuple[str, ...]:
        """Every warning (the plan stays applicable), prefixed with its object."""
        return tuple(
            f"{kind} {item.key}: {warning}"
            for kind, items in self._problem_sections()
            for item in items
            for warning in item.warnings
        )

    @property
    def applicable(self) -> bool:
        return not self.reasons

    @property
    def has_changes(self) -> bool:
        """True when the apply body would write anything."""
        return (
            any(p.action == "create" for p in self.projects)
            or any(p.versions for p in self.prompts)
            or any(s.action != "none" for s in self.prompt_sets)
            or any(e.action != "none" for e in self.environments)
        )

    @property
    def expect(self) -> dict[str, Any]:
        """The ``expect`` member of the apply body (interface B3)."""
        return {"projects": {h.slug: h.to_json() for h in self.heads}}

    @property
    def summary(self) -> dict[str, Any]:
        prompts = _section(self.prompts, PROMPT_STATUSES, PROMPT_ACTIONS)
        prompts["versions"] = sum(len(p.versions) for p in self.prompts)
        environments = _section(self.environments, ENVIRONMENT_STATUSES, ENVIRONMENT_ACTIONS)
        environments["revisions"] = sum(len(e.revisions) for e in self.environments)
        return {
            "projects": _section(self.projects, PROJECT_STATUSES, PROJECT_ACTIONS),
            "prompts": prompts,
            "prompt_sets": _section(self.prompt_sets, SET_STATUSES, SET_ACTIONS),
            "environments": environments,
        }

    def _problem_sections(self) -> list[tuple[str, Sequence[Any]]]:
        return [
            ("project", self.projects),
            ("prompt", self.prompts),
            ("prompt set", self.prompt_sets),
            ("environment", self.environments),
        ]

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON: stable member names, lists in (project, name) order."""
        return {
            "bundle": self.bundle,
            "exporter": self.exporter,
            "organisation": self.organisation,
            "strategy": self.strategy,
            "overrides": dict(self.overrides),
            "applicable": self.applicable,
            "changes": self.has_changes,
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "summary": self.summary,
            "heads": self.expect,
            "projects": [p.to_json() for p in self.projects],
            "prompts": [p.to_json() for p in self.prompts],
            "prompt_sets": [s.to_json() for s in self.prompt_sets],
            "environments": [e.to_json() for e in self.environments],
        }
