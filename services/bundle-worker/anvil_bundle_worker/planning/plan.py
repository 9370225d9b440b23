"""``plan_import`` and the questions the worker asks before it: which state, which contents."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from anvil_wire.bundles.fastjson import canonical_bytes
from anvil_wire.canonical import sha256_digest

from .model import STRATEGIES, EnvironmentPlan, Plan, PlanError, PromptPlan, SetPlan
from .outcome import Outcome, check_dependencies
from .prompts import PromptPlanner, classify
from .sections import plan_environment, plan_project, plan_set
from .state import StateReader, as_query, manifest_names, missing_names

__all__ = ["bundle_digest", "needed_target_digests", "plan_import", "state_query"]


def bundle_digest(manifest: Mapping[str, Any], given: str | None = None) -> str:
    """The bundle digest (the SHA-256 of the manifest's canonical JSON); ``given`` must equal it."""
    try:
        computed = sha256_digest(canonical_bytes(manifest))
    except (TypeError, ValueError) as exc:
        raise PlanError(f"the manifest is not canonical JSON data: {exc}") from exc
    if given is not None and given != computed:
        raise PlanError(f"bundle digest {given} does not match the manifest, whose digest is {computed}")
    return computed


def _checked_overrides(
    manifest: Mapping[str, Any], strategy: str, overrides: Mapping[str, str] | None
) -> dict[str, str]:
    expected = ", ".join(STRATEGIES)
    if strategy not in STRATEGIES:
        raise PlanError(f"unknown strategy {strategy!r}; expected one of {expected}")
    keys = {f"{p['slug']}/{q['name']}" for p in manifest["projects"] for q in p["prompts"]}
    for key, value in (overrides or {}).items():
        if key not in keys:
            raise PlanError(f"override {key!r} names no prompt of the bundle (expected project/name)")
        if value not in STRATEGIES:
            raise PlanError(f"override {key!r}: unknown strategy {value!r}; expected one of {expected}")
    return dict(sorted((overrides or {}).items()))


def _writes(
    prompts: Sequence[PromptPlan], sets: Sequence[SetPlan], environments: Sequence[EnvironmentPlan]
) -> dict[str, list[str]]:
    """What the apply would write, by project slug (for messages)."""
    writes: dict[str, list[str]] = defaultdict(list)
    for prompt in prompts:
        if prompt.versions:
            writes[prompt.project].append(f"prompt {prompt.written_name}")
    for prompt_set in sets:
        if prompt_set.action != "none":
            writes[prompt_set.project].append(f"prompt set {prompt_set.name}")
    for environment in environments:
        if environment.action != "none":
            writes[environment.project].append(f"environment {environment.name}")
    return writes


def plan_import(
    manifest: Mapping[str, Any],
    state: Mapping[str, Any],
    *,
    strategy: str = "fail",
    overrides: Mapping[str, str] | None = None,
    contents: Mapping[str, Any] | None = None,
    target_contents: Mapping[str, Any] | None = None,
    bundle: str | None = None,
) -> Plan:
    """Plan importing a bundle (its validated manifest) into the target ``state`` (import-state) describes.

    ``contents`` (the bundle's, by digest) and ``target_contents`` (``needed_target_digests``)
    only feed the diffs. Raises ``PlanError`` for an unknown strategy or override, a state that
    lacks an object the plan needs (see ``state_query``) or a ``bundle`` digest that is not the
    manifest's.
    """
    digest = bundle_digest(manifest, bundle)
    checked = _checked_overrides(manifest, strategy, overrides)
    reader = StateReader(state)
    planner = PromptPlanner(
        manifest,
        reader,
        strategy=strategy,
        overrides=checked,
        contents=contents or {},
        target_contents=target_contents or {},
    )
    projects = manifest["projects"]
    prompts = tuple(planner.plan(p["slug"], q) for p in projects for q in p["prompts"])
    outcome = Outcome(reader, prompts)
    prompts = check_dependencies(manifest["dependencies"], prompts, outcome)
    sets = tuple(plan_set(p["slug"], s, reader, outcome) for p in projects for s in p["prompt_sets"])
    environments = tuple(
        plan_environment(p["slug"], e, reader, outcome) for p in projects for e in p["environments"]
    )
    writes = _writes(prompts, sets, environments)
    return Plan(
        bundle=digest,
        exporter=manifest["exporter"]["instance"],
        organisation=reader.organisation,
        strategy=strategy,
        overrides=tuple(checked.items()),
        heads=reader.heads(),
        projects=tuple(plan_project(p, reader, writes.get(p["slug"], ())) for p in projects),
        prompts=prompts,
        prompt_sets=sets,
        environments=environments,
    )


def state_query(
    manifest: Mapping[str, Any],
    state: Mapping[str, Any] | None = None,
    *,
    strategy: str = "fail",
    overrides: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The import-state request for what planning still needs; ``{"projects": {}}`` when complete."""
    names = manifest_names(manifest)
    if state is None:
        return as_query(names)
    missing = missing_names(names, state)
    if missing:
        return as_query(missing)
    planner = PromptPlanner(
        manifest,
        StateReader(state),
        strategy=strategy,
        overrides=_checked_overrides(manifest, strategy, overrides),
        contents={},
        target_contents={},
        probe=True,
    )
    for project in manifest["projects"]:
        for prompt in project["prompts"]:
            planner.plan(project["slug"], prompt)
    return as_query(planner.needed)


def needed_target_digests(manifest: Mapping[str, Any], state: Mapping[str, Any]) -> list[str]:
    """Target head digests whose content the diffs need (fast-forward and conflict prompts)."""
    reader = StateReader(state)
    digests = set()
    for project in manifest["projects"]:
        for prompt in project["prompts"]:
            target = reader.prompt(project["slug"], prompt["name"])
            status, _ = classify(prompt, target)
            if target is not None and target.digest is not None and status in ("fast-forward", "conflict"):
                digests.add(target.digest)
    return sorted(digests)
