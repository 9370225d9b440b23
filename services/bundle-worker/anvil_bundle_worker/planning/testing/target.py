"""A target organisation in memory: import-state answers (B2) and import bodies applied (B3)."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from anvil_wire.prompts import content_digest, template_references

from ..apply import plan_to_apply
from ..model import Plan
from ..plan import needed_target_digests, plan_import, state_query
from ..state import merge_state
from .exporter import Content, make_content

__all__ = ["TargetModel", "TargetRefused"]

Key = tuple[str, str]


class TargetRefused(Exception):
    """The model registry refused an import body (as B3 would, with a problem)."""


class TargetModel:
    """A target organisation: import-state answers (B2) and import bodies applied (B3)."""

    def __init__(self, organisation: str = "prod") -> None:
        self.organisation = organisation
        self.projects: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, Content] = {}  # for diffs
        self.rounds = 0  # import-state queries answered

    def project(self, slug: str, *, name: str | None = None, archived: bool = False) -> dict[str, Any]:
        if slug not in self.projects:
            self.projects[slug] = {
                "name": name or slug.title(),
                "description": "",
                "archived": archived,
                "prompts": {},
                "prompt_sets": {},
                "environments": {},
            }
        return self.projects[slug]

    def prompt(self, key: str, *versions: str | Mapping[str, Any], archived: bool = False) -> list[str]:
        """Create ``project/name`` (or add to it): each version a digest, a template or a content."""
        slug, _, name = key.partition("/")
        prompt = self.project(slug)["prompts"].setdefault(name, {"versions": [], "archived": archived})
        added = []
        for value in versions:
            if isinstance(value, str) and value.startswith("sha256:"):
                added.append(value)
            else:
                content = make_content(value)
                added.append(content_digest(content))
                self.contents[added[-1]] = content
        for digest in added:
            if not prompt["versions"] or prompt["versions"][-1] != digest:
                prompt["versions"].append(digest)
        return added

    def prompt_set(
        self, slug: str, name: str, members: Sequence[str], *, description: str = "", archived: bool = False
    ) -> None:
        sets = self.project(slug)["prompt_sets"]
        row_version = sets[name]["row_version"] + 1 if name in sets else 1
        sets[name] = {
            "description": description,
            "prompts": sorted(set(members)),
            "row_version": row_version,
            "archived": archived,
        }

    def environment(
        self, slug: str, name: str, *revisions: Mapping[str, str], archived: bool = False
    ) -> None:
        """Create ``name`` (or publish to it): each revision maps served prompt names to digests."""
        env = self.project(slug)["environments"].setdefault(name, {"revisions": [], "archived": archived})
        env["revisions"].extend(
            {"prompts": dict(r), "versions": {}, "kind": "publish", "rollback_of": None} for r in revisions
        )

    def answer(self, query: Mapping[str, Any]) -> dict[str, Any]:
        """The import-state answer (B2) to ``query``: absent objects are null."""
        self.rounds += 1
        result: dict[str, Any] = {}
        for slug, names in sorted(query["projects"].items()):
            project = self.projects.get(slug)
            if project is None:
                result[slug] = None
                continue
            result[slug] = {
                "name": project["name"],
                "description": project["description"],
                "archived": project["archived"],
                "prompts": {n: self._prompt_state(project, n) for n in sorted(set(names["prompts"]))},
                "prompt_sets": {
                    n: copy.deepcopy(project["prompt_sets"].get(n)) for n in sorted(set(names["prompt_sets"]))
                },
                "environments": {n: self._env_state(project, n) for n in sorted(set(names["environments"]))},
            }
        return {
            "organisation": {"slug": self.organisation, "name": self.organisation.title()},
            "projects": result,
        }

    @staticmethod
    def _prompt_state(project: Mapping[str, Any], name: str) -> dict[str, Any] | None:
        prompt = project["prompts"].get(name)
        if prompt is None:
            return None
        return {
            "head": len(prompt["versions"]),
            "archived": prompt["archived"],
            "versions": list(prompt["versions"]),
        }

    @staticmethod
    def _env_state(project: Mapping[str, Any], name: str) -> dict[str, Any] | None:
        env = project["environments"].get(name)
        if env is None:
            return None
        current = env["revisions"][-1] if env["revisions"] else {"prompts": {}, "versions": {}}
        served = {}
        for prompt, digest in sorted(current["prompts"].items()):
            versions = project["prompts"][prompt]["versions"]
            newest = len(versions) - versions[::-1].index(digest)
            served[prompt] = {"version": current["versions"].get(prompt, newest), "digest": digest}
        return {"last_revision": len(env["revisions"]), "archived": env["archived"], "prompts": served}

    def state_for(
        self,
        manifest: Mapping[str, Any],
        *,
        strategy: str = "fail",
        overrides: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Ask import-state until ``state_query`` is satisfied, as the worker does."""
        state: dict[str, Any] | None = None
        while True:
            query = state_query(manifest, state, strategy=strategy, overrides=overrides)
            if not query["projects"]:
                assert state is not None
                return state
            answer = self.answer(query)
            state = answer if state is None else merge_state(state, answer)

    def plan(
        self,
        manifest: Mapping[str, Any],
        contents: Mapping[str, Content] | None = None,
        *,
        strategy: str = "fail",
        overrides: Mapping[str, str] | None = None,
    ) -> Plan:
        """Plan as the worker does: the state in rounds, the target contents the diffs need."""
        state = self.state_for(manifest, strategy=strategy, overrides=overrides)
        needed = needed_target_digests(manifest, state)
        return plan_import(
            manifest,
            state,
            strategy=strategy,
            overrides=overrides,
            contents=contents,
            target_contents={d: self.contents[d] for d in needed if d in self.contents},
        )

    def apply_plan(
        self, plan: Plan, manifest: Mapping[str, Any], contents: Mapping[str, Content]
    ) -> dict[str, Any]:
        """``plan_to_apply`` then ``apply``; the body."""
        body = plan_to_apply(plan, manifest, contents, import_id=str(uuid.uuid4()))
        self.apply(body)
        self.contents.update(body["contents"])
        return body

    def heads(self) -> dict[str, Any]:
        """What ``expect`` compares: per project, existence and each object's head."""
        return {
            slug: {
                "prompts": {n: len(p["versions"]) for n, p in project["prompts"].items()},
                "prompt_sets": {n: s["row_version"] for n, s in project["prompt_sets"].items()},
                "environments": {n: len(e["revisions"]) for n, e in project["environments"].items()},
            }
            for slug, project in self.projects.items()
        }

    def apply(self, body: Mapping[str, Any]) -> None:
        """Apply an import body with the registry's rules: all of it, or nothing (``TargetRefused``)."""
        self._check_expect(body["expect"])
        before = copy.deepcopy(self.projects)
        try:
            self._write(body)
        except TargetRefused:
            self.projects = before
            raise

    def _check_expect(self, expect: Mapping[str, Any]) -> None:
        absent = {"prompts": 0, "prompt_sets": 0, "environments": -1}
        heads = self.heads()
        for slug, seen in expect["projects"].items():
            if (slug in self.projects) != seen["exists"]:
                raise TargetRefused(f"import-target-changed: project {slug}")
            for section, default in absent.items():
                for name, head in seen[section].items():
                    if heads.get(slug, {}).get(section, {}).get(name, default) != head:
                        raise TargetRefused(f"import-target-changed: {section} {slug}/{name}")

    def _write(self, body: Mapping[str, Any]) -> None:
        for item in body["projects"]:
            if item["slug"] in self.projects:
                raise TargetRefused(f"project {item['slug']} exists")
            self.project(item["slug"], name=item["name"])
        touched = {p["project"] for p in body["prompts"]} | {s["project"] for s in body["prompt_sets"]}
        for slug in touched | {e["project"] for e in body["environments"]}:
            if self.projects[slug]["archived"]:
                raise TargetRefused(f"project {slug} is archived")
        new = set()
        for item in body["prompts"]:
            prompts = self.projects[item["project"]]["prompts"]
            if item["name"] not in prompts:
                new.add((item["project"], item["name"]))
            prompt = prompts.setdefault(item["name"], {"versions": [], "archived": False})
            for version in item["versions"]:
                if version["digest"] not in body["contents"]:
                    raise TargetRefused(f"contents lack {version['digest']}")
                if prompt["versions"] and prompt["versions"][-1] == version["digest"]:
                    continue
                if prompt["archived"]:
                    raise TargetRefused(f"prompt {item['project']}/{item['name']} is archived")
                prompt["versions"].append(version["digest"])
        self._check_references(body)
        for item in body["prompts"]:
            if item["archived"]:
                self.projects[item["project"]]["prompts"][item["name"]]["archived"] = True
        self._write_sets(body["prompt_sets"], new)
        self._write_environments(body["environments"])

    def _check_references(self, body: Mapping[str, Any]) -> None:
        """A pinned partial of a new version must name a version that exists after the import."""
        for item in body["prompts"]:
            for version in item["versions"]:
                for ref in template_references(body["contents"][version["digest"]]):
                    slug = ref.project or item["project"]
                    if slug not in self.projects:
                        raise TargetRefused(f"{item['name']}: no project {slug!r}")
                    found = self.projects[slug]["prompts"].get(ref.name, {"versions": []})
                    if ref.version is not None and ref.version > len(found["versions"]):
                        raise TargetRefused(f"{item['name']}: {ref.text} names a version that does not exist")

    def _write_sets(self, sets: Sequence[Mapping[str, Any]], new: set[Key]) -> None:
        for item in sets:
            project = self.projects[item["project"]]
            found = project["prompt_sets"].get(item["name"])
            if found is not None and found["archived"]:
                raise TargetRefused(f"prompt set {item['name']} is archived")
            for member in item["prompts"]:
                prompt = project["prompts"].get(member)
                if prompt is None or (prompt["archived"] and (item["project"], member) not in new):
                    raise TargetRefused(f"prompt set {item['name']}: no active prompt {member!r}")
            self.prompt_set(item["project"], item["name"], item["prompts"], description=item["description"])

    def _write_environments(self, environments: Sequence[Mapping[str, Any]]) -> None:
        for item in environments:
            project = self.projects[item["project"]]
            env = project["environments"].get(item["name"])
            if env is not None and env["archived"]:
                raise TargetRefused(f"environment {item['name']} is archived")
            env = project["environments"].setdefault(item["name"], {"revisions": [], "archived": False})
            for revision in item["revisions"]:
                for name, digest in revision["prompts"].items():
                    versions = project["prompts"].get(name, {}).get("versions", [])
                    if digest not in versions:
                        raise TargetRefused(f"environment {item['name']}: {name!r} has no version {digest}")
                    number = revision["versions"].get(name)
                    if number is not None and (number > len(versions) or versions[number - 1] != digest):
                        raise TargetRefused(
                            f"environment {item['name']}: {name!r} version {number} is not {digest}"
                        )
                source = revision["rollback_of"]
                if source is not None and (
                    source > len(env["revisions"])
                    or env["revisions"][source - 1]["prompts"] != revision["prompts"]
                ):
                    raise TargetRefused(f"environment {item['name']}: cannot roll back to revision {source}")
                env["revisions"].append(copy.deepcopy(dict(revision)))
