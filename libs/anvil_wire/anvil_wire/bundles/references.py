"""What the manifest's parts say about each other (sections 4.1 to 4.3), once each part is well formed."""

from __future__ import annotations

from typing import Any

from .errors import BundleDanglingReference, BundleMalformed

__all__ = ["check_references"]

Version = tuple[str, str, int]  # project slug, prompt name, version number


def _dangling(message: str) -> BundleDanglingReference:
    return BundleDanglingReference(f"manifest: {message}")


def _malformed(message: str) -> BundleMalformed:
    return BundleMalformed(f"manifest: {message}")


def _carried(versions: dict[Version, str], key: Version, digest: str | None, what: str) -> None:
    project, prompt, number = key
    if key not in versions:
        raise _dangling(f"{what} names {project}/{prompt} version {number}, which the bundle does not carry")
    if digest is not None and versions[key] != digest:
        raise _dangling(
            f"{what} names {project}/{prompt} version {number} with another digest than the bundle's"
        )


def _index(projects: list[dict[str, Any]]) -> dict[Version, str]:
    return {
        (project["slug"], prompt["name"], version["number"]): version["digest"]
        for project in projects
        for prompt in project["prompts"]
        for version in prompt["versions"]
    }


def _revision_pins(projects: list[dict[str, Any]], versions: dict[Version, str]) -> set[Version]:
    pinned: set[Version] = set()
    for project in projects:
        for env in project["environments"]:
            for revision in env["revisions"]:
                what = f"environment {project['slug']}/{env['name']} revision {revision['number']}"
                for name, entry in revision["prompts"].items():
                    key = (project["slug"], name, entry["version"])
                    _carried(versions, key, entry["digest"], what)
                    pinned.add(key)
    return pinned


def _dependency_pins(dependencies: list[dict[str, Any]], versions: dict[Version, str]) -> set[Version]:
    pinned: set[Version] = set()
    for dependency in dependencies:
        source, target = dependency["from"], dependency["to"]
        origin = f"{source['project']}/{source['prompt']} version {source['version']}"
        _carried(versions, (source["project"], source["prompt"], source["version"]), None, "a dependency")
        key = (target["project"], target["prompt"], target["version"])
        _carried(versions, key, target["digest"], f"dependency {dependency['reference']!r} of {origin}")
        pinned.add(key)
    return pinned


def _check_objects(versions: dict[Version, str], objects: list[dict[str, Any]]) -> None:
    carried = {o["digest"] for o in objects}
    for (project, prompt, number), digest in versions.items():
        if digest not in carried:
            raise _dangling(f"{project}/{prompt} version {number} is {digest}, which is not in objects")
    used = set(versions.values())
    for digest in carried - used:
        raise _malformed(f"object {digest} is not the content of any listed version")


def _check_history(projects: list[dict[str, Any]], pinned: set[Version]) -> None:
    """With history 'latest', every version but the last is there because something pins it."""
    for project in projects:
        for prompt in project["prompts"]:
            for version in prompt["versions"][:-1]:
                if (project["slug"], prompt["name"], version["number"]) not in pinned:
                    raise _malformed(
                        f"{project['slug']}/{prompt['name']} version {version['number']} is listed although "
                        "history is 'latest' and no dependency or exported revision needs it"
                    )


def _check_selection(selection: dict[str, Any], projects: list[dict[str, Any]]) -> None:
    kind, chosen = selection["kind"], selection["project"]
    slugs = {p["slug"] for p in projects}
    if chosen is not None and chosen not in slugs:
        raise _dangling(f"the selection names project {chosen!r}, which the bundle does not carry")
    selected = {
        f"{p['slug']}/{prompt['name']}"
        for p in projects
        for prompt in p["prompts"]
        if prompt["role"] == "selected"
    }
    every = {f"{p['slug']}/{prompt['name']}" for p in projects for prompt in p["prompts"]}
    if kind == "organisation" and selected != every:
        raise _malformed("every prompt of an organisation export has the role 'selected'")
    if kind in ("project", "prompt_set") and any(not key.startswith(f"{chosen}/") for key in selected):
        raise _malformed(f"only prompts of project {chosen!r} may have the role 'selected'")
    if kind == "prompts":
        for key in selection["prompts"]:
            if key not in every:
                raise _dangling(f"the selection names prompt {key!r}, which the bundle does not carry")
        if selected != set(selection["prompts"]):
            raise _malformed("the prompts with the role 'selected' must be exactly selection.prompts")
    _check_sets(selection, projects)


def _check_sets(selection: dict[str, Any], projects: list[dict[str, Any]]) -> None:
    kind, chosen = selection["kind"], selection["project"]
    sets = [(p["slug"], s["name"]) for p in projects for s in p["prompt_sets"]]
    if kind == "prompts" and sets:
        raise _malformed("a 'prompts' export carries no prompt sets")
    if kind == "project" and any(slug != chosen for slug, _ in sets):
        raise _malformed(f"a 'project' export carries only the prompt sets of project {chosen!r}")
    if kind == "prompt_set" and sets != [(chosen, selection["prompt_set"])]:
        raise _malformed(
            f"a 'prompt_set' export carries exactly the selected set {selection['prompt_set']!r}"
        )


def check_references(
    selection: dict[str, Any],
    options: dict[str, Any],
    projects: list[dict[str, Any]],
    dependencies: list[dict[str, Any]],
    objects: list[dict[str, Any]],
) -> None:
    """Cross-checks of well-formed manifest parts; BundleDanglingReference for what is not carried."""
    versions = _index(projects)
    _check_objects(versions, objects)
    pinned = _revision_pins(projects, versions) | _dependency_pins(dependencies, versions)
    if options["history"] == "latest":
        _check_history(projects, pinned)
    _check_selection(selection, projects)
