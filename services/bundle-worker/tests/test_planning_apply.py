"""The apply body (interface B3) of a plan, its ``expect``, the plan's JSON and re-imports."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from anvil_bundle_worker.planning import (
    Plan,
    PlanError,
    bundle_digest,
    plan_from_json,
    plan_import,
    plan_to_apply,
)
from anvil_bundle_worker.planning.testing import Exporter, TargetModel, TargetRefused
from anvil_registry.bundles.schemas import ImportCreate
from anvil_wire.canonical import digest_of

IMPORT_ID = "0b6f3a8e-5d1c-4a55-8f77-1f3b2a9c4d10"


def everything() -> Exporter:
    """Two projects, a cross-project partial, a set, an environment with history."""
    exporter = Exporter()
    exporter.project("support", description="Support bots")
    exporter.prompt("shared/footer", "F1", "F2")
    exporter.prompt("support/greeting", "Hello", "Hello {{> shared:footer@2}}", description="greets")
    exporter.prompt("support/farewell", "Bye")
    exporter.prompt_set("support", "app", ["farewell", "greeting"])
    exporter.publish("support", "prod", {"greeting": 1})
    exporter.publish("support", "prod", {"greeting": 2, "farewell": 1}, message="both")
    return exporter


def test_the_apply_body_fits_the_registry_schema_exactly() -> None:
    exporter, target = everything(), TargetModel()
    manifest, contents = exporter.export(environments=True)
    plan = target.plan(manifest, contents)
    body = plan_to_apply(plan, manifest, contents, import_id=IMPORT_ID)
    assert ImportCreate.model_validate(body).model_dump(mode="json") == body
    assert list(body) == [
        "import_id",
        "origin",
        "expect",
        "projects",
        "prompts",
        "prompt_sets",
        "environments",
        "contents",
    ]
    assert body["origin"] == {"instance": "https://registry-a.example", "bundle": digest_of(manifest)}
    assert body["projects"] == [
        {"slug": "shared", "name": "Shared", "description": ""},
        {"slug": "support", "name": "Support", "description": "Support bots"},
    ]
    assert body["prompts"][2] == {
        "project": "support",
        "name": "greeting",
        "description": "greets",
        "versions": [
            {"digest": exporter.digest("support/greeting", 1), "message": "v1"},
            {"digest": exporter.digest("support/greeting", 2), "message": "v2"},
        ],
        "archived": False,
    }
    assert body["contents"] == contents
    assert list(body["contents"]) == sorted(body["contents"])


def test_the_body_holds_only_what_the_plan_writes() -> None:
    exporter, target = everything(), TargetModel()
    footer = target.prompt("shared/footer", "F1", "F2")
    greeting = target.prompt("support/greeting", "Hello")
    target.prompt("support/farewell", "Bye")
    target.prompt_set("support", "app", ["farewell", "greeting"])
    manifest, contents = exporter.export(environments=True)
    plan = target.plan(manifest, contents)
    body = plan_to_apply(plan, manifest, contents, import_id=IMPORT_ID)
    assert body["projects"] == []
    assert body["prompt_sets"] == []
    latest = exporter.digest("support/greeting")
    assert body["prompts"] == [
        {
            "project": "support",
            "name": "greeting",
            "description": "greets",
            "versions": [{"digest": latest, "message": "v2"}],
            "archived": False,
        }
    ]
    assert list(body["contents"]) == [latest]
    assert [e["name"] for e in body["environments"]] == ["prod"]
    assert footer[1] not in body["contents"]
    assert greeting[0] not in body["contents"]


def test_expect_holds_every_head_the_plan_read() -> None:
    exporter, target = everything(), TargetModel()
    target.prompt("shared/footer", "F1", "theirs")
    target.prompt("support/greeting", "Hello")
    target.prompt_set("support", "app", ["greeting"])
    target.prompt_set("support", "app", ["greeting"])  # row version 2
    manifest, contents = exporter.export(environments=True)
    plan = target.plan(manifest, contents, strategy="rename")
    renamed = next(p.rename_to for p in plan.prompts if p.name == "footer")
    assert plan.expect == {
        "projects": {
            "shared": {
                "exists": True,
                "prompts": {"footer": 2, renamed: 0},
                "prompt_sets": {},
                "environments": {},
            },
            "support": {
                "exists": True,
                "prompts": {"farewell": 0, "greeting": 1},
                "prompt_sets": {"app": 2},
                "environments": {"prod": -1},
            },
        }
    }
    assert plan.to_json()["heads"] == plan.expect
    assert ImportCreate.model_validate(plan_to_apply(plan, manifest, contents, import_id=IMPORT_ID))


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.prompt("support/greeting", "edited meanwhile"),
        lambda t: t.prompt("support/farewell", "created meanwhile"),
        lambda t: t.prompt_set("support", "app", ["greeting"]),
        lambda t: t.environment("support", "prod", {}),
        lambda t: t.project("brand-new-unrelated") and t.project("shared"),
    ],
    ids=["prompt-edited", "prompt-created", "set-changed", "environment-created", "project-created"],
)
def test_a_change_to_anything_the_plan_read_makes_the_apply_fail(change: Any) -> None:
    exporter, target = everything(), TargetModel()
    target.prompt("support/greeting", "Hello")
    target.prompt_set("support", "app", ["greeting"])
    manifest, contents = exporter.export(environments=True)
    plan = target.plan(manifest, contents)
    change(target)
    before = json.dumps(target.projects, sort_keys=True)
    with pytest.raises(TargetRefused, match="import-target-changed"):
        target.apply_plan(plan, manifest, contents)
    assert json.dumps(target.projects, sort_keys=True) == before


def test_reimporting_the_same_bundle_is_a_noop() -> None:
    exporter, target = everything(), TargetModel()
    manifest, contents = exporter.export(environments=True)
    target.apply_plan(target.plan(manifest, contents), manifest, contents)
    before = json.dumps(target.projects, sort_keys=True)
    plan = target.plan(manifest, contents)
    assert {p.action for p in plan.projects} == {"none"}
    assert {p.action for p in plan.prompts} == {"none"}
    assert {s.action for s in plan.prompt_sets} == {"none"}
    assert {e.action for e in plan.environments} == {"none"}
    assert plan.applicable
    assert not plan.has_changes
    assert plan.to_json()["changes"] is False
    body = plan_to_apply(plan, manifest, contents, import_id=IMPORT_ID)
    assert [body[k] for k in ("projects", "prompts", "prompt_sets", "environments", "contents")] == [
        [],
        [],
        [],
        [],
        {},
    ]
    target.apply(body)
    assert json.dumps(target.projects, sort_keys=True) == before


def test_a_plan_that_is_not_applicable_round_trips_too() -> None:
    exporter, target = everything(), TargetModel()
    target.prompt("shared/footer", "theirs")
    manifest, contents = exporter.export(environments=True)
    plan = target.plan(manifest, contents, overrides={"support/farewell": "skip"})
    assert not plan.applicable
    again = plan_from_json(json.loads(json.dumps(plan.to_json())))
    assert again == plan
    assert again.reasons == plan.reasons


def test_the_plan_json_round_trips() -> None:
    exporter, target = everything(), TargetModel()
    target.prompt("shared/footer", "F1", "theirs")
    target.prompt("support/farewell")
    manifest, contents = exporter.export(environments=True)
    plan = target.plan(manifest, contents, strategy="rename", overrides={"support/greeting": "overwrite"})
    assert plan.applicable
    stored = json.loads(json.dumps(plan.to_json()))
    again = plan_from_json(stored)
    assert again == plan
    assert again.to_json() == stored
    assert plan_to_apply(again, manifest, contents, import_id=IMPORT_ID) == plan_to_apply(
        plan, manifest, contents, import_id=IMPORT_ID
    )


def test_the_plan_json_has_a_stable_shape() -> None:
    exporter, target = everything(), TargetModel()
    manifest, contents = exporter.export(environments=True)
    data = target.plan(manifest, contents).to_json()
    assert list(data) == [
        "bundle",
        "exporter",
        "organisation",
        "strategy",
        "overrides",
        "applicable",
        "changes",
        "reasons",
        "warnings",
        "summary",
        "heads",
        "projects",
        "prompts",
        "prompt_sets",
        "environments",
    ]
    assert (data["bundle"], data["exporter"], data["organisation"]) == (
        digest_of(manifest),
        "https://registry-a.example",
        "prod",
    )
    assert list(data["projects"][0]) == ["key", "slug", "name", "status", "action", "problems", "warnings"]
    assert list(data["prompts"][0]) == [
        "key",
        "project",
        "name",
        "role",
        "status",
        "action",
        "strategy",
        "rename_to",
        "target",
        "incoming",
        "versions",
        "diff",
        "problems",
        "warnings",
    ]
    assert list(data["prompt_sets"][0]) == [
        "key",
        "project",
        "name",
        "status",
        "action",
        "members",
        "target_members",
        "changes",
        "problems",
        "warnings",
    ]
    assert list(data["environments"][0]) == [
        "key",
        "project",
        "name",
        "status",
        "action",
        "from_revision",
        "to_revision",
        "revisions",
        "problems",
        "warnings",
    ]
    assert list(data["environments"][0]["revisions"][0]) == [
        "number",
        "source_number",
        "kind",
        "rollback_of",
        "message",
        "prompts",
        "versions",
    ]
    assert data["summary"]["prompts"] == {
        "statuses": {"new": 3, "identical": 0, "fast-forward": 0, "conflict": 0},
        "actions": {
            "create": 3,
            "append": 0,
            "overwrite": 0,
            "rename": 0,
            "skip": 0,
            "none": 0,
            "blocked": 0,
        },
        "versions": 5,
    }
    assert [p["key"] for p in data["prompts"]] == ["shared/footer", "support/farewell", "support/greeting"]


@pytest.mark.parametrize(
    "damage",
    [lambda d: d.pop("heads"), lambda d: d["prompts"][0].pop("incoming"), lambda d: d.update(projects=None)],
    ids=["no-heads", "no-incoming", "projects-null"],
)
def test_plan_from_json_refuses_what_is_not_a_plan(damage: Any) -> None:
    exporter, target = everything(), TargetModel()
    manifest, contents = exporter.export()
    data = target.plan(manifest, contents).to_json()
    damage(data)
    with pytest.raises(PlanError, match="not an import plan document"):
        plan_from_json(data)


def test_plan_to_apply_refuses_bad_inputs() -> None:
    exporter, target = everything(), TargetModel()
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents)
    with pytest.raises(PlanError, match="is not a UUID"):
        plan_to_apply(plan, manifest, contents, import_id="plan-1")
    other, _ = (
        Exporter().export() if False else (dict(manifest, organisation={"slug": "x", "name": "X"}), None)
    )
    with pytest.raises(PlanError, match="the plan was made for bundle"):
        plan_to_apply(plan, other, contents, import_id=IMPORT_ID)
    missing = dict(contents)
    missing.pop(exporter.digest("support/farewell"))
    with pytest.raises(PlanError, match=r"contents lack sha256:\w+, needed by support/farewell version 1"):
        plan_to_apply(plan, manifest, missing, import_id=IMPORT_ID)


def test_the_bundle_digest_is_the_manifests_and_a_given_one_must_match() -> None:
    exporter, target = everything(), TargetModel()
    manifest, _contents = exporter.export()
    state = target.state_for(manifest)
    assert bundle_digest(manifest) == digest_of(manifest)
    assert plan_import(manifest, state, bundle=digest_of(manifest)).bundle == digest_of(manifest)
    with pytest.raises(PlanError, match="does not match the manifest"):
        plan_import(manifest, state, bundle="sha256:" + "0" * 64)


def test_dependencies_come_first_in_the_body() -> None:
    exporter = Exporter()
    exporter.prompt("a/top", "{{> b:middle}} top")
    exporter.prompt("b/middle", "{{> c:bottom@1}} middle")
    exporter.prompt("c/bottom", "bottom")
    exporter.prompt("a/alone", "alone")
    manifest, contents = exporter.export()
    target = TargetModel()
    body = target.apply_plan(target.plan(manifest, contents), manifest, contents)
    assert [f"{p['project']}/{p['name']}" for p in body["prompts"]] == [
        "a/alone",
        "c/bottom",
        "b/middle",
        "a/top",
    ]


def test_a_reference_cycle_keeps_every_prompt_once() -> None:
    exporter = Exporter()
    exporter.prompt("a/one", "one")
    exporter.prompt("a/two", "{{> one}} two")
    exporter.prompt("a/one", "{{> two}} one again")
    manifest, contents = exporter.export()
    target = TargetModel()
    body = target.apply_plan(target.plan(manifest, contents), manifest, contents)
    assert sorted(p["name"] for p in body["prompts"]) == ["one", "two"]


def test_a_restore_into_an_empty_target_reproduces_every_digest_and_the_revision_history() -> None:
    exporter = everything()
    exporter.prompt("support/retired", "R", archived=True)
    manifest, contents = exporter.export(environments=True)
    target = TargetModel()
    plan = target.plan(manifest, contents)
    assert isinstance(plan, Plan)
    assert plan.applicable
    body = target.apply_plan(plan, manifest, contents)
    assert ImportCreate.model_validate(body)
    for project in manifest["projects"]:
        for prompt in project["prompts"]:
            got = target.projects[project["slug"]]["prompts"][prompt["name"]]
            assert got["versions"] == [v["digest"] for v in prompt["versions"]]
            assert got["archived"] is prompt["archived"]
        for env in project["environments"]:
            revisions = target.projects[project["slug"]]["environments"][env["name"]]["revisions"]
            assert [r["prompts"] for r in revisions] == [
                {n: e["digest"] for n, e in r["prompts"].items()} for r in env["revisions"]
            ]
            assert [r["versions"] for r in revisions] == [
                {n: e["version"] for n, e in r["prompts"].items()} for r in env["revisions"]
            ]
    assert uuid.UUID(body["import_id"])
