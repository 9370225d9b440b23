"""Projects, prompt sets and environments of a plan."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .model import EnvironmentPlan, ProjectPlan, RevisionPlan, SetPlan
from .outcome import Outcome
from .state import StateReader, TargetEnvironment

__all__ = ["plan_environment", "plan_project", "plan_set"]


def plan_project(project: Mapping[str, Any], reader: StateReader, writes: Collection[str]) -> ProjectPlan:
    """A bundle project: created when the target lacks it, otherwise left as it is.

    ``writes`` names what the plan writes into the project; the registry refuses any write into
    an archived project.
    """
    slug = project["slug"]
    target = reader.project(slug)
    if target is None:
        return ProjectPlan(slug, project["name"], "new", "create")
    if not target.get("archived"):
        return ProjectPlan(slug, project["name"], "exists", "none")
    if not writes:
        warning = "the target project is archived"
        return ProjectPlan(slug, project["name"], "exists", "none", warnings=(warning,))
    listed = ", ".join(sorted(writes)[:5]) + (f" and {len(writes) - 5} more" if len(writes) > 5 else "")
    problem = f"the target project is archived (read-only), and the import writes into it: {listed}"
    return ProjectPlan(slug, project["name"], "exists", "none", problems=(problem,))


def plan_set(slug: str, incoming: Mapping[str, Any], reader: StateReader, outcome: Outcome) -> SetPlan:
    """A prompt set: created, replaced when members or description differ, else left alone."""
    name = incoming["name"]
    members = tuple(sorted(incoming["prompts"]))
    description = incoming.get("description") or ""
    target = reader.prompt_set(slug, name)
    changes: tuple[str, ...] = ()
    if target is None:
        status, action = "new", "create"
    else:
        differs = (("description", target.description != description), ("members", target.members != members))
        changes = tuple(field for field, changed in differs if changed)
        status, action = ("changed", "update") if changes else ("identical", "none")
    problems: list[str] = []
    if action != "none":
        if target is not None and target.archived:
            problems.append("the target prompt set is archived (read-only)")
        for member in members:
            if outcome.versions(slug, member) is None:
                why = outcome.why(slug, member)
                problems.append(f"member {member!r} will not exist on the target after the import{why}")
            elif outcome.archived(slug, member):
                problems.append(f"member {member!r} is archived on the target; a set holds active prompts")
    return SetPlan(
        project=slug,
        name=name,
        status=status,
        action=action,
        members=members,
        target_members=None if target is None else target.members,
        changes=changes,
        problems=tuple(problems),
    )


@dataclass(frozen=True)
class _Source:
    """An exporter's revision: its number, kind, rollback source, message, served names."""

    number: int
    kind: str
    rollback_of: int | None
    message: str
    prompts: tuple[tuple[str, str], ...]  # name -> digest, sorted
    versions: tuple[tuple[str, int], ...]  # name -> the exporter's version number, sorted


def _sources(incoming: Mapping[str, Any]) -> list[_Source]:
    return [
        _Source(
            number=revision["number"],
            kind=revision.get("kind") or "publish",
            rollback_of=revision.get("rollback_of"),
            message=revision.get("message") or "",
            prompts=tuple(sorted((name, entry["digest"]) for name, entry in revision["prompts"].items())),
            versions=tuple(sorted((name, entry["version"]) for name, entry in revision["prompts"].items())),
        )
        for revision in incoming["revisions"]
    ]


def _revision(
    slug: str, source: _Source, number: int, renumbered: Mapping[int, int], outcome: Outcome
) -> RevisionPlan:
    """``source`` as the target's revision ``number``; ``renumbered`` maps written source numbers.

    A served version keeps its number where the target's version of that number has the same
    digest after the apply (a restore); a rollback keeps its kind when its source is written too.
    """
    versions = []
    for (name, digest), (_, exported) in zip(source.prompts, source.versions, strict=True):
        after = outcome.versions(slug, name) or ()
        if exported <= len(after) and after[exported - 1] == digest:
            versions.append((name, exported))
    rollback_of = renumbered.get(source.rollback_of) if source.rollback_of is not None else None
    kind = "publish" if source.kind == "rollback" and rollback_of is None else source.kind
    return RevisionPlan(
        number, source.number, source.message, source.prompts, tuple(versions), kind, rollback_of
    )


def _existing(
    slug: str, name: str, incoming: Mapping[str, Any], target: TargetEnvironment, outcome: Outcome
) -> EnvironmentPlan:
    sources = _sources(incoming)
    last = target.last_revision
    current = sources[-1].prompts if sources else ()
    if current == target.served:
        return EnvironmentPlan(slug, name, "identical", "none", last, last)
    if not sources:
        warning = "the bundle has no revision of this environment; the target keeps its own"
        return EnvironmentPlan(slug, name, "changed", "none", last, last, warnings=(warning,))
    published = (_revision(slug, sources[-1], last + 1, {}, outcome),)
    problems = ("the target environment is archived (read-only)",) if target.archived else ()
    return EnvironmentPlan(slug, name, "changed", "publish", last, last + 1, published, problems=problems)


def plan_environment(
    slug: str, incoming: Mapping[str, Any], reader: StateReader, outcome: Outcome
) -> EnvironmentPlan:
    """An environment: a new one replays every bundle revision; an existing one gets the current one."""
    name = incoming["name"]
    target = reader.environment(slug, name)
    if target is None:
        renumbered: dict[int, int] = {}
        replayed = []
        for number, source in enumerate(_sources(incoming), start=1):
            replayed.append(_revision(slug, source, number, renumbered, outcome))
            renumbered[source.number] = number
        item = EnvironmentPlan(slug, name, "new", "create", None, len(replayed), tuple(replayed))
    else:
        item = _existing(slug, name, incoming, target, outcome)
    problems = tuple(
        f"revision {revision.source_number} serves {prompt!r} at {digest}, which the target will not "
        f"have after the import{outcome.why(slug, prompt)}"
        for revision in item.revisions
        for prompt, digest in revision.prompts
        if digest not in (outcome.versions(slug, prompt) or ())
    )
    return replace(item, problems=item.problems + problems)
