"""The manifest's rules (section 4) that tie its parts together: selection kinds, history,
revisions, dependencies and objects. The shape and ordering rules are in the hostile corpus."""

from __future__ import annotations

import contextlib
import copy
import random
from collections.abc import Callable
from typing import Any

import pytest

from anvil_wire.bundles import (
    BundleDanglingReference,
    BundleError,
    BundleMalformed,
    assemble_manifest,
    validate_manifest,
)

Change = Callable[[dict[str, Any]], Any]


@pytest.fixture
def manifest(snapshot: dict[str, Any], exporter: dict[str, str]) -> dict[str, Any]:
    """The golden example's manifest: a project export with full history and environments."""
    return assemble_manifest(snapshot, exporter=exporter)[0]


def project(manifest: dict[str, Any], slug: str) -> dict[str, Any]:
    return next(p for p in manifest["projects"] if p["slug"] == slug)


def prompt(manifest: dict[str, Any], key: str) -> dict[str, Any]:
    slug, name = key.split("/")
    return next(p for p in project(manifest, slug)["prompts"] if p["name"] == name)


def latest_only(manifest: dict[str, Any]) -> dict[str, Any]:
    """The same export with history 'latest': shared/footer keeps only version 2 (its version 1
    now an ancestor), prod only its current revision; support/greeting keeps version 1, which
    the current revision serves and triage pins."""
    result = copy.deepcopy(manifest)
    result["options"]["history"] = "latest"
    footer = prompt(result, "shared/footer")
    dropped = footer["versions"].pop(0)
    footer["ancestors"] = [dropped["digest"]]
    result["objects"] = [o for o in result["objects"] if o["digest"] != dropped["digest"]]
    prod = project(result, "support")["environments"][0]
    prod["revisions"] = prod["revisions"][-1:]
    return result


def refused(manifest: dict[str, Any], error: type[BundleError], message: str) -> None:
    with pytest.raises(error, match=message) as caught:
        validate_manifest(manifest)
    assert type(caught.value) is error


def test_a_valid_manifest_is_returned_unchanged(manifest: dict[str, Any]) -> None:
    before = copy.deepcopy(manifest)
    assert validate_manifest(manifest) is manifest
    assert manifest == before


def test_latest_history_carries_older_versions_only_when_something_needs_them(
    manifest: dict[str, Any],
) -> None:
    latest = latest_only(manifest)
    validate_manifest(latest)

    unpinned = copy.deepcopy(latest)
    unpinned["dependencies"].pop()  # triage's greeting@1: greeting version 1 still served by prod
    validate_manifest(unpinned)
    project(unpinned, "support")["environments"] = []  # now nothing needs greeting version 1
    refused(
        unpinned,
        BundleMalformed,
        "support/greeting version 1 is listed although history is 'latest' and no dependency or exported "
        "revision needs it",
    )


def test_latest_history_exports_only_the_current_revision(manifest: dict[str, Any]) -> None:
    latest = latest_only(manifest)
    project(latest, "support")["environments"] = project(manifest, "support")["environments"]
    refused(latest, BundleMalformed, "with history 'latest' only the current revision is exported")


def test_full_history_lists_every_version(manifest: dict[str, Any]) -> None:
    footer = prompt(manifest, "shared/footer")
    footer["ancestors"] = [footer["versions"].pop(0)["digest"]]
    manifest["objects"] = [o for o in manifest["objects"] if o["digest"] != footer["ancestors"][0]]
    refused(
        manifest, BundleMalformed, "prompt shared/footer: with history 'full' every version must be listed"
    )


def test_ancestors_are_digests(manifest: dict[str, Any]) -> None:
    latest = latest_only(manifest)
    prompt(latest, "shared/footer")["ancestors"] = ["sha256:" + "A" * 64]
    refused(latest, BundleMalformed, "prompt shared/footer: ancestors must be digests")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda r: r.update(kind="rollback"),
            "rollback_of must name an earlier revision exactly when kind is",
        ),
        (lambda r: r.update(rollback_of=3), "rollback_of must name an earlier revision"),
        (lambda r: r.update(rollback_of=None), "rollback_of must name an earlier revision"),
        (lambda r: r.update(kind="deploy"), "kind must be one of publish, promote, rollback"),
        (lambda r: r.update(number=True), "a revision number must be an integer >= 1"),
        (lambda r: r.update(prompts=[]), "prompts must be an object"),
        (
            lambda r: r["prompts"].update({"Bad Name": r["prompts"]["greeting"]}),
            "'Bad Name' is not a prompt name",
        ),
        (
            lambda r: r["prompts"]["greeting"].update(version="1"),
            "prompts.greeting.version must be an integer",
        ),
        (lambda r: r["prompts"]["greeting"].pop("digest"), "prompts.greeting lacks 'digest'"),
    ],
)
def test_revision_rules(manifest: dict[str, Any], change: Change, message: str) -> None:
    revisions = project(manifest, "support")["environments"][0]["revisions"]
    change(revisions[0] if "rollback_of must name an earlier revision exactly" in message else revisions[-1])
    refused(manifest, BundleMalformed, message)


def prompts_selection(manifest: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """The example as an export of the chosen prompts: no sets; others become dependencies."""
    result = copy.deepcopy(manifest)
    result["selection"] = {"kind": "prompts", "project": None, "prompt_set": None, "prompts": keys}
    for item in result["projects"]:
        item["prompt_sets"] = []
        for entry in item["prompts"]:
            entry["role"] = "selected" if f"{item['slug']}/{entry['name']}" in keys else "dependency"
    return result


def test_a_prompts_selection_names_exactly_its_selected_prompts(manifest: dict[str, Any]) -> None:
    validate_manifest(prompts_selection(manifest, ["support/greeting", "support/triage"]))
    validate_manifest(prompts_selection(manifest, ["shared/footer", "support/triage"]))

    refused(
        prompts_selection(manifest, ["support/triage", "support/greeting"]),
        BundleMalformed,
        "selection.prompts must be in ascending order",
    )
    refused(
        prompts_selection(manifest, ["support/faq", "support/triage"]),
        BundleDanglingReference,
        "the selection names prompt 'support/faq', which the bundle does not carry",
    )
    refused(prompts_selection(manifest, []), BundleMalformed, "selection.prompts is empty")
    refused(
        prompts_selection(manifest, ["triage"]),
        BundleMalformed,
        "selection.prompts: 'triage' is not project/name",
    )

    wrong_role = prompts_selection(manifest, ["support/triage"])
    prompt(wrong_role, "support/greeting")["role"] = "selected"
    refused(
        wrong_role, BundleMalformed, "the prompts with the role 'selected' must be exactly selection.prompts"
    )

    with_set = prompts_selection(manifest, ["support/triage"])
    project(with_set, "support")["prompt_sets"] = project(manifest, "support")["prompt_sets"]
    refused(with_set, BundleMalformed, "a 'prompts' export carries no prompt sets")


def test_a_project_selection_selects_only_its_own_prompts_and_sets(manifest: dict[str, Any]) -> None:
    prompt(manifest, "shared/footer")["role"] = "selected"
    refused(manifest, BundleMalformed, "only prompts of project 'support' may have the role 'selected'")
    prompt(manifest, "shared/footer")["role"] = "dependency"
    project(manifest, "shared")["prompt_sets"] = [
        {"name": "partials", "description": "", "prompts": ["footer"]}
    ]
    refused(manifest, BundleMalformed, "a 'project' export carries only the prompt sets of project 'support'")


def test_a_prompt_set_selection_carries_exactly_that_set(manifest: dict[str, Any]) -> None:
    manifest["selection"].update(kind="prompt_set", prompt_set="chat-widget")
    validate_manifest(manifest)
    manifest["selection"]["prompt_set"] = "mobile"
    refused(manifest, BundleMalformed, "a 'prompt_set' export carries exactly the selected set 'mobile'")
    manifest["selection"]["prompt_set"] = None
    refused(manifest, BundleMalformed, "selection.prompt_set must be set for a 'prompt_set' selection")


def test_an_organisation_selection_selects_every_prompt(manifest: dict[str, Any]) -> None:
    manifest["selection"].update(kind="organisation", project=None)
    refused(manifest, BundleMalformed, "every prompt of an organisation export has the role 'selected'")
    prompt(manifest, "shared/footer")["role"] = "selected"
    validate_manifest(manifest)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(exporter={"instance": "https://a.example"}), "exporter lacks 'software'"),
        (lambda m: m["exporter"].update(software=7), "exporter.software must be a string"),
        (lambda m: m["organisation"].update(slug="Acme"), "organisation.slug is not a slug"),
        (lambda m: m["options"].update(environments="yes"), "options.environments must be true or false"),
        (lambda m: m["selection"].update(kind="everything"), "selection.kind must be one of"),
        (lambda m: m["selection"].update(project="Support!"), "selection.project is not a slug"),
        (lambda m: project(m, "support").update(slug="-x"), "projects\\[1\\].slug is not a slug"),
        (lambda m: prompt(m, "support/triage").update(archived=0), "archived must be true or false"),
        (
            lambda m: prompt(m, "support/triage").update(role="extra"),
            "role must be 'selected' or 'dependency'",
        ),
        (
            lambda m: prompt(m, "support/triage").update(versions=[]),
            "prompt support/triage: versions is empty",
        ),
        (lambda m: prompt(m, "support/triage").update(name="Triage"), "the name is not a prompt name"),
        (
            lambda m: prompt(m, "support/triage")["versions"][0].update(digest="sha256:" + "F" * 64),
            "version 1 has a malformed digest",
        ),
        (
            lambda m: prompt(m, "support/triage")["versions"][0].update(message=None),
            "version 1 message must be a string",
        ),
        (
            lambda m: m["objects"][0].update(size=-1),
            "objects: size of sha256:[0-9a-f]{64} must be an integer >= 0",
        ),
        (lambda m: m["objects"][0].update(digest="md5:abc"), "objects: malformed digest 'md5:abc'"),
        (lambda m: m["dependencies"][0].update(reference="shared:footer@ prod"), "invalid partial reference"),
        (
            lambda m: m["dependencies"][1].update(reference="support:greeting@2"),
            "'support:greeting@2' cannot resolve to support:greeting@1",
        ),
        (lambda m: m["dependencies"][1]["to"].update(version=0), "dependencies\\[1\\].to must name"),
        (lambda m: m.update(projects={}), "projects must be an array"),
        (lambda m: m["projects"].append("shared"), "projects\\[2\\] must be a JSON object"),
    ],
)
def test_shape_rules(manifest: dict[str, Any], change: Change, message: str) -> None:
    change(manifest)
    refused(manifest, BundleMalformed, f"manifest: .*{message}")


def test_a_later_minor_version_ignores_unknown_members_everywhere(manifest: dict[str, Any]) -> None:
    manifest["version"] = "1.4"
    manifest["provenance"] = {"slsa": 1}
    prompt(manifest, "support/triage")["labels"] = ["routing"]
    manifest["objects"][0]["media_type"] = "application/json"
    assert validate_manifest(manifest)["provenance"] == {"slsa": 1}


ODD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**60,
    1.5,
    "",
    "x",
    "Bad Name",
    "sha256:" + "0" * 64,
    [],
    {},
    [1],
    {"a": 1},
]


def paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value (dict keys and list indexes), the value itself included."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*path, index))
    return found


@pytest.mark.parametrize("seed", range(4))
def test_any_odd_value_anywhere_is_a_bundle_error_never_a_crash(manifest: dict[str, Any], seed: int) -> None:
    rng = random.Random(seed)
    places = paths(manifest)[1:]
    for _ in range(300):
        broken = copy.deepcopy(manifest)
        path = rng.choice(places)
        parent = broken
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = copy.deepcopy(rng.choice(ODD_VALUES))
        with contextlib.suppress(BundleError):  # any other exception fails the test
            validate_manifest(broken)
