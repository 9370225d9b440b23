"""Reading a stored plan back from its JSON (``Plan.to_json``), e.g. to apply a held plan later."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model import (
    EnvironmentPlan,
    Head,
    Plan,
    PlanError,
    ProjectHeads,
    ProjectPlan,
    PromptPlan,
    RevisionPlan,
    SetPlan,
    VersionRef,
)

__all__ = ["plan_from_json"]


def _head(data: Mapping[str, Any] | None) -> Head | None:
    return None if data is None else Head(number=data["number"], digest=data["digest"])


def _prompt(data: Mapping[str, Any]) -> PromptPlan:
    return PromptPlan(
        project=data["project"],
        name=data["name"],
        role=data["role"],
        status=data["status"],
        action=data["action"],
        strategy=data["strategy"],
        incoming=Head(data["incoming"]["number"], data["incoming"]["digest"]),
        target=_head(data["target"]),
        rename_to=data["rename_to"],
        versions=tuple(VersionRef(v["number"], v["digest"], v["message"]) for v in data["versions"]),
        diff=data["diff"],
        problems=tuple(data["problems"]),
        warnings=tuple(data["warnings"]),
    )


def _set(data: Mapping[str, Any]) -> SetPlan:
    target = data["target_members"]
    return SetPlan(
        project=data["project"],
        name=data["name"],
        status=data["status"],
        action=data["action"],
        members=tuple(data["members"]),
        target_members=None if target is None else tuple(target),
        changes=tuple(data["changes"]),
        problems=tuple(data["problems"]),
        warnings=tuple(data["warnings"]),
    )


def _environment(data: Mapping[str, Any]) -> EnvironmentPlan:
    revisions = tuple(
        RevisionPlan(
            number=r["number"],
            source_number=r["source_number"],
            message=r["message"],
            prompts=tuple(sorted(r["prompts"].items())),
            versions=tuple(sorted(r["versions"].items())),
            kind=r["kind"],
            rollback_of=r["rollback_of"],
        )
        for r in data["revisions"]
    )
    return EnvironmentPlan(
        project=data["project"],
        name=data["name"],
        status=data["status"],
        action=data["action"],
        from_revision=data["from_revision"],
        to_revision=data["to_revision"],
        revisions=revisions,
        problems=tuple(data["problems"]),
        warnings=tuple(data["warnings"]),
    )


def _heads(slug: str, data: Mapping[str, Any]) -> ProjectHeads:
    return ProjectHeads(
        slug=slug,
        exists=data["exists"],
        prompts=tuple(sorted(data["prompts"].items())),
        prompt_sets=tuple(sorted(data["prompt_sets"].items())),
        environments=tuple(sorted(data["environments"].items())),
    )


def plan_from_json(data: Mapping[str, Any]) -> Plan:
    """Rebuild a ``Plan`` from ``Plan.to_json()``; derived members (summary, reasons) are recomputed."""
    try:
        return Plan(
            bundle=data["bundle"],
            exporter=data["exporter"],
            organisation=data["organisation"],
            strategy=data["strategy"],
            overrides=tuple(sorted(data["overrides"].items())),
            heads=tuple(_heads(slug, h) for slug, h in sorted(data["heads"]["projects"].items())),
            projects=tuple(
                ProjectPlan(
                    p["slug"], p["name"], p["status"], p["action"], tuple(p["problems"]), tuple(p["warnings"])
                )
                for p in data["projects"]
            ),
            prompts=tuple(_prompt(p) for p in data["prompts"]),
            prompt_sets=tuple(_set(s) for s in data["prompt_sets"]),
            environments=tuple(_environment(e) for e in data["environments"]),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise PlanError(f"not an import plan document: {exc!r}") from exc
