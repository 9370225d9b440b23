"""Import planning of projects, prompt sets, environments and partial references (dependencies)."""

from __future__ import annotations

from anvil_bundle_worker.planning import EnvironmentPlan, Plan, PromptPlan, RevisionPlan, SetPlan
from anvil_bundle_worker.planning.testing import Exporter, TargetModel


def prompt_of(plan: Plan, key: str) -> PromptPlan:
    return next(p for p in plan.prompts if p.key == key)


def set_of(plan: Plan, key: str) -> SetPlan:
    return next(s for s in plan.prompt_sets if s.key == key)


def env_of(plan: Plan, key: str) -> EnvironmentPlan:
    return next(e for e in plan.environments if e.key == key)


def with_set() -> Exporter:
    exporter = Exporter()
    exporter.prompt("support/greeting", "G")
    exporter.prompt("support/farewell", "F")
    exporter.prompt_set("support", "app", ["greeting", "farewell"], description="the app")
    return exporter


# --- prompt sets ----------------------------------------------------------------------------


def test_a_new_set_is_created() -> None:
    exporter, target = with_set(), TargetModel()
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents)
    item = set_of(plan, "support/app")
    assert (item.status, item.action, item.members, item.target_members) == (
        "new",
        "create",
        ("farewell", "greeting"),
        None,
    )
    body = target.apply_plan(plan, manifest, contents)
    assert body["prompt_sets"] == [
        {"project": "support", "name": "app", "description": "the app", "prompts": ["farewell", "greeting"]}
    ]
    assert not target.plan(manifest, contents).has_changes


def test_a_set_with_other_members_is_replaced_whatever_the_strategy() -> None:
    exporter, target = with_set(), TargetModel()
    target.prompt("support/greeting", "G")
    target.prompt("support/local", "L")
    target.prompt_set("support", "app", ["greeting", "local"], description="the app")
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents)  # strategy fail: a set never conflicts
    item = set_of(plan, "support/app")
    assert (item.status, item.action, item.changes) == ("changed", "update", ("members",))
    assert item.target_members == ("greeting", "local")
    assert plan.expect["projects"]["support"]["prompt_sets"] == {"app": 1}
    target.apply_plan(plan, manifest, contents)
    assert target.projects["support"]["prompt_sets"]["app"]["prompts"] == ["farewell", "greeting"]


def test_a_set_with_another_description_is_replaced() -> None:
    exporter, target = with_set(), TargetModel()
    target.prompt("support/greeting", "G")
    target.prompt("support/farewell", "F")
    target.prompt_set("support", "app", ["greeting", "farewell"], description="old words")
    manifest, contents = exporter.export()
    item = set_of(target.plan(manifest, contents), "support/app")
    assert (item.status, item.action, item.changes) == ("changed", "update", ("description",))


def test_an_identical_set_is_left_alone() -> None:
    exporter, target = with_set(), TargetModel()
    target.prompt("support/greeting", "G")
    target.prompt("support/farewell", "F")
    target.prompt_set("support", "app", ["farewell", "greeting"], description="the app")
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents)
    assert (set_of(plan, "support/app").status, set_of(plan, "support/app").action) == ("identical", "none")
    assert not plan.has_changes


def test_a_set_member_that_will_not_exist_is_a_problem() -> None:
    exporter, target = with_set(), TargetModel()
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents, overrides={"support/farewell": "skip"})
    assert set_of(plan, "support/app").problems == (
        "member 'farewell' will not exist on the target after the import (the prompt is skipped)",
    )
    assert plan.reasons == (f"prompt set support/app: {set_of(plan, 'support/app').problems[0]}",)


def test_a_set_member_archived_on_the_target_is_a_problem() -> None:
    exporter, target = with_set(), TargetModel()
    target.prompt("support/farewell", "F", archived=True)
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents)
    assert set_of(plan, "support/app").problems == (
        "member 'farewell' is archived on the target; a set holds active prompts",
    )


def test_an_archived_target_set_cannot_be_replaced() -> None:
    exporter, target = with_set(), TargetModel()
    target.prompt_set("support", "app", ["greeting"], archived=True)
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents)
    assert set_of(plan, "support/app").problems == ("the target prompt set is archived (read-only)",)


def test_a_set_member_outside_the_bundle_is_read_from_the_target() -> None:
    exporter = Exporter()
    exporter.prompt("support/greeting", "G")
    exporter.prompt_set("support", "app", ["greeting"])
    manifest, contents = exporter.export()
    manifest["projects"][0]["prompt_sets"][0]["prompts"] = ["greeting", "local"]
    target = TargetModel()
    target.prompt("support/local", "L")
    plan = target.plan(manifest, contents)
    assert set_of(plan, "support/app").problems == ()
    assert plan.expect["projects"]["support"]["prompts"] == {"greeting": 0, "local": 1}
    target.apply_plan(plan, manifest, contents)


# --- environments ---------------------------------------------------------------------------


def with_environment() -> Exporter:
    exporter = Exporter()
    exporter.prompt("support/greeting", "G1", "G2", "G3")
    exporter.prompt("support/farewell", "F1")
    exporter.publish("support", "prod", {"greeting": 1}, message="first")
    exporter.publish("support", "prod", {"greeting": 2, "farewell": 1}, message="second")
    exporter.publish("support", "prod", {"greeting": 3, "farewell": 1}, message="third")
    return exporter


def test_a_new_environment_replays_every_revision_renumbered_from_1() -> None:
    exporter, target = with_environment(), TargetModel()
    manifest, contents = exporter.export(environments=True)
    plan = target.plan(manifest, contents)
    item = env_of(plan, "support/prod")
    assert (item.status, item.action, item.from_revision, item.to_revision) == ("new", "create", None, 3)
    g = [exporter.digest("support/greeting", n) for n in (1, 2, 3)]
    f = exporter.digest("support/farewell")
    assert item.revisions == (
        RevisionPlan(1, 1, "first", (("greeting", g[0]),), (("greeting", 1),)),
        RevisionPlan(
            2, 2, "second", (("farewell", f), ("greeting", g[1])), (("farewell", 1), ("greeting", 2))
        ),
        RevisionPlan(
            3, 3, "third", (("farewell", f), ("greeting", g[2])), (("farewell", 1), ("greeting", 3))
        ),
    )
    assert plan.expect["projects"]["support"]["environments"] == {"prod": -1}
    assert plan.summary["environments"]["revisions"] == 3
    body = target.apply_plan(plan, manifest, contents)
    assert body["environments"][0]["revisions"][1] == {
        "prompts": {"farewell": f, "greeting": g[1]},
        "versions": {"farewell": 1, "greeting": 2},
        "kind": "publish",
        "rollback_of": None,
        "message": "second",
    }
    assert target.projects["support"]["environments"]["prod"]["revisions"][-1]["prompts"] == {
        "farewell": f,
        "greeting": g[2],
    }
    again = env_of(target.plan(manifest, contents), "support/prod")
    assert (again.status, again.action, again.from_revision, again.to_revision) == ("identical", "none", 3, 3)


def test_an_existing_environment_gets_the_current_revision_as_one_new_revision() -> None:
    exporter, target = with_environment(), TargetModel()
    g = [exporter.digest("support/greeting", n) for n in (1, 2, 3)]
    target.prompt("support/greeting", *g[:2])
    target.environment(
        "support", "prod", {"greeting": g[0]}, {"greeting": g[1]}, {"greeting": g[0]}, {"greeting": g[1]}
    )
    manifest, contents = exporter.export(environments=True)
    plan = target.plan(manifest, contents)
    item = env_of(plan, "support/prod")
    f = exporter.digest("support/farewell")
    assert (item.status, item.action, item.from_revision, item.to_revision) == ("changed", "publish", 4, 5)
    assert item.revisions == (
        RevisionPlan(
            5, 3, "third", (("farewell", f), ("greeting", g[2])), (("farewell", 1), ("greeting", 3))
        ),
    )
    assert plan.expect["projects"]["support"]["environments"] == {"prod": 4}
    target.apply_plan(plan, manifest, contents)
    assert len(target.projects["support"]["environments"]["prod"]["revisions"]) == 5
    assert not target.plan(manifest, contents).has_changes


def test_a_served_version_whose_number_differs_on_the_target_is_served_by_digest() -> None:
    exporter, target = with_environment(), TargetModel()
    target.prompt("support/greeting", "mine", "other", exporter.digest("support/greeting", 1))
    manifest, contents = exporter.export(environments=True, history="latest")
    plan = target.plan(manifest, contents)
    assert next(p for p in plan.prompts if p.name == "greeting").action == "append"
    (revision,) = env_of(plan, "support/prod").revisions
    # greeting will be mine, other, G1, G3: its version 3 is not the exporter's version 3 (G3).
    assert revision.versions == (("farewell", 1),)
    target.apply_plan(plan, manifest, contents)
    served = target.answer(
        {"projects": {"support": {"prompts": [], "prompt_sets": [], "environments": ["prod"]}}}
    )
    assert served["projects"]["support"]["environments"]["prod"]["prompts"]["greeting"]["version"] == 4
    assert not target.plan(manifest, contents).has_changes


def test_a_rollback_keeps_its_kind_when_its_source_is_replayed_too() -> None:
    exporter = with_environment()
    exporter.roll_back("support", "prod", 1, message="undo")
    manifest, contents = exporter.export(environments=True)
    target = TargetModel()
    plan = target.plan(manifest, contents)
    last = env_of(plan, "support/prod").revisions[-1]
    assert (last.number, last.kind, last.rollback_of, last.message) == (4, "rollback", 1, "undo")
    body = target.apply_plan(plan, manifest, contents)
    assert body["environments"][0]["revisions"][-1]["kind"] == "rollback"
    latest, _ = exporter.export(environments=True, history="latest")
    (only,) = env_of(TargetModel().plan(latest, contents), "support/prod").revisions
    assert (only.number, only.kind, only.rollback_of) == (1, "publish", None)


def test_an_environment_serving_the_same_mapping_is_left_alone() -> None:
    exporter, target = with_environment(), TargetModel()
    digests = target.prompt("support/greeting", *(exporter.digest("support/greeting", n) for n in (1, 2, 3)))
    farewell = target.prompt("support/farewell", "F1")[0]
    target.environment("support", "prod", {"greeting": digests[2], "farewell": farewell})
    manifest, contents = exporter.export(environments=True, history="latest")
    plan = target.plan(manifest, contents)
    item = env_of(plan, "support/prod")
    assert (item.status, item.action, item.revisions) == ("identical", "none", ())
    assert not plan.has_changes


def test_an_environment_serving_a_skipped_prompt_is_a_problem() -> None:
    exporter, target = with_environment(), TargetModel()
    manifest, contents = exporter.export(environments=True, history="latest")
    plan = target.plan(manifest, contents, overrides={"support/farewell": "skip"})
    item = env_of(plan, "support/prod")
    f = exporter.digest("support/farewell")
    assert item.problems == (
        f"revision 3 serves 'farewell' at {f}, which the target will not have after the import "
        "(the prompt is skipped)",
    )
    assert not plan.applicable


def test_an_environment_serving_a_renamed_prompt_is_a_problem() -> None:
    exporter, target = with_environment(), TargetModel()
    target.prompt("support/greeting", "G1", "mine")
    manifest, contents = exporter.export(environments=True, history="latest")
    plan = target.plan(manifest, contents, strategy="rename")
    renamed = prompt_of(plan, "support/greeting").rename_to
    assert renamed is not None
    (problem,) = env_of(plan, "support/prod").problems
    assert problem.endswith(f"(the bundle's prompt goes to {renamed})")


def test_an_archived_target_environment_cannot_be_published_to() -> None:
    exporter, target = with_environment(), TargetModel()
    target.environment("support", "prod", archived=True)
    manifest, contents = exporter.export(environments=True, history="latest")
    item = env_of(target.plan(manifest, contents), "support/prod")
    assert item.problems == ("the target environment is archived (read-only)",)


def test_an_existing_environment_the_bundle_has_no_revision_of_keeps_its_own() -> None:
    exporter = Exporter()
    exporter.prompt("support/greeting", "G")
    manifest, contents = exporter.export(environments=True)
    manifest["projects"][0]["environments"] = [{"name": "prod", "description": "", "revisions": []}]
    target = TargetModel()
    target.prompt("support/greeting", "G")
    target.environment(
        "support", "prod", {"greeting": target.projects["support"]["prompts"]["greeting"]["versions"][0]}
    )
    item = env_of(target.plan(manifest, contents), "support/prod")
    assert (item.action, item.revisions) == ("none", ())
    assert "no revision of this environment" in item.warnings[0]
    created = env_of(TargetModel().plan(manifest, contents), "support/prod")
    assert (created.status, created.action, created.to_revision) == ("new", "create", 0)


# --- projects -------------------------------------------------------------------------------


def test_writing_into_an_archived_target_project_is_a_problem() -> None:
    exporter, target = Exporter(), TargetModel()
    exporter.prompt("support/greeting", "G")
    target.project("support", archived=True)
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents)
    (project,) = plan.projects
    assert project.problems == (
        "the target project is archived (read-only), and the import writes into it: prompt greeting",
    )
    assert plan.reasons == (f"project support: {project.problems[0]}",)


def test_an_archived_target_project_left_untouched_is_a_warning() -> None:
    exporter, target = Exporter(), TargetModel()
    exporter.prompt("support/greeting", "G")
    target.project("support", archived=True)
    target.prompt("support/greeting", "G")
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents)
    assert plan.applicable
    assert plan.warnings == ("project support: the target project is archived",)


# --- partial references ---------------------------------------------------------------------


def with_footer() -> Exporter:
    exporter = Exporter()
    exporter.prompt("shared/footer", "F1", "F2", "F3")
    exporter.prompt("support/greeting", "Hello {{> shared:footer@2}}")
    return exporter


def test_skipping_a_new_prompt_another_depends_on_leaves_the_dependent_not_applicable() -> None:
    exporter, target = with_footer(), TargetModel()
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents, overrides={"shared/footer": "skip"})
    item = prompt_of(plan, "support/greeting")
    assert item.problems == (
        "partial 'shared:footer@2' points at shared/footer, which will not exist on the target "
        "(the prompt is skipped) (dangling reference)",
    )
    assert not plan.applicable


def test_an_unpinned_reference_to_a_skipped_new_prompt_is_dangling() -> None:
    exporter = Exporter()
    exporter.prompt("support/intro", "Hi")
    exporter.prompt("support/greeting", "{{> intro}} there")
    manifest, contents = exporter.export()
    plan = TargetModel().plan(manifest, contents, overrides={"support/intro": "skip"})
    assert "dangling reference" in prompt_of(plan, "support/greeting").problems[0]


def test_a_pinned_version_the_target_will_not_have_is_a_problem() -> None:
    exporter, target = with_footer(), TargetModel()
    target.prompt("shared/footer", "theirs")  # diverged, and only one version
    manifest, contents = exporter.export(history="latest")
    plan = target.plan(manifest, contents, strategy="skip")
    assert prompt_of(plan, "shared/footer").action == "skip"
    (problem,) = prompt_of(plan, "support/greeting").problems
    assert problem.startswith(
        "partial 'shared:footer@2' pins version 2 of shared/footer, which the target will not have"
    )
    assert not plan.applicable


def test_a_pinned_version_holding_other_content_on_the_target_is_a_warning() -> None:
    exporter, target = with_footer(), TargetModel()
    target.prompt("shared/footer", "theirs 1", "theirs 2")
    manifest, contents = exporter.export(history="latest")
    plan = target.plan(manifest, contents, strategy="skip")
    item = prompt_of(plan, "support/greeting")
    assert item.problems == ()
    assert item.warnings[0].startswith(
        "partial 'shared:footer@2' pins version 2 of shared/footer, which on the target holds"
    )
    assert plan.applicable
    target.apply_plan(plan, manifest, contents)


def test_a_pinned_version_a_fast_forward_reproduces_is_fine() -> None:
    exporter, target = with_footer(), TargetModel()
    target.prompt("shared/footer", "F1")
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents)
    assert prompt_of(plan, "shared/footer").action == "append"
    assert prompt_of(plan, "support/greeting").problems == prompt_of(plan, "support/greeting").warnings == ()
    target.apply_plan(plan, manifest, contents)


def test_a_reference_to_a_renamed_prompt_keeps_its_target_and_warns() -> None:
    exporter, target = with_footer(), TargetModel()
    target.prompt("shared/footer", "F1", "F2", "theirs")
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents, strategy="rename")
    renamed = prompt_of(plan, "shared/footer").rename_to
    item = prompt_of(plan, "support/greeting")
    assert item.problems == ()
    assert item.warnings == (
        f"partial 'shared:footer@2' points at shared/footer, which the bundle imports as {renamed}; "
        "the reference keeps resolving to the target's own shared/footer",
    )
    target.apply_plan(plan, manifest, contents)


def test_references_of_versions_the_plan_does_not_write_are_not_checked() -> None:
    exporter, target = with_footer(), TargetModel()
    target.prompt("support/greeting", "Hello {{> shared:footer@2}}")
    target.prompt("shared/footer", "theirs")
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents, strategy="skip")
    assert prompt_of(plan, "support/greeting").action == "none"
    assert plan.applicable
