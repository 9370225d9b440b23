"""The manifest (section 4): shape, sorting and references, checked as the format says."""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from ..canonical import MAX_SAFE_INTEGER
from ..prompts import PromptFormatError, is_prompt_name, is_slug, parse_reference
from .errors import BundleMalformed, BundleVersionUnsupported
from .references import check_references
from .spec import FORMAT, check_members, check_selection, reader_is_strict

__all__ = ["validate_manifest", "ascending", "MANIFEST_MEMBERS"]

MANIFEST_MEMBERS = (
    "format",
    "version",
    "exporter",
    "selection",
    "options",
    "organisation",
    "projects",
    "dependencies",
    "objects",
)
_REVISION_KINDS = ("publish", "promote", "rollback")
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


def _fail(message: str) -> BundleMalformed:
    return BundleMalformed(f"manifest: {message}")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise _fail(message)


def _is_int(value: Any, minimum: int) -> bool:
    return type(value) is int and minimum <= value <= MAX_SAFE_INTEGER


def is_digest(value: Any) -> bool:
    """``sha256:`` and 64 lowercase hex digits (anvil_wire.is_digest, at regex speed)."""
    return isinstance(value, str) and _DIGEST_RE.fullmatch(value) is not None


def _string(value: Any, where: str) -> str:
    _require(isinstance(value, str), f"{where} must be a string")
    return str(value)


def _array(value: Any, where: str) -> list[Any]:
    _require(isinstance(value, list), f"{where} must be an array")
    return list(value)


def ascending(keys: Sequence[Any], where: str) -> None:
    """Refuse keys that are not strictly ascending (out of order, or the same twice)."""
    for before, after in pairwise(keys):
        if not before < after:
            if before == after:
                raise _fail(f"{where}: {after!r} appears twice")
            raise _fail(f"{where} must be in ascending order: {after!r} comes after {before!r}")


class _Checker:
    """Validates one manifest; ``strict`` says whether unknown members are errors (section 1)."""

    def __init__(self, strict: bool, history: str = "latest") -> None:
        self.strict = strict
        self.history = history

    def members(self, value: Any, members: Sequence[str], where: str) -> dict[str, Any]:
        try:
            return check_members(value, members, where, strict=self.strict)
        except BundleMalformed as exc:
            raise _fail(str(exc)) from exc

    def items(self, value: Any, members: Sequence[str], where: str) -> list[dict[str, Any]]:
        """``value`` as an array of objects with ``members`` (a fast path: manifests are large)."""
        array = _array(value, where)
        expected = frozenset(members)
        for index, item in enumerate(array):
            keys = item.keys() if type(item) is dict else None
            if keys is None or not (keys == expected if self.strict else keys >= expected):
                self.members(item, members, f"{where}[{index}]")  # raises, saying what is wrong
        return array

    def exporter(self, value: Any) -> None:
        exporter = self.members(value, ("instance", "software"), "exporter")
        for member in ("instance", "software"):
            _require(bool(_string(exporter[member], f"exporter.{member}")), f"exporter.{member} is empty")

    def selection(self, value: Any) -> dict[str, Any]:
        selection = self.members(value, ("kind", "project", "prompt_set", "prompts"), "selection")
        kind = selection["kind"]
        try:
            check_selection(kind, selection["project"], selection["prompt_set"], selection["prompts"])
        except ValueError as exc:
            raise _fail(str(exc)) from exc
        _require(
            selection["project"] is None or is_slug(selection["project"]), "selection.project is not a slug"
        )
        _require(
            selection["prompt_set"] is None or is_prompt_name(selection["prompt_set"]),
            "selection.prompt_set is not a prompt set name",
        )
        if kind == "prompts":
            keys = _array(selection["prompts"], "selection.prompts")
            _require(bool(keys), "selection.prompts is empty")
            for key in keys:
                project, _, name = _string(key, "selection.prompts[]").partition("/")
                _require(
                    is_slug(project) and is_prompt_name(name),
                    f"selection.prompts: {key!r} is not project/name",
                )
            ascending(keys, "selection.prompts")
        return selection

    def options(self, value: Any) -> dict[str, Any]:
        options = self.members(value, ("history", "environments"), "options")
        _require(options["history"] in ("latest", "full"), "options.history must be 'latest' or 'full'")
        _require(type(options["environments"]) is bool, "options.environments must be true or false")
        self.history = options["history"]
        return options

    def organisation(self, value: Any) -> None:
        organisation = self.members(value, ("slug", "name"), "organisation")
        _require(is_slug(organisation["slug"]), "organisation.slug is not a slug")
        _string(organisation["name"], "organisation.name")

    def project(self, value: dict[str, Any], where: str, environments: bool) -> None:
        _require(is_slug(value["slug"]), f"{where}.slug is not a slug")
        where = f"project {value['slug']!r}"
        _string(value["name"], f"{where}: name")
        _string(value["description"], f"{where}: description")
        prompts = self.items(
            value["prompts"],
            ("name", "description", "archived", "role", "versions", "ancestors"),
            f"{where}: prompts",
        )
        for prompt in prompts:
            self.prompt(prompt, f"prompt {value['slug']}/{prompt['name']}")
        ascending([p["name"] for p in prompts], f"{where}: prompts")
        sets = self.items(value["prompt_sets"], ("name", "description", "prompts"), f"{where}: prompt_sets")
        for prompt_set in sets:
            self.prompt_set(prompt_set, f"{where}: prompt set")
        ascending([s["name"] for s in sets], f"{where}: prompt_sets")
        envs = self.items(
            value["environments"], ("name", "description", "revisions"), f"{where}: environments"
        )
        _require(
            environments or not envs, f"{where}: environments must be [] when options.environments is false"
        )
        for env in envs:
            self.environment(env, f"{where}: environment")
        ascending([e["name"] for e in envs], f"{where}: environments")

    def prompt(self, prompt: dict[str, Any], where: str) -> None:
        # Messages are formatted only on failure: this runs once per prompt of a large export.
        if not is_prompt_name(prompt["name"]):
            raise _fail(f"{where}: the name is not a prompt name")
        if not isinstance(prompt["description"], str):
            raise _fail(f"{where}: description must be a string")
        if type(prompt["archived"]) is not bool:
            raise _fail(f"{where}: archived must be true or false")
        if prompt["role"] not in ("selected", "dependency"):
            raise _fail(f"{where}: role must be 'selected' or 'dependency'")
        versions = self.items(prompt["versions"], ("number", "digest", "message"), f"{where}: versions")
        if not versions:
            raise _fail(f"{where}: versions is empty")
        for version in versions:
            self.version(version, where)
        numbers = [v["number"] for v in versions]
        ascending(numbers, f"{where}: versions")
        ancestors = _array(prompt["ancestors"], f"{where}: ancestors")
        if not all(map(is_digest, ancestors)):
            raise _fail(f"{where}: ancestors must be digests")
        if len(ancestors) != numbers[0] - 1:
            raise _fail(
                f"{where}: ancestors must list the {numbers[0] - 1} version(s) before version {numbers[0]}"
            )
        if self.history == "full" and numbers[-1] != len(numbers):
            raise _fail(f"{where}: with history 'full' every version must be listed")

    def version(self, version: dict[str, Any], where: str) -> None:
        if not _is_int(version["number"], 1):
            raise _fail(f"{where}: a version number must be an integer >= 1")
        if not is_digest(version["digest"]):
            raise _fail(f"{where}: version {version['number']} has a malformed digest")
        if not isinstance(version["message"], str):
            raise _fail(f"{where}: version {version['number']} message must be a string")

    def prompt_set(self, value: dict[str, Any], where: str) -> None:
        _require(is_prompt_name(value["name"]), f"{where} name {value['name']!r} is not a prompt set name")
        where = f"{where} {value['name']!r}"
        _string(value["description"], f"{where}: description")
        names = _array(value["prompts"], f"{where}: prompts")
        _require(all(is_prompt_name(n) for n in names), f"{where}: prompts must be prompt names")
        ascending(names, f"{where}: prompts")

    def environment(self, value: dict[str, Any], where: str) -> None:
        _require(is_slug(value["name"]), f"{where} name {value['name']!r} is not a slug")
        where = f"{where} {value['name']!r}"
        _string(value["description"], f"{where}: description")
        members = ("number", "kind", "rollback_of", "message", "prompts")
        revisions = self.items(value["revisions"], members, f"{where}: revisions")
        for revision in revisions:
            self.revision(revision, where)
        ascending([r["number"] for r in revisions], f"{where}: revisions")
        _require(
            self.history == "full" or len(revisions) <= 1,
            f"{where}: with history 'latest' only the current revision is exported",
        )

    def revision(self, value: dict[str, Any], where: str) -> None:
        number, rollback_of = value["number"], value["rollback_of"]
        _require(_is_int(number, 1), f"{where}: a revision number must be an integer >= 1")
        where = f"{where} revision {number}"
        _require(
            value["kind"] in _REVISION_KINDS, f"{where}: kind must be one of {', '.join(_REVISION_KINDS)}"
        )
        _require(
            (rollback_of is None) == (value["kind"] != "rollback")
            and (rollback_of is None or (_is_int(rollback_of, 1) and rollback_of < number)),
            f"{where}: rollback_of must name an earlier revision exactly when kind is 'rollback'",
        )
        _string(value["message"], f"{where}: message")
        prompts = value["prompts"]
        _require(isinstance(prompts, dict), f"{where}: prompts must be an object")
        for name, entry in prompts.items():
            _require(is_prompt_name(name), f"{where}: {name!r} is not a prompt name")
            self.members(entry, ("version", "digest"), f"{where}: prompts.{name}")
            _require(_is_int(entry["version"], 1), f"{where}: prompts.{name}.version must be an integer >= 1")
            _require(is_digest(entry["digest"]), f"{where}: prompts.{name}.digest is malformed")

    def dependency(self, value: dict[str, Any], where: str) -> tuple[str, str, int, str]:
        source = self.members(value["from"], ("project", "prompt", "version"), f"{where}.from")
        target = self.members(value["to"], ("project", "prompt", "version", "digest"), f"{where}.to")
        for end, part in ((source, "from"), (target, "to")):
            _require(
                is_slug(end["project"]) and is_prompt_name(end["prompt"]) and _is_int(end["version"], 1),
                f"{where}.{part} must name a project slug, a prompt name and a version >= 1",
            )
        _require(is_digest(target["digest"]), f"{where}.to.digest is malformed")
        reference = _string(value["reference"], f"{where}.reference")
        try:
            parsed = parse_reference(reference)
        except PromptFormatError as exc:
            raise _fail(f"{where}: {exc}") from None
        _require(parsed.text == reference, f"{where}: reference {reference!r} is not in normalized form")
        _require(
            (parsed.project or source["project"], parsed.name) == (target["project"], target["prompt"])
            and parsed.version in (None, target["version"]),
            f"{where}: {reference!r} cannot resolve to "
            f"{target['project']}:{target['prompt']}@{target['version']}",
        )
        return (source["project"], source["prompt"], source["version"], reference)

    def objects(self, value: Any) -> list[dict[str, Any]]:
        objects = self.items(value, ("digest", "size"), "objects")
        for entry in objects:
            if not is_digest(entry["digest"]):
                raise _fail(f"objects: malformed digest {entry['digest']!r}")
            if not _is_int(entry["size"], 0):
                raise _fail(f"objects: size of {entry['digest']} must be an integer >= 0")
        ascending([o["digest"] for o in objects], "objects")
        return objects


def validate_manifest(doc: Any) -> dict[str, Any]:
    """Check a parsed manifest against docs/bundle-format.md section 4 and return it unchanged.

    Raises BundleVersionUnsupported for another format or major version, BundleMalformed for
    a shape, type or order error, and BundleDanglingReference for a dependency, revision or
    selection that names a version the bundle does not carry.
    """
    if not isinstance(doc, dict):
        raise _fail("the manifest must be a JSON object")
    if doc.get("format") != FORMAT:
        raise BundleVersionUnsupported(f"the manifest's format is {doc.get('format')!r}, not {FORMAT!r}")
    checker = _Checker(reader_is_strict(doc.get("version"), "manifest version"))
    checker.members(doc, MANIFEST_MEMBERS, "the manifest")
    checker.exporter(doc["exporter"])
    selection = checker.selection(doc["selection"])
    options = checker.options(doc["options"])
    checker.organisation(doc["organisation"])
    members = ("slug", "name", "description", "prompts", "prompt_sets", "environments")
    projects = checker.items(doc["projects"], members, "projects")
    for index, project in enumerate(projects):
        checker.project(project, f"projects[{index}]", options["environments"])
    ascending([p["slug"] for p in projects], "projects")
    dependencies = checker.items(doc["dependencies"], ("from", "reference", "to"), "dependencies")
    ascending(
        [checker.dependency(d, f"dependencies[{i}]") for i, d in enumerate(dependencies)], "dependencies"
    )
    objects = checker.objects(doc["objects"])
    check_references(selection, options, projects, dependencies, objects)
    return doc
