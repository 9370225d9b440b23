"""An exporting organisation in memory that writes valid manifests and their contents."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from anvil_wire.bundles.manifest import validate_manifest
from anvil_wire.canonical import canonical_json
from anvil_wire.prompts import content_digest, normalize_content, template_references

__all__ = ["Content", "Exporter", "make_content"]

Content = dict[str, Any]


def make_content(value: str | Mapping[str, Any]) -> Content:
    """Content in normal form: a template string, or a whole content object."""
    return normalize_content({"template": value} if isinstance(value, str) else value)


@dataclass
class _Prompt:
    description: str = ""
    archived: bool = False
    versions: list[Content] = field(default_factory=list)

    def add(self, value: str | Mapping[str, Any]) -> str:
        content = make_content(value)
        # Like the registry: content equal to the head is not a new version.
        if not self.versions or content_digest(self.versions[-1]) != content_digest(content):
            self.versions.append(content)
        return content_digest(content)


@dataclass(frozen=True)
class _Revision:
    message: str
    served: dict[str, int]  # name -> version number
    kind: str = "publish"
    rollback_of: int | None = None


@dataclass
class _Project:
    name: str
    description: str = ""
    prompts: dict[str, _Prompt] = field(default_factory=dict)
    sets: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    environments: dict[str, list[_Revision]] = field(default_factory=dict)


Key = tuple[str, str]


class Exporter:
    """An exporting organisation: prompts with their history, sets, environments, exports."""

    def __init__(self, organisation: str = "acme", instance: str = "https://registry-a.example") -> None:
        self.organisation = organisation
        self.instance = instance
        self.projects: dict[str, _Project] = {}

    def project(self, slug: str, *, name: str | None = None, description: str = "") -> _Project:
        if slug not in self.projects:
            self.projects[slug] = _Project(name or slug.title(), description)
        return self.projects[slug]

    def prompt(
        self, key: str, *texts: str | Mapping[str, Any], description: str = "", archived: bool = False
    ) -> list[str]:
        """Create ``project/name`` (or add to it) with one version per text; their digests."""
        slug, _, name = key.partition("/")
        prompt = self.project(slug).prompts.setdefault(name, _Prompt(description, archived))
        return [prompt.add(text) for text in texts]

    def digest(self, key: str, number: int | None = None) -> str:
        slug, _, name = key.partition("/")
        versions = self.projects[slug].prompts[name].versions
        return content_digest(versions[-1 if number is None else number - 1])

    def prompt_set(self, slug: str, name: str, members: Sequence[str], description: str = "") -> None:
        self.project(slug).sets[name] = (description, sorted(members))

    def publish(
        self,
        slug: str,
        environment: str,
        served: Mapping[str, int | None],
        message: str = "",
        kind: str = "publish",
    ) -> int:
        """A new revision of ``environment`` serving each name at a version (``None``: the latest)."""
        prompts = self.projects[slug].prompts
        numbers = {n: v if v is not None else len(prompts[n].versions) for n, v in served.items()}
        revisions = self.project(slug).environments.setdefault(environment, [])
        revisions.append(_Revision(message, numbers, kind))
        return len(revisions)

    def roll_back(self, slug: str, environment: str, to: int, message: str = "") -> int:
        """A new revision serving what revision ``to`` served."""
        revisions = self.projects[slug].environments[environment]
        revisions.append(_Revision(message, dict(revisions[to - 1].served), "rollback", to))
        return len(revisions)

    def export(
        self,
        *,
        history: str = "full",
        environments: bool = False,
        kind: str = "organisation",
        project: str | None = None,
        prompts: Sequence[str] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Content]]:
        """The manifest and contents of an export (organisation, project or prompts selection)."""
        if kind == "prompts":
            assert prompts is not None
            chosen = [(k.partition("/")[0], k.partition("/")[2]) for k in prompts]
            slugs = sorted({slug for slug, _ in chosen})
        else:
            slugs = sorted(self.projects) if kind == "organisation" else [str(project)]
            chosen = [(s, n) for s in slugs for n in self.projects[s].prompts]
        wanted: dict[Key, set[int]] = {}
        for key in chosen:
            self._want(wanted, key, None if history == "full" else self._latest(key), history)
        revisions: dict[Key, list[tuple[int, _Revision]]] = {}
        if environments and kind != "prompts":
            for slug in slugs:
                for env, listed in sorted(self.projects[slug].environments.items()):
                    numbered = list(enumerate(listed, start=1))
                    revisions[(slug, env)] = numbered if history == "full" else numbered[-1:]
                    for _, revision in revisions[(slug, env)]:
                        for name, number in revision.served.items():
                            self._want(wanted, (slug, name), number, history)
        pins = self._close(wanted, history)
        selected = set(chosen)
        names = {
            slug: sorted(n for s, n in wanted if s == slug) for slug in {s for s, _ in wanted} | set(slugs)
        }
        manifest = {
            "format": "anvil.bundle",
            "version": "1.0",
            "exporter": {"instance": self.instance, "software": "anvil-bundle-worker/0.1.0"},
            "selection": {
                "kind": kind,
                "project": project if kind == "project" else None,
                "prompt_set": None,
                "prompts": sorted(prompts) if kind == "prompts" and prompts else None,
            },
            "options": {"history": history, "environments": environments},
            "organisation": {"slug": self.organisation, "name": self.organisation.title()},
            "projects": [
                self._project_json(slug, names[slug], wanted, selected, revisions, kind == "prompts")
                for slug in sorted(names)
            ],
            "dependencies": [pins[k] for k in sorted(pins)],
            "objects": [],
        }
        contents = {
            content_digest(c): c
            for (slug, name), numbers in wanted.items()
            for c in (self.projects[slug].prompts[name].versions[n - 1] for n in numbers)
        }
        manifest["objects"] = [
            {"digest": d, "size": len(canonical_json(contents[d]))} for d in sorted(contents)
        ]
        return validate_manifest(manifest), dict(sorted(contents.items()))

    def _latest(self, key: Key) -> int:
        return len(self.projects[key[0]].prompts[key[1]].versions)

    def _want(self, wanted: dict[Key, set[int]], key: Key, number: int | None, history: str) -> list[int]:
        """Add a version (every version with history 'full'); the ones newly added."""
        have = wanted.setdefault(key, set())
        numbers = range(1, self._latest(key) + 1) if history == "full" else [number]
        added = [n for n in numbers if n is not None and n not in have]
        have.update(added)
        return added

    def _close(self, wanted: dict[Key, set[int]], history: str) -> dict[tuple[str, str, int, str], Any]:
        """Pin every partial reference of every wanted version, adding what they reach."""
        pins: dict[tuple[str, str, int, str], Any] = {}
        frontier = [(key, n) for key, numbers in wanted.items() for n in numbers]
        while frontier:
            (slug, name), number = frontier.pop()
            for ref in template_references(self.projects[slug].prompts[name].versions[number - 1]):
                to = (ref.project or slug, ref.name)
                assert ref.environment is None, "Exporter does not resolve @environment references"
                to_number = ref.version or self._latest(to)
                pins[(slug, name, number, ref.text)] = {
                    "from": {"project": slug, "prompt": name, "version": number},
                    "reference": ref.text,
                    "to": {
                        "project": to[0],
                        "prompt": to[1],
                        "version": to_number,
                        "digest": self.digest("/".join(to), to_number),
                    },
                }
                frontier += [(to, n) for n in self._want(wanted, to, to_number, history)]
        return pins

    def _project_json(
        self,
        slug: str,
        names: list[str],
        wanted: dict[Key, set[int]],
        selected: set[Key],
        revisions: dict[Key, list[tuple[int, _Revision]]],
        no_sets: bool,
    ) -> dict[str, Any]:
        project = self.projects[slug]
        return {
            "slug": slug,
            "name": project.name,
            "description": project.description,
            "prompts": [self._prompt_json(slug, n, sorted(wanted[(slug, n)]), selected) for n in names],
            "prompt_sets": []
            if no_sets
            else [
                {"name": s, "description": d, "prompts": [m for m in members if m in names]}
                for s, (d, members) in sorted(project.sets.items())
            ],
            "environments": [
                {
                    "name": env,
                    "description": "",
                    "revisions": [
                        {
                            "number": number,
                            "kind": revision.kind,
                            "rollback_of": revision.rollback_of,
                            "message": revision.message,
                            "prompts": {
                                n: {"version": v, "digest": self.digest(f"{slug}/{n}", v)}
                                for n, v in sorted(revision.served.items())
                            },
                        }
                        for number, revision in listed
                    ],
                }
                for (s, env), listed in sorted(revisions.items())
                if s == slug
            ],
        }

    def _prompt_json(self, slug: str, name: str, numbers: list[int], selected: set[Key]) -> dict[str, Any]:
        prompt = self.projects[slug].prompts[name]
        key = f"{slug}/{name}"
        return {
            "name": name,
            "description": prompt.description,
            "archived": prompt.archived,
            "role": "selected" if (slug, name) in selected else "dependency",
            "versions": [{"number": n, "digest": self.digest(key, n), "message": f"v{n}"} for n in numbers],
            "ancestors": [self.digest(key, n) for n in range(1, numbers[0])],
        }
