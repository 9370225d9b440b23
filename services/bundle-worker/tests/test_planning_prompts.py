"""Import planning of prompts: statuses, strategies, overrides, the rename rule, diffs, archived prompts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from anvil_bundle_worker.planning import (
    RENAME_INFIX,
    Plan,
    PlanError,
    PlanNotApplicable,
    PromptPlan,
    content_diff,
    plan_to_apply,
    rename_candidates,
)
from anvil_bundle_worker.planning.testing import Exporter, TargetModel, make_content
from anvil_wire.prompts import content_digest, is_prompt_name


def prompt_of(plan: Plan, key: str) -> PromptPlan:
    return next(p for p in plan.prompts if p.key == key)


def hex8(digest: str) -> str:
    return digest.removeprefix("sha256:")[:8]


def diverged() -> tuple[Exporter, TargetModel]:
    """support/greeting: the exporter has A, B; the target has A, X (a conflict)."""
    exporter, target = Exporter(), TargetModel()
    exporter.prompt("support/greeting", "A", "B")
    target.prompt("support/greeting", "A", "X")
    return exporter, target


# --- statuses -------------------------------------------------------------------------------


def test_absent_prompt_is_new_and_created_with_every_listed_version() -> None:
    exporter, target = Exporter(), TargetModel()
    digests = exporter.prompt("support/greeting", "A", "B")
    target.project("support")
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents)
    item = prompt_of(plan, "support/greeting")
    assert (item.status, item.action, item.target) == ("new", "create", None)
    assert [v.digest for v in item.versions] == digests
    assert [v.message for v in item.versions] == ["v1", "v2"]
    assert plan.projects[0].status == "exists"
    target.apply_plan(plan, manifest, contents)
    assert target.projects["support"]["prompts"]["greeting"]["versions"] == digests


def test_prompt_of_an_absent_project_is_new_and_the_project_is_created() -> None:
    exporter, target = Exporter(), TargetModel()
    exporter.prompt("support/greeting", "A")
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents)
    assert [(p.slug, p.status, p.action) for p in plan.projects] == [("support", "new", "create")]
    assert prompt_of(plan, "support/greeting").status == "new"
    assert plan.expect == {
        "projects": {
            "support": {"exists": False, "prompts": {"greeting": 0}, "prompt_sets": {}, "environments": {}}
        }
    }


def test_same_latest_digest_is_identical_and_left_alone() -> None:
    exporter, target = Exporter(), TargetModel()
    exporter.prompt("support/greeting", "A", "B")
    target.prompt("support/greeting", "A", "B")
    manifest, contents = exporter.export()
    item = prompt_of(target.plan(manifest, contents), "support/greeting")
    assert (item.status, item.action, item.versions, item.diff) == ("identical", "none", (), None)


def test_latest_equal_to_an_older_target_version_is_identical() -> None:
    exporter, target = Exporter(), TargetModel()
    exporter.prompt("support/greeting", "A", "B")
    target.prompt("support/greeting", "A", "B", "C")
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents)
    item = prompt_of(plan, "support/greeting")
    assert (item.status, item.action) == ("identical", "none")
    assert item.target is not None
    assert item.target.number == 3
    assert not plan.has_changes


def test_target_head_in_listed_versions_fast_forwards_with_the_missing_versions() -> None:
    exporter, target = Exporter(), TargetModel()
    a, b, c = exporter.prompt("support/greeting", "A", "B", "C")
    target.prompt("support/greeting", "A")
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents)
    item = prompt_of(plan, "support/greeting")
    assert (item.status, item.action) == ("fast-forward", "append")
    assert [(v.number, v.digest) for v in item.versions] == [(2, b), (3, c)]
    target.apply_plan(plan, manifest, contents)
    assert target.projects["support"]["prompts"]["greeting"]["versions"] == [a, b, c]


def test_target_head_in_ancestors_fast_forwards_with_every_listed_version() -> None:
    exporter, target = Exporter(), TargetModel()
    a, _, _, d = exporter.prompt("support/greeting", "A", "B", "C", "D")
    target.prompt("support/greeting", "A")
    manifest, contents = exporter.export(history="latest")
    assert manifest["projects"][0]["prompts"][0]["ancestors"][0] == a
    plan = target.plan(manifest, contents)
    item = prompt_of(plan, "support/greeting")
    assert (item.status, item.action) == ("fast-forward", "append")
    assert [(v.number, v.digest) for v in item.versions] == [(4, d)]
    target.apply_plan(plan, manifest, contents)
    assert target.projects["support"]["prompts"]["greeting"]["versions"] == [a, d]


def test_content_that_comes_back_fast_forwards_after_its_last_position() -> None:
    exporter, target = Exporter(), TargetModel()
    a, b, _, c = exporter.prompt("support/greeting", "A", "B", "A", "C")
    assert exporter.digest("support/greeting", 3) == a
    target.prompt("support/greeting", "A")
    manifest, contents = exporter.export()
    item = prompt_of(target.plan(manifest, contents), "support/greeting")
    assert item.status == "fast-forward"
    assert [(v.number, v.digest) for v in item.versions] == [(4, c)]
    assert b not in [v.digest for v in item.versions]


def test_target_prompt_without_versions_fast_forwards_with_every_listed_version() -> None:
    exporter, target = Exporter(), TargetModel()
    digests = exporter.prompt("support/greeting", "A", "B")
    target.prompt("support/greeting")  # created, no version yet (head 0)
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents)
    item = prompt_of(plan, "support/greeting")
    assert (item.status, item.action, item.diff) == ("fast-forward", "append", None)
    assert item.target is not None
    assert (item.target.number, item.target.digest) == (0, None)
    assert [v.digest for v in item.versions] == digests
    assert plan.expect["projects"]["support"]["prompts"] == {"greeting": 0}
    target.apply_plan(plan, manifest, contents)
    assert target.projects["support"]["prompts"]["greeting"]["versions"] == digests


def test_diverged_target_is_a_conflict() -> None:
    exporter, target = diverged()
    manifest, contents = exporter.export()
    item = prompt_of(target.plan(manifest, contents, strategy="skip"), "support/greeting")
    assert item.status == "conflict"
    assert item.target is not None
    assert item.target.digest == content_digest(make_content("X"))
    assert item.incoming.digest == exporter.digest("support/greeting")


# --- strategies -----------------------------------------------------------------------------


def test_conflict_with_fail_blocks_the_plan() -> None:
    exporter, target = diverged()
    exporter.prompt("support/other", "O")
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents)
    item = prompt_of(plan, "support/greeting")
    assert (item.status, item.action, item.strategy, item.versions) == ("conflict", "blocked", "fail", ())
    assert "choose a strategy" in item.problems[0]
    assert not plan.applicable
    assert plan.reasons == (f"prompt support/greeting: {item.problems[0]}",)
    assert prompt_of(plan, "support/other").action == "create"
    with pytest.raises(PlanNotApplicable, match="prompt support/greeting: conflict"):
        plan_to_apply(plan, manifest, contents, import_id="7d9f2b4e-0c55-4a44-9d3b-0d4f1f7b1a11")


def test_conflict_with_skip_leaves_the_target_prompt() -> None:
    exporter, target = diverged()
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents, strategy="skip")
    item = prompt_of(plan, "support/greeting")
    assert (item.status, item.action, item.versions) == ("conflict", "skip", ())
    assert plan.applicable
    assert not plan.has_changes


def test_conflict_with_overwrite_appends_the_bundles_latest_on_top() -> None:
    exporter, target = diverged()
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents, strategy="overwrite")
    item = prompt_of(plan, "support/greeting")
    latest = exporter.digest("support/greeting")
    assert (item.action, [(v.number, v.digest) for v in item.versions]) == ("overwrite", [(2, latest)])
    target.apply_plan(plan, manifest, contents)
    assert target.projects["support"]["prompts"]["greeting"]["versions"][-1] == latest
    again = prompt_of(target.plan(manifest, contents, strategy="overwrite"), "support/greeting")
    assert (again.status, again.action) == ("identical", "none")


def test_conflict_with_rename_imports_a_new_prompt_and_replanning_reuses_it() -> None:
    exporter, target = diverged()
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents, strategy="rename")
    item = prompt_of(plan, "support/greeting")
    latest = exporter.digest("support/greeting")
    renamed = f"greeting{RENAME_INFIX}{hex8(latest)}"
    assert (item.action, item.rename_to, item.written_name) == ("rename", renamed, renamed)
    assert [v.number for v in item.versions] == [1, 2]
    assert plan.expect["projects"]["support"]["prompts"] == {"greeting": 2, renamed: 0}
    body = target.apply_plan(plan, manifest, contents)
    assert [p["name"] for p in body["prompts"]] == [renamed]
    prompts = target.projects["support"]["prompts"]
    assert prompts["greeting"]["versions"][-1] == content_digest(make_content("X"))
    assert prompts[renamed]["versions"][-1] == latest
    again = target.plan(manifest, contents, strategy="rename")
    item = prompt_of(again, "support/greeting")
    assert (item.status, item.action, item.rename_to, item.versions) == ("conflict", "none", renamed, ())
    assert not again.has_changes


def test_rename_appends_dash_2_when_the_name_is_taken_on_the_target() -> None:
    exporter, target = diverged()
    latest = exporter.digest("support/greeting")
    target.prompt(f"support/greeting{RENAME_INFIX}{hex8(latest)}", "someone else's")
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents, strategy="rename")
    assert prompt_of(plan, "support/greeting").rename_to == f"greeting{RENAME_INFIX}{hex8(latest)}-2"
    target.apply_plan(plan, manifest, contents)
    again = prompt_of(target.plan(manifest, contents, strategy="rename"), "support/greeting")
    assert (again.action, again.rename_to) == ("none", f"greeting{RENAME_INFIX}{hex8(latest)}-2")


def test_rename_passes_over_a_name_another_bundle_prompt_has() -> None:
    exporter, target = diverged()
    first = f"greeting{RENAME_INFIX}{hex8(exporter.digest('support/greeting'))}"
    exporter.prompt(f"support/{first}", "mine")
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents, strategy="rename")
    assert prompt_of(plan, "support/greeting").rename_to == f"{first}-2"
    assert prompt_of(plan, f"support/{first}").action == "create"
    target.apply_plan(plan, manifest, contents)


def test_two_renames_to_the_same_shortened_name_get_distinct_names() -> None:
    exporter, target = Exporter(), TargetModel()
    left, right = "x" * 62 + "a", "x" * 62 + "b"
    for name in (left, right):
        exporter.prompt(f"support/{name}", "A", "same")
        target.prompt(f"support/{name}", "A", "theirs")
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents, strategy="rename")
    suffix = f"{RENAME_INFIX}{hex8(exporter.digest(f'support/{left}'))}"
    assert prompt_of(plan, f"support/{left}").rename_to == "x" * (63 - len(suffix)) + suffix
    assert prompt_of(plan, f"support/{right}").rename_to == "x" * (63 - len(suffix) - 2) + suffix + "-2"
    target.apply_plan(plan, manifest, contents)
    assert not target.plan(manifest, contents, strategy="rename").has_changes


def test_rename_shortens_the_last_segment_to_the_name_grammar() -> None:
    digest = content_digest(make_content("A"))
    suffix = f"{RENAME_INFIX}{hex8(digest)}"
    long_segment = "a" * 63
    first, second = list(zip(range(2), rename_candidates(f"dir/{long_segment}", digest), strict=False))
    assert first[1] == f"dir/{'a' * (63 - len(suffix))}{suffix}"
    assert second[1] == f"dir/{'a' * (63 - len(suffix) - 2)}{suffix}-2"
    # A name near 200 characters: the whole name is cut to 200, in its last segment only.
    head = "/".join(["b" * 63, "c" * 63, "e" * 20])  # 148 characters
    name = f"{head}/{'d' * 50}"  # 199 characters
    candidate = next(rename_candidates(name, digest))
    assert candidate == f"{head}/{'d' * 35}{suffix}"
    assert len(candidate) == 200
    assert is_prompt_name(candidate)


def test_rename_candidates_are_valid_distinct_and_endless_for_short_names() -> None:
    digest = content_digest(make_content("A"))
    names = [c for _, c in zip(range(12), rename_candidates("a", digest), strict=False)]
    assert names[:3] == [
        f"a.import-{hex8(digest)}",
        f"a.import-{hex8(digest)}-2",
        f"a.import-{hex8(digest)}-3",
    ]
    assert len(set(names)) == 12
    assert all(is_prompt_name(n) for n in names)


def test_rename_without_a_name_that_fits_blocks_the_prompt() -> None:
    prefix = "/".join(["p" * 63, "q" * 63, "r" * 63])  # 191 characters: no room for the suffix
    name = f"{prefix}/s"
    exporter, target = Exporter(), TargetModel()
    exporter.prompt(f"support/{name}", "A", "B")
    target.prompt(f"support/{name}", "A", "X")
    assert list(rename_candidates(name, exporter.digest(f"support/{name}"))) == []
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents, strategy="rename")
    item = prompt_of(plan, f"support/{name}")
    assert (item.action, item.rename_to) == ("blocked", None)
    assert "cannot rename" in item.problems[0]
    assert not plan.applicable


# --- overrides ------------------------------------------------------------------------------


def test_an_override_beats_the_strategy_for_its_prompt_only() -> None:
    exporter, target = diverged()
    exporter.prompt("support/farewell", "A", "B")
    target.prompt("support/farewell", "A", "Y")
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents, overrides={"support/greeting": "overwrite"})
    greeting, farewell = prompt_of(plan, "support/greeting"), prompt_of(plan, "support/farewell")
    assert (greeting.action, greeting.strategy) == ("overwrite", "overwrite")
    assert (farewell.action, farewell.strategy) == ("blocked", "fail")
    assert plan.overrides == (("support/greeting", "overwrite"),)
    assert plan.to_json()["overrides"] == {"support/greeting": "overwrite"}
    assert not plan.applicable
    plan = target.plan(
        manifest,
        contents,
        strategy="overwrite",
        overrides={"support/farewell": "skip", "support/greeting": "rename"},
    )
    assert [p.action for p in plan.prompts] == ["skip", "rename"]
    assert plan.applicable


def test_an_override_skip_excludes_a_new_prompt() -> None:
    exporter, target = Exporter(), TargetModel()
    exporter.prompt("support/greeting", "A")
    exporter.prompt("support/other", "O")
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents, overrides={"support/greeting": "skip"})
    item = prompt_of(plan, "support/greeting")
    assert (item.status, item.action, item.versions) == ("new", "skip", ())
    target.apply_plan(plan, manifest, contents)
    assert set(target.projects["support"]["prompts"]) == {"other"}


def test_an_override_skip_excludes_a_fast_forward() -> None:
    exporter, target = Exporter(), TargetModel()
    exporter.prompt("support/greeting", "A", "B")
    target.prompt("support/greeting", "A")
    manifest, contents = exporter.export()
    item = prompt_of(
        target.plan(manifest, contents, overrides={"support/greeting": "skip"}), "support/greeting"
    )
    assert (item.status, item.action, item.versions) == ("fast-forward", "skip", ())


@pytest.mark.parametrize("override", ["fail", "overwrite", "rename"])
def test_other_overrides_do_not_change_a_new_or_identical_prompt(override: str) -> None:
    exporter, target = Exporter(), TargetModel()
    exporter.prompt("support/new", "N")
    exporter.prompt("support/same", "S")
    target.prompt("support/same", "S")
    manifest, contents = exporter.export()
    overrides = {"support/new": override, "support/same": override}
    plan = target.plan(manifest, contents, overrides=overrides)
    assert [(p.status, p.action) for p in plan.prompts] == [("new", "create"), ("identical", "none")]
    assert [p.strategy for p in plan.prompts] == [override, override]


def test_an_override_naming_no_prompt_of_the_bundle_is_a_plan_error() -> None:
    exporter, target = diverged()
    manifest, _ = exporter.export()
    state = target.state_for(manifest)
    from anvil_bundle_worker.planning import plan_import

    with pytest.raises(PlanError, match=r"override 'support/nope' names no prompt of the bundle"):
        plan_import(manifest, state, overrides={"support/nope": "skip"})
    with pytest.raises(PlanError, match="names no prompt"):
        plan_import(manifest, state, overrides={"greeting": "skip"})
    with pytest.raises(PlanError, match=r"override 'support/greeting': unknown strategy 'merge'"):
        plan_import(manifest, state, overrides={"support/greeting": "merge"})
    with pytest.raises(
        PlanError, match=r"unknown strategy 'merge'; expected one of fail, skip, overwrite, rename"
    ):
        plan_import(manifest, state, strategy="merge")


# --- diffs ----------------------------------------------------------------------------------


def test_a_conflict_shows_a_diff_of_pretty_json() -> None:
    exporter, target = diverged()
    manifest, contents = exporter.export()
    item = prompt_of(target.plan(manifest, contents, strategy="skip"), "support/greeting")
    assert item.target is not None
    assert item.diff is not None
    lines = item.diff.splitlines()
    assert lines[0] == f"--- target/support/greeting@2 {item.target.digest}"
    assert lines[1] == f"+++ bundle/support/greeting {item.incoming.digest}"
    assert '-  "template": "X",' in lines
    assert '+  "template": "B",' in lines


def test_a_fast_forward_shows_a_diff_and_a_new_prompt_none() -> None:
    exporter, target = Exporter(), TargetModel()
    exporter.prompt("support/greeting", "A", "B")
    exporter.prompt("support/new", "N")
    target.prompt("support/greeting", "A")
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents)
    assert prompt_of(plan, "support/greeting").diff is not None
    assert prompt_of(plan, "support/new").diff is None


def test_without_contents_the_plan_shows_only_the_digests() -> None:
    exporter, target = diverged()
    manifest, _ = exporter.export()
    item = prompt_of(target.plan(manifest, None, strategy="skip"), "support/greeting")
    assert item.diff is None
    assert item.target is not None
    assert item.target.digest
    assert item.incoming.digest


def test_content_diff_sorts_keys_and_indents_by_two() -> None:
    old: dict[str, Any] = {"template": "a", "metadata": {"z": 1, "b": [1, 2]}}
    new: dict[str, Any] = {"template": "a", "metadata": {"z": 2, "b": [1, 2]}}
    diff = content_diff(old, new, old_label="old", new_label="new")
    assert diff.splitlines()[:2] == ["--- old", "+++ new"]
    assert '-    "z": 1' in diff.splitlines()
    assert '+    "z": 2' in diff.splitlines()
    before, after = (json.dumps(c, sort_keys=True, indent=2).splitlines() for c in (old, new))
    body = diff.splitlines()[3:]
    assert all(line[1:] in (before if line[0] == "-" else after) for line in body)
    assert content_diff(old, old, old_label="a", new_label="b") == ""


# --- archived prompts -----------------------------------------------------------------------


def test_versions_for_an_archived_target_prompt_are_a_problem() -> None:
    exporter, target = Exporter(), TargetModel()
    exporter.prompt("support/greeting", "A", "B")
    target.prompt("support/greeting", "A", archived=True)
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents)
    item = prompt_of(plan, "support/greeting")
    assert item.action == "append"
    assert "archived (read-only)" in item.problems[0]
    assert not plan.applicable
    plan = target.plan(manifest, contents, overrides={"support/greeting": "skip"})
    assert plan.applicable
    assert not plan.has_changes


def test_an_identical_archived_target_prompt_is_fine() -> None:
    exporter, target = Exporter(), TargetModel()
    exporter.prompt("support/greeting", "A")
    target.prompt("support/greeting", "A", archived=True)
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents)
    assert plan.applicable
    assert prompt_of(plan, "support/greeting").problems == ()


def test_a_prompt_archived_on_the_exporter_is_created_archived() -> None:
    exporter, target = Exporter(), TargetModel()
    exporter.prompt("support/old", "A", archived=True)
    manifest, contents = exporter.export()
    plan = target.plan(manifest, contents)
    item = prompt_of(plan, "support/old")
    assert item.action == "create"
    assert "created archived" in item.warnings[0]
    assert plan.warnings == (f"prompt support/old: {item.warnings[0]}",)
    body = target.apply_plan(plan, manifest, contents)
    assert body["prompts"][0]["archived"] is True
    assert target.projects["support"]["prompts"]["old"]["archived"] is True
    assert not target.plan(manifest, contents).has_changes
