"""The target state a plan needs: ``state_query`` rounds, ``merge_state``, ``needed_target_digests``."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from anvil_bundle_worker.planning import (
    RENAME_INFIX,
    PlanError,
    merge_state,
    needed_target_digests,
    plan_import,
    state_query,
)
from anvil_bundle_worker.planning.testing import Exporter, TargetModel
from anvil_registry.bundles.schemas import ImportStateRequest

NOTHING = {"prompts": [], "prompt_sets": [], "environments": []}


def bundle() -> tuple[dict[str, Any], dict[str, Any]]:
    exporter = Exporter()
    exporter.prompt("shared/footer", "F")
    exporter.prompt("support/greeting", "Hello {{> shared:footer}}")
    exporter.prompt("support/farewell", "Bye")
    exporter.prompt_set("support", "app", ["farewell", "greeting"])
    exporter.publish("support", "prod", {"greeting": None})
    return exporter.export(environments=True)


def test_the_first_query_asks_for_every_object_the_manifest_names() -> None:
    manifest, _ = bundle()
    manifest["projects"][1]["prompt_sets"][0]["prompts"].append("local")  # a member outside the bundle
    query = state_query(manifest)
    assert query == {
        "projects": {
            "shared": {"prompts": ["footer"], "prompt_sets": [], "environments": []},
            "support": {
                "prompts": ["farewell", "greeting", "local"],
                "prompt_sets": ["app"],
                "environments": ["prod"],
            },
        }
    }
    ImportStateRequest.model_validate(query)


def test_a_complete_state_needs_no_more_query() -> None:
    manifest, _ = bundle()
    target = TargetModel()
    target.prompt("support/greeting", "mine")
    state = target.answer(state_query(manifest))
    assert state_query(manifest, state) == {"projects": {}}
    assert state["projects"]["shared"] is None


def test_a_partial_state_is_asked_only_for_what_it_lacks() -> None:
    manifest, _ = bundle()
    target = TargetModel()
    target.project("shared")
    target.project("support")
    partial = target.answer({"projects": {"shared": dict(NOTHING, prompts=["footer"]), "support": NOTHING}})
    assert state_query(manifest, partial) == {
        "projects": {
            "support": {"prompts": ["farewell", "greeting"], "prompt_sets": ["app"], "environments": ["prod"]}
        }
    }
    missing_project = target.answer({"projects": {"shared": dict(NOTHING, prompts=["footer"])}})
    assert list(state_query(manifest, missing_project)["projects"]) == ["support"]


def test_rename_candidates_are_asked_for_in_rounds_until_one_is_free() -> None:
    exporter, target = Exporter(), TargetModel()
    exporter.prompt("support/greeting", "A", "B")
    target.prompt("support/greeting", "A", "X")
    manifest, contents = exporter.export()
    hex8 = exporter.digest("support/greeting").removeprefix("sha256:")[:8]
    first = f"greeting{RENAME_INFIX}{hex8}"
    taken = [first] + [f"{first}-{n}" for n in range(2, 7)]
    for name in taken:
        target.prompt(f"support/{name}", "someone else's")
    state = target.answer(state_query(manifest))
    assert state_query(manifest, state) == {"projects": {}}  # strategy fail: no rename
    query = state_query(manifest, state, strategy="rename")
    assert query["projects"]["support"]["prompts"] == sorted(
        [first, f"{first}-2", f"{first}-3", f"{first}-4"]
    )
    state = merge_state(state, target.answer(query))
    query = state_query(manifest, state, strategy="rename")
    assert query["projects"]["support"]["prompts"] == sorted(f"{first}-{n}" for n in range(5, 9))
    state = merge_state(state, target.answer(query))
    assert state_query(manifest, state, strategy="rename") == {"projects": {}}
    plan = plan_import(manifest, state, strategy="rename", contents=contents)
    assert plan.prompts[0].rename_to == f"{first}-7"
    target.rounds = 0
    again = target.plan(manifest, contents, strategy="rename")
    assert (again.prompts[0].rename_to, again.expect) == (plan.prompts[0].rename_to, plan.expect)
    assert target.rounds == 3
    # An override asks for the candidates of its prompt only.
    assert state_query(manifest, state, overrides={"support/greeting": "rename"}) == {"projects": {}}


def test_planning_without_a_rename_candidate_in_the_state_is_a_plan_error() -> None:
    exporter, target = Exporter(), TargetModel()
    exporter.prompt("support/greeting", "A", "B")
    target.prompt("support/greeting", "A", "X")
    manifest, _ = exporter.export()
    state = target.answer(state_query(manifest))
    with pytest.raises(PlanError, match=r"no entry for rename candidate support/greeting\.import-"):
        plan_import(manifest, state, strategy="rename")


def test_merge_state_combines_answers_and_the_newer_says_whether_a_project_exists() -> None:
    first = {
        "organisation": {"slug": "prod", "name": "Prod"},
        "projects": {
            "a": {"name": "A", "prompts": {"x": None}, "prompt_sets": {}, "environments": {}},
            "b": None,
            "c": {"name": "C", "prompts": {}, "prompt_sets": {}, "environments": {}},
        },
    }
    x = {"head": 1, "archived": False, "versions": ["sha256:" + "1" * 64]}
    second = {
        "organisation": {"slug": "prod", "name": "Prod"},
        "projects": {
            "a": {
                "name": "A",
                "prompts": {"x": x, "y": None},
                "prompt_sets": {"s": None},
                "environments": {},
            },
            "b": {"name": "B", "prompts": {}, "prompt_sets": {}, "environments": {}},
            "c": None,
            "d": None,
        },
    }
    kept = copy.deepcopy(first)
    merged = merge_state(first, second)
    assert first == kept
    assert merged["organisation"] == {"slug": "prod", "name": "Prod"}
    assert merged["projects"]["a"]["prompts"] == {"x": x, "y": None}
    assert merged["projects"]["a"]["prompt_sets"] == {"s": None}
    assert merged["projects"]["b"] == second["projects"]["b"]
    assert merged["projects"]["c"] is None
    assert merged["projects"]["d"] is None


def test_needed_target_digests_are_the_heads_of_fast_forwards_and_conflicts() -> None:
    exporter, target = Exporter(), TargetModel()
    exporter.prompt("support/ahead", "A", "B")
    exporter.prompt("support/diverged", "A", "B")
    exporter.prompt("support/same", "A")
    exporter.prompt("support/new", "N")
    exporter.prompt("support/empty", "E")
    ahead = target.prompt("support/ahead", "A")
    diverged = target.prompt("support/diverged", "A", "X")
    target.prompt("support/same", "A")
    target.prompt("support/empty")
    manifest, _ = exporter.export()
    state = target.state_for(manifest)
    assert needed_target_digests(manifest, state) == sorted([ahead[0], diverged[1]])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda s: s.pop("organisation"), "must be the import-state answer"),
        (lambda s: s["projects"].pop("support"), "no entry for project 'support'"),
        (
            lambda s: s["projects"]["support"]["prompts"].pop("greeting"),
            "no entry for prompt support/greeting",
        ),
        (lambda s: s["projects"]["support"]["prompt_sets"].pop("app"), "no entry for prompt set support/app"),
        (
            lambda s: s["projects"]["support"]["environments"].pop("prod"),
            "no entry for environment support/prod",
        ),
        (lambda s: s["projects"]["support"]["prompts"]["greeting"].update(head=3), "head 3 but 1 versions"),
        (lambda s: s["projects"]["support"]["prompts"]["greeting"].pop("versions"), "malformed"),
        (lambda s: s["projects"]["support"]["environments"]["prod"].pop("prompts"), "malformed"),
    ],
    ids=[
        "no-organisation",
        "no-project",
        "no-prompt",
        "no-set",
        "no-environment",
        "bad-head",
        "no-versions",
        "bad-env",
    ],
)
def test_an_incomplete_or_malformed_state_is_a_plan_error(damage: Any, message: str) -> None:
    manifest, _ = bundle()
    target = TargetModel()
    target.prompt("support/greeting", "Hello")
    target.prompt_set("support", "app", ["greeting"])
    target.environment("support", "prod", {})
    state = target.state_for(manifest)
    damage(state)
    with pytest.raises(PlanError, match=message):
        plan_import(manifest, state)


def test_a_manifest_that_is_not_json_data_is_a_plan_error() -> None:
    manifest, _ = bundle()
    state = TargetModel().state_for(manifest)
    manifest["organisation"]["name"] = float("nan")
    with pytest.raises(PlanError, match="not canonical JSON data"):
        plan_import(manifest, state)
