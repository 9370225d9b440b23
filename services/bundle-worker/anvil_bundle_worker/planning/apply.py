"""``plan_to_apply``: the apply body (interface B3) of an applicable plan."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from .model import Plan, PlanError, PlanNotApplicable, PromptPlan
from .plan import bundle_digest

__all__ = ["plan_to_apply"]


def _by_key(manifest: Mapping[str, Any], member: str, key: str = "name") -> dict[tuple[str, str], Any]:
    return {(p["slug"], item[key]): item for p in manifest["projects"] for item in p[member]}


def _ordered(written: Sequence[PromptPlan], dependencies: Sequence[Mapping[str, Any]]) -> list[PromptPlan]:
    """Plan order, except that a prompt comes after the written prompts its new versions refer to.

    The registry checks every reference of the whole body before it writes, so the order is not
    needed for correctness; it makes the body read (and write) dependencies first. A cycle is
    broken where the walk finds it. Linear in prompts and dependencies.
    """
    by_name = {(p.project, p.name): p for p in written}
    needs: dict[tuple[str, str], list[tuple[str, str]]] = {key: [] for key in by_name}
    for dep in dependencies:
        source = (dep["from"]["project"], dep["from"]["prompt"])
        to = (dep["to"]["project"], dep["to"]["prompt"])
        item = by_name.get(source)
        # A renamed dependency is written under another name; the reference keeps its old target.
        if item is None or to not in by_name or to == source or by_name[to].rename_to is not None:
            continue
        if any(v.number == dep["from"]["version"] for v in item.versions):
            needs[source].append(to)
    ordered: list[PromptPlan] = []
    seen: set[tuple[str, str]] = set()
    for start in by_name:
        if start in seen:
            continue
        seen.add(start)
        stack = [(start, iter(needs[start]))]
        while stack:
            key, pending = stack[-1]
            following = next((n for n in pending if n not in seen), None)
            if following is None:
                stack.pop()
                ordered.append(by_name[key])
            else:
                seen.add(following)
                stack.append((following, iter(needs[following])))
    return ordered


def _prompt(item: PromptPlan, incoming: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "project": item.project,
        "name": item.written_name,
        "description": incoming.get("description") or "",
        "versions": [{"digest": v.digest, "message": v.message} for v in item.versions],
        # A prompt the import creates keeps the exporter's state (a restored backup).
        "archived": item.action in ("create", "rename") and bool(incoming.get("archived")),
    }


def _contents(prompts: Sequence[PromptPlan], contents: Mapping[str, Any]) -> dict[str, Any]:
    needed: dict[str, Any] = {}
    for item in prompts:
        for version in item.versions:
            if version.digest not in contents:
                raise PlanError(
                    f"contents lack {version.digest}, needed by {item.key} version {version.number}"
                )
            needed[version.digest] = contents[version.digest]
    return dict(sorted(needed.items()))


def plan_to_apply(
    plan: Plan, manifest: Mapping[str, Any], contents: Mapping[str, Any], *, import_id: str
) -> dict[str, Any]:
    """The apply body for ``plan``: only what it writes, with only the contents those versions need."""
    try:
        uuid.UUID(import_id)
    except (TypeError, ValueError, AttributeError) as exc:
        raise PlanError(f"import_id {import_id!r} is not a UUID") from exc
    if not plan.applicable:
        raise PlanNotApplicable("the plan is not applicable: " + "; ".join(plan.reasons))
    if bundle_digest(manifest) != plan.bundle:
        raise PlanError(f"the plan was made for bundle {plan.bundle}, not for this manifest")
    projects = {p["slug"]: p for p in manifest["projects"]}
    prompts, sets, environments = (_by_key(manifest, m) for m in ("prompts", "prompt_sets", "environments"))
    written = _ordered([p for p in plan.prompts if p.versions], manifest["dependencies"])
    return {
        "import_id": import_id,
        "origin": {"instance": manifest["exporter"]["instance"], "bundle": plan.bundle},
        "expect": plan.expect,
        "projects": [
            {"slug": p.slug, "name": p.name, "description": projects[p.slug].get("description") or ""}
            for p in plan.projects
            if p.action == "create"
        ],
        "prompts": [_prompt(p, prompts[(p.project, p.name)]) for p in written],
        "prompt_sets": [
            {
                "project": s.project,
                "name": s.name,
                "description": sets[(s.project, s.name)].get("description") or "",
                "prompts": list(s.members),
            }
            for s in plan.prompt_sets
            if s.action != "none"
        ],
        "environments": [
            {
                "project": e.project,
                "name": e.name,
                "description": environments[(e.project, e.name)].get("description") or "",
                "revisions": [
                    {
                        "prompts": dict(r.prompts),
                        "versions": dict(r.versions),
                        "kind": r.kind,
                        "rollback_of": r.rollback_of,
                        "message": r.message,
                    }
                    for r in e.revisions
                ],
            }
            for e in plan.environments
            if e.action != "none"
        ],
        "contents": _contents(written, contents),
    }
