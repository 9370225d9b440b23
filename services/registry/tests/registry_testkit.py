"""Helpers for revision tests: add prompt versions straight through the ORM (the prompts API has
its own tests), and drive environments through the API."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from anvil_registry.models import Organisation, Project, Prompt, PromptVersion
from anvil_registry.state import RegistryState
from anvil_wire import content_digest, normalize_content


async def add_version(
    state: RegistryState,
    project: str,
    name: str,
    template: Any,
    *,
    variables: dict[str, Any] | None = None,
    org: str = "acme",
) -> int:
    """Create (or extend) prompt ``name`` in ``org/project`` with a new version; return its number."""
    content = normalize_content({"template": template, "variables": variables or {}})
    async with state.db.session() as session:
        proj = await session.scalar(
            select(Project).join(Organisation).where(Organisation.slug == org, Project.slug == project)
        )
        assert proj is not None
        prompt = await session.scalar(select(Prompt).where(Prompt.project_id == proj.id, Prompt.name == name))
        if prompt is None:
            prompt = Prompt(project_id=proj.id, name=name)
            session.add(prompt)
            await session.flush()
        prompt.latest_version += 1
        session.add(
            PromptVersion(
                prompt_id=prompt.id,
                number=prompt.latest_version,
                content_hash=content_digest(content),
                content=content,
                created_by="test",
            )
        )
        return prompt.latest_version


async def create_env(client: Any, headers: dict[str, str], name: str, project: str = "web") -> dict[str, Any]:
    r = await client.post(
        f"/v1/orgs/acme/projects/{project}/environments", json={"name": name}, headers=headers
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def publish(
    client: Any,
    headers: dict[str, str],
    env: str,
    body: dict[str, Any],
    *,
    project: str = "web",
    etag: str | None = None,
) -> Any:
    url = f"/v1/orgs/acme/projects/{project}/environments/{env}"
    if etag is None:
        etag = (await client.get(url, headers=headers)).headers["etag"]
    return await client.post(f"{url}/revisions", json=body, headers={**headers, "If-Match": etag})
