"""Helpers for the bundle endpoint tests: build an organisation through the API, read it back in
comparable form, and turn a snapshot into the apply body a plan for an empty target makes."""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from registry_testkit import create_env, publish

from anvil_common.db import create_engine
from anvil_common.testing import TemplateDatabase, TestDatabase, snapshot_tables
from anvil_registry.app import create_app
from anvil_registry.auth import KIND_SCOPES
from anvil_registry.settings import RegistrySettings
from anvil_registry.state import RegistryState

PUBLIC_URL = "http://testserver"
SOURCE = "http://source.test"
BUNDLE = "sha256:" + "b" * 64


async def version(
    client: Any, headers: dict[str, str], project: str, name: str, template: Any, *, org: str = "acme"
) -> dict[str, Any]:
    """Add a version through the API (creating the prompt; variables declared); the answer's JSON."""
    url = f"/v1/orgs/{org}/projects/{project}/prompts/{name}/versions"
    variables = {v: {} for v in re.findall(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}", str(template))}
    content = {"template": template, "variables": variables}
    r = await client.post(url, json={"content": content, "message": f"{name}: {template}"}, headers=headers)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


async def project(client: Any, headers: dict[str, str], slug: str, *, org: str = "acme") -> None:
    r = await client.post(
        f"/v1/orgs/{org}/projects", json={"slug": slug, "name": slug.title()}, headers=headers
    )
    assert r.status_code == 201, r.text


async def build_acme(client: Any, headers: dict[str, str]) -> None:
    """acme/web (from the ``acme`` fixture) and acme/shared with history worth restoring:
    pinned, unsuffixed and environment partials, across projects too, a reverted prompt (A, B, A),
    publish, promote and rollback revisions, a prompt set, an archived prompt and an empty one."""
    await project(client, headers, "shared")
    await version(client, headers, "shared", "footer", "Footer one")
    await version(client, headers, "shared", "footer", "Footer two")
    await create_env(client, headers, "prod", project="shared")
    assert (
        await publish(client, headers, "prod", {"prompts": {"footer": 2}}, project="shared")
    ).status_code == 201
    await version(client, headers, "shared", "footer", "Footer three")  # prod keeps serving 2
    await version(client, headers, "web", "greeting", "Hello {{name}}")
    await version(client, headers, "web", "greeting", "Hi {{name}} {{> shared:footer@1}}")
    await version(client, headers, "web", "greeting", "Hello {{name}}")
    await version(client, headers, "web", "farewell", "Bye {{> shared:footer@prod}}")
    await version(client, headers, "web", "old", "Old")
    await version(client, headers, "web", "letter", "{{> greeting}} and {{> shared:footer@1}}")
    r = await client.post("/v1/orgs/acme/projects/web/prompts", json={"name": "empty"}, headers=headers)
    assert r.status_code == 201, r.text
    for env in ("staging", "prod"):
        await create_env(client, headers, env)
    steps = [
        ("staging", "revisions", {"prompts": {"greeting": 1, "old": 1}}),
        ("staging", "revisions", {"prompts": {"greeting": 2, "farewell": 1}}),
        ("prod", "promotions", {"from_environment": "staging"}),
        ("staging", "rollbacks", {"to_revision": 1, "message": "back"}),
        ("prod", "revisions", {"prompts": {"greeting": 3}, "message": "reverted"}),
    ]
    for env, what, body in steps:
        url = f"/v1/orgs/acme/projects/web/environments/{env}"
        etag = (await client.get(url, headers=headers)).headers["etag"]
        r = await client.post(f"{url}/{what}", json=body, headers={**headers, "If-Match": etag})
        assert r.status_code == 201, r.text
    r = await client.post(
        "/v1/orgs/acme/projects/web/prompt-sets",
        json={"name": "app", "description": "the app", "prompts": ["farewell", "greeting"]},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    r = await client.delete("/v1/orgs/acme/projects/web/prompts/old", headers=headers)
    assert r.status_code == 200, r.text


async def snapshot_of(
    client: Any, headers: dict[str, str], body: dict[str, Any], *, org: str = "acme"
) -> Any:
    return await client.post(f"/v1/orgs/{org}/snapshot", json=body, headers=headers)


def restore_body(snapshot: dict[str, Any], *, import_id: str | None = None) -> dict[str, Any]:
    """The apply body of a plan that writes ``snapshot`` into an organisation that has none of it."""
    snapshot = copy.deepcopy(snapshot)  # the body is the caller's to change
    body: dict[str, Any] = {
        "import_id": import_id or str(uuid.uuid4()),
        "origin": {"instance": SOURCE, "bundle": BUNDLE},
        "expect": {"projects": {p["slug"]: {"exists": False} for p in snapshot["projects"]}},
        "projects": [],
        "prompts": [],
        "prompt_sets": [],
        "environments": [],
        "contents": snapshot["contents"],
    }
    for p in snapshot["projects"]:
        slug = p["slug"]
        body["projects"].append({"slug": slug, "name": p["name"], "description": p["description"]})
        # A new prompt numbers its versions from 1 in the order written.
        numbers = {}
        for prompt in p["prompts"]:
            body["prompts"].append(
                {
                    "project": slug,
                    "name": prompt["name"],
                    "description": prompt["description"],
                    "archived": prompt["archived"],
                    "versions": [
                        {"digest": v["digest"], "message": v["message"]} for v in prompt["versions"]
                    ],
                }
            )
            numbers.update({(prompt["name"], v["number"]): i for i, v in enumerate(prompt["versions"], 1)})
        for s in p["prompt_sets"]:
            body["prompt_sets"].append({"project": slug, **s})
        for env in p["environments"]:
            revisions = []
            for r in env["revisions"]:
                revisions.append(
                    {
                        "prompts": {name: e["digest"] for name, e in r["prompts"].items()},
                        "versions": {name: numbers[(name, e["version"])] for name, e in r["prompts"].items()},
                        "kind": r["kind"],
                        "rollback_of": r["rollback_of"],
                        "message": r["message"],
                    }
                )
            body["environments"].append(
                {
                    "project": slug,
                    "name": env["name"],
                    "description": env["description"],
                    "revisions": revisions,
                }
            )
    return body


async def state_of(client: Any, headers: dict[str, str], org: str) -> dict[str, Any]:
    """Everything a restore must reproduce, read through the ordinary API, ids left out."""
    result: dict[str, Any] = {}
    projects = (await client.get(f"/v1/orgs/{org}/projects", headers=headers)).json()["items"]
    for p in sorted(projects, key=lambda p: p["slug"]):
        base = f"/v1/orgs/{org}/projects/{p['slug']}"
        prompts = {}
        listed = (await client.get(f"{base}/prompts?include_archived=true", headers=headers)).json()["items"]
        for prompt in listed:
            versions = (await client.get(f"{base}/prompts/{prompt['name']}/versions", headers=headers)).json()
            prompts[prompt["name"]] = {
                "archived": prompt["archived_at"] is not None,
                "description": prompt["description"],
                "versions": [
                    (v["number"], v["content_hash"], v["parent"], v["message"]) for v in versions["items"]
                ],
            }
        sets = (await client.get(f"{base}/prompt-sets", headers=headers)).json()["items"]
        environments = {}
        for env in (await client.get(f"{base}/environments", headers=headers)).json()["items"]:
            history = []
            listed = (
                await client.get(f"{base}/environments/{env['name']}/revisions", headers=headers)
            ).json()
            for summary in reversed(listed["items"]):
                url = f"{base}/environments/{env['name']}/revisions/{summary['number']}"
                r = (await client.get(url, headers=headers)).json()
                served = {k: (e["version"], e["digest"]) for k, e in r["prompts"].items()}
                history.append((r["number"], r["kind"], r["rollback_of"], r["message"], served))
            environments[env["name"]] = history
        result[p["slug"]] = {
            "name": p["name"],
            "prompts": prompts,
            "sets": {s["name"]: (s["description"], s["prompts"]) for s in sets},
            "environments": environments,
        }
    return result


@dataclass
class Served:
    """A registry holding acme (:func:`build_acme`), shared by the read-only tests of a module."""

    client: httpx.AsyncClient
    state: RegistryState
    database: TestDatabase
    admin: dict[str, str]

    def token(
        self, kind: str = "service", *, scopes: list[str], org: str = "acme", **limits: Any
    ) -> dict[str, str]:
        token, _ = self.state.issuer.issue(
            subject=f"{kind}:tests",
            kind=kind,
            audience="anvil-registry",
            scopes=scopes,
            ttl_seconds=600,
            org=org,
            **limits,
        )
        return {"Authorization": f"Bearer {token}"}

    async def tables(self) -> dict[str, list[dict[str, Any]]]:
        engine = create_engine(self.database.url, schema=self.database.schema)
        try:
            return await snapshot_tables(engine)
        finally:
            await engine.dispose()


@asynccontextmanager
async def serve_acme(template_db: TemplateDatabase, keys_file: Path, data_dir: Path) -> AsyncIterator[Served]:
    """A fresh database and app with acme built; on Postgres the module using it must use no
    per-test database (they share one schema)."""
    database = await template_db.fresh()
    settings = RegistrySettings(
        database_url=database.url,
        database_schema=database.schema,
        data_dir=data_dir,
        keys_file=keys_file,
        public_url=PUBLIC_URL,
        log_json=False,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        state: RegistryState = app.state.registry
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL) as client:
            token, _ = state.issuer.issue(
                subject="admin",
                kind="operator",
                audience="anvil-registry",
                scopes=KIND_SCOPES["operator"],
                ttl_seconds=600,
            )
            admin = {"Authorization": f"Bearer {token}"}
            r = await client.post("/v1/orgs", json={"slug": "acme", "name": "Acme"}, headers=admin)
            assert r.status_code == 201, r.text
            await project(client, admin, "web")
            await build_acme(client, admin)
            yield Served(client, state, database, admin)


def shared_registry(name: str) -> tuple[Any, Any]:
    """Module fixtures ``served`` (:func:`serve_acme`, built once per module) and ``client`` (its
    client, overriding the per-test one): ``served, client = shared_registry("snapshot")``.
    Every test of such a module needs ``pytestmark = pytest.mark.asyncio(loop_scope="module")``."""

    @pytest_asyncio.fixture(scope="module", loop_scope="module")
    async def served(template_db: Any, keyset_file: Path, tmp_path_factory: Any) -> AsyncIterator[Served]:
        async with serve_acme(template_db, keyset_file, tmp_path_factory.mktemp(name)) as registry:
            yield registry

    @pytest_asyncio.fixture(loop_scope="module")
    async def client(served: Served) -> httpx.AsyncClient:
        return served.client

    return served, client
