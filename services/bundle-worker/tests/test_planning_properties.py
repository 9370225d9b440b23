"""Properties of import planning over generated exporters and targets (hypothesis).

Each example builds an exporting organisation (prompts with histories that repeat content,
partials, sets, environments with revisions) and a target that holds some of it, part of it,
a diverged copy or nothing, then plans with every strategy and checks the invariants: an
applicable plan applies with the registry's rules, after which planning the same bundle again
changes nothing; a plan survives its JSON; the body only writes what ``expect`` vouches for.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field

import pytest

# hypothesis is a development requirement (requirements-dev.txt); without it these properties skip.
pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from anvil_bundle_worker.planning import (
    STRATEGIES,
    PlanNotApplicable,
    plan_from_json,
    plan_to_apply,
    rename_candidates,
)
from anvil_bundle_worker.planning.testing import Exporter, TargetModel
from anvil_registry.bundles.schemas import ImportCreate
from anvil_wire.prompts import is_prompt_name

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TEXTS = ["one", "two", "three", "four"]  # few texts, so content repeats and histories meet
IMPORT_ID = "5e0c7d8a-2b1f-4c3d-9e8f-7a6b5c4d3e2f"


@dataclass
class Scenario:
    histories: dict[str, list[str]]  # "project/name" -> texts, oldest first
    archived: set[str] = field(default_factory=set)
    sets: dict[str, list[str]] = field(default_factory=dict)  # "project/set" -> member names
    environments: dict[str, list[dict[str, int]]] = field(default_factory=dict)  # "project/env" -> revisions
    target: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # key -> (shape, extra texts)
    target_sets: dict[str, list[str]] = field(default_factory=dict)
    target_environments: set[str] = field(default_factory=set)
    history: str = "full"


KEYS = ["p/a", "p/b", "p/c", "q/a", "q/d"]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=5, unique=True))
    histories: dict[str, list[str]] = {}
    for index, key in enumerate(keys):
        texts = draw(st.lists(st.sampled_from(TEXTS), min_size=1, max_size=4))
        earlier = [k for k in keys[:index] if k.split("/")[0] == key.split("/")[0]]
        if earlier and draw(st.booleans()):
            # A partial to an earlier prompt of the same project, unpinned or pinned to version 1.
            name = draw(st.sampled_from(earlier)).split("/")[1]
            texts[-1] += draw(st.sampled_from([f" {{{{> {name}}}}}", f" {{{{> {name}@1}}}}"]))
        histories[key] = texts
    scenario = Scenario(histories, history=draw(st.sampled_from(["full", "latest"])))
    scenario.archived = set(draw(st.lists(st.sampled_from(keys), max_size=1)))
    for slug in sorted({k.split("/")[0] for k in keys}):
        names = [k.split("/")[1] for k in keys if k.startswith(f"{slug}/")]
        if draw(st.booleans()):
            scenario.sets[f"{slug}/app"] = draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
        if draw(st.booleans()):
            scenario.environments[f"{slug}/prod"] = [
                {
                    n: draw(st.integers(1, 4))
                    for n in draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
                }
                for _ in range(draw(st.integers(1, 3)))
            ]
    for key in keys:
        shape = draw(
            st.sampled_from(["absent", "prefix", "prefix", "diverged", "diverged", "empty", "ahead"])
        )
        extra = ["mine", "theirs", "other"] if shape == "diverged" else [*TEXTS, "other"]
        scenario.target[key] = (shape, draw(st.lists(st.sampled_from(extra), min_size=1, max_size=2)))
    for name in scenario.sets:
        if draw(st.booleans()):
            scenario.target_sets[name] = draw(
                st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=2, unique=True)
            )
    scenario.target_environments = {name for name in scenario.environments if draw(st.booleans())}
    return scenario


def build(scenario: Scenario) -> tuple[Exporter, TargetModel]:
    exporter, target = Exporter(), TargetModel()
    for key, texts in scenario.histories.items():
        exporter.prompt(key, *texts, archived=key in scenario.archived)
    for name, members in scenario.sets.items():
        slug, _, set_name = name.partition("/")
        exporter.prompt_set(slug, set_name, members)
    for name, revisions in scenario.environments.items():
        slug, _, env = name.partition("/")
        for served in revisions:
            exporter.publish(
                slug,
                env,
                {n: min(v, len(exporter.projects[slug].prompts[n].versions)) for n, v in served.items()},
            )
    for key, (shape, extra) in scenario.target.items():
        digests = [
            exporter.digest(key, n)
            for n in range(
                1, len(exporter.projects[key.split("/")[0]].prompts[key.split("/")[1]].versions) + 1
            )
        ]
        if shape == "empty":
            target.prompt(key)
        elif shape == "prefix":
            target.prompt(key, *digests[: max(1, len(digests) - len(extra))])
        elif shape == "diverged":
            target.prompt(key, *digests[:1], *extra)
        elif shape == "ahead":
            target.prompt(key, *digests, *extra)
    for name, members in scenario.target_sets.items():
        slug, _, set_name = name.partition("/")
        existing = [m for m in members if m in target.projects.get(slug, {}).get("prompts", {})]
        target.prompt_set(slug, set_name, existing)
    for name in sorted(scenario.target_environments):
        slug, _, env = name.partition("/")
        prompts = target.projects.get(slug, {}).get("prompts", {})
        target.environment(
            slug, env, {n: p["versions"][0] for n, p in sorted(prompts.items()) if p["versions"]}
        )
    return exporter, target


@settings(SETTINGS, max_examples=150)
@given(scenarios(), st.sampled_from(STRATEGIES))
def test_an_applicable_plan_applies_and_planning_again_changes_nothing(
    scenario: Scenario, strategy: str
) -> None:
    exporter, target = build(scenario)
    manifest, contents = exporter.export(history=scenario.history, environments=True)
    plan = target.plan(manifest, contents, strategy=strategy)
    event(f"applicable: {plan.applicable}")
    for item in plan.prompts:
        event(f"prompt {item.status} -> {item.action}")
        event(f"{len(item.problems)} problems, {len(item.warnings)} warnings")
    for env in plan.environments:
        event(f"environment {env.status} -> {env.action}")
    assert plan_from_json(json.loads(json.dumps(plan.to_json()))) == plan
    if not plan.applicable:
        assert plan.reasons
        with pytest.raises(PlanNotApplicable):
            plan_to_apply(plan, manifest, contents, import_id=IMPORT_ID)
        return
    body = plan_to_apply(plan, manifest, contents, import_id=IMPORT_ID)
    assert ImportCreate.model_validate(body).model_dump(mode="json") == body
    expected = plan.expect["projects"]
    for item in body["prompts"]:
        assert item["name"] in expected[item["project"]]["prompts"]
    for item in body["environments"]:
        assert item["name"] in expected[item["project"]]["environments"]
    target.apply(body)
    again = target.plan(manifest, contents, strategy=strategy)
    assert again.applicable, again.reasons
    assert not again.has_changes
    assert {p.action for p in again.prompts} <= {"none", "skip"}
    assert {s.action for s in again.prompt_sets} <= {"none"}
    assert {e.action for e in again.environments} <= {"none"}


@SETTINGS
@given(scenarios())
def test_a_restore_into_an_empty_target_reproduces_everything(scenario: Scenario) -> None:
    exporter, _ = build(scenario)
    manifest, contents = exporter.export(history=scenario.history, environments=True)
    target = TargetModel()
    plan = target.plan(manifest, contents)
    assert plan.applicable, plan.reasons
    assert {p.status for p in plan.prompts} == {"new"}
    target.apply_plan(plan, manifest, contents)
    for project in manifest["projects"]:
        for prompt in project["prompts"]:
            got = target.projects[project["slug"]]["prompts"][prompt["name"]]["versions"]
            # Only listed versions travel; a restore of a full export reproduces every one.
            listed = [v["digest"] for v in prompt["versions"]]
            assert got == [d for i, d in enumerate(listed) if i == 0 or listed[i - 1] != d]
            if scenario.history == "full":
                assert got == listed
        for env in project["environments"]:
            revisions = target.projects[project["slug"]]["environments"][env["name"]]["revisions"]
            assert [r["prompts"] for r in revisions] == [
                {n: e["digest"] for n, e in r["prompts"].items()} for r in env["revisions"]
            ]
    again = target.plan(manifest, contents)
    assert not again.has_changes
    assert {p.action for p in again.prompts} == {"none"}


@SETTINGS
@given(
    st.lists(
        st.text(string.ascii_lowercase + string.digits + "._-", min_size=1, max_size=80),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from(TEXTS),
)
def test_rename_candidates_follow_the_name_grammar(segments: list[str], text: str) -> None:
    name = "/".join(s if s[0].isalnum() else "x" + s for s in segments)[:200].rstrip("/")
    segments = name.split("/")
    if not is_prompt_name(name):
        return
    exporter = Exporter()
    digest = exporter.prompt("p/x", text)[0]
    candidates = [c for _, c in zip(range(5), rename_candidates(name, digest), strict=False)]
    assert len(set(candidates)) == len(candidates)
    for candidate in candidates:
        assert is_prompt_name(candidate)
        assert candidate != name
        assert candidate.split("/")[:-1] == segments[:-1]
        assert digest.removeprefix("sha256:")[:8] in candidate
