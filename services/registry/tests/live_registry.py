"""A real registry for other packages' tests: served by uvicorn on a loopback port with its own
migrated database and the instance key set it is given, and a ``Seeder`` that writes test data
through its public API. The bundle worker's and the push gateway's conftests build their
``live_registry`` fixtures on it (this directory is on pytest's pythonpath)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from anvil_common.testing import Snapshot, TemplateDatabase, migrated_template, serve, snapshotter

__all__ = ["LiveRegistry", "Seeder", "registry_template_db", "start_live_registry"]


@dataclass
class LiveRegistry:
    url: str
    app: FastAPI
    client: httpx.AsyncClient
    snapshot: Snapshot

    @property
    def state(self) -> Any:
        return self.app.state.registry


@contextlib.contextmanager
def registry_template_db(workdir: Path) -> Iterator[TemplateDatabase]:
    """A migrated registry database to copy for each test (``TemplateDatabase.fresh``)."""
    from anvil_registry.app import migrate_database as migrate_registry

    with migrated_template(migrate_registry, workdir, prefix="registry") as template:
        yield template


@contextlib.asynccontextmanager
async def start_live_registry(
    template: TemplateDatabase, keyset_file: Path, data_dir: Path, *, issuer: str
) -> AsyncIterator[LiveRegistry]:
    """A real registry (a fresh copy of ``template``) on a loopback port, signing with the key
    set in ``keyset_file``; ``issuer`` is its public URL (the ``iss`` of its tokens)."""
    from anvil_registry.app import create_app as create_registry
    from anvil_registry.settings import RegistrySettings

    database = await template.fresh()
    registry_settings = RegistrySettings(
        database_url=database.url,
        database_schema=database.schema,
        data_dir=data_dir,
        keys_file=keyset_file,
        generate_keys=False,
        public_url=issuer,
        log_json=False,
    )
    application = create_registry(registry_settings)
    async with (
        application.router.lifespan_context(application),
        serve(application) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        yield LiveRegistry(url, application, http, snapshotter(database))


class Seeder:
    """Writes test data into the live registry through its public API (as an instance admin)."""

    def __init__(self, registry: LiveRegistry, token: str) -> None:
        self.http = registry.client
        self.headers = {"Authorization": f"Bearer {token}"}

    async def _post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        r = await self.http.post(f"/v1{path}", json=body, headers={**self.headers, **(headers or {})})
        assert r.status_code in (200, 201), f"POST {path}: {r.status_code} {r.text}"
        return r.json()

    async def org(self, slug: str, *projects: str) -> None:
        await self._post("/orgs", {"slug": slug, "name": slug.title()})
        for project in projects:
            await self._post(f"/orgs/{slug}/projects", {"slug": project, "name": project.title()})

    async def version(self, org: str, project: str, name: str, template: str, message: str = "") -> int:
        """Add a version to prompt ``name`` (created on first use); its number."""
        base = f"/orgs/{org}/projects/{project}/prompts"
        found = await self.http.get(f"/v1{base}/{name}", headers=self.headers)
        if found.status_code == 404:
            await self._post(base, {"name": name})
        variables = {v: None for v in re.findall(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}", template)}
        body = {"content": {"template": template, "variables": variables}, "message": message}
        created = await self._post(f"{base}/{name}/versions", body)
        return int(created["number"])

    async def prompt_set(self, org: str, project: str, name: str, prompts: list[str]) -> None:
        await self._post(f"/orgs/{org}/projects/{project}/prompt-sets", {"name": name, "prompts": prompts})

    async def environment(self, org: str, project: str, name: str) -> None:
        await self._post(f"/orgs/{org}/projects/{project}/environments", {"name": name})

    async def publish(self, org: str, project: str, environment: str, prompts: dict[str, Any]) -> int:
        url = f"/v1/orgs/{org}/projects/{project}/environments/{environment}"
        etag = (await self.http.get(url, headers=self.headers)).headers["etag"]
        revision = await self._post(
            url.removeprefix("/v1") + "/revisions", {"prompts": prompts}, headers={"If-Match": etag}
        )
        return int(revision["number"])

    async def heads(self, org: str, project: str) -> dict[str, int]:
        """Prompt name -> latest version number (every prompt of the project)."""
        r = await self.http.get(
            f"/v1/orgs/{org}/projects/{project}/prompts", params={"page_size": 500}, headers=self.headers
        )
        assert r.status_code == 200, r.text
        return {p["name"]: p["latest_version"] for p in r.json()["items"]}

    async def template(self, org: str, project: str, name: str, number: int) -> Any:
        r = await self.http.get(
            f"/v1/orgs/{org}/projects/{project}/prompts/{name}/versions/{number}", headers=self.headers
        )
        assert r.status_code == 200, r.text
        return r.json()["content"]["template"]
