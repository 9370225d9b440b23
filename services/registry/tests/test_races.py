"""Races on Postgres (READ COMMITTED) and SQLite: ETag checks under concurrency, creates of one
name, and revisions larger than one OR chain may be."""

import asyncio

import pytest
from sqlalchemy import select

from anvil_registry.models import Project, Prompt, PromptVersion
from anvil_wire import content_digest, normalize_content

ACME = "/v1/orgs/acme/projects"


async def test_if_match_lost_update_on_project_patch(raw, acme, admin_headers):
    r = await raw.get(f"{ACME}/web", headers=admin_headers)
    etag = r.headers["ETag"]
    h = {**admin_headers, "If-Match": etag}
    results = await asyncio.gather(
        *(raw.patch(f"{ACME}/web", json={"description": f"writer {i}"}, headers=h) for i in range(4))
    )
    codes = [x.status_code for x in results]
    assert codes.count(200) == 1, codes


async def test_if_match_lost_update_on_prompt_set_patch(raw, acme, admin_headers):
    await raw.post(f"{ACME}/web/prompts", json={"name": "a"}, headers=admin_headers)
    await raw.post(f"{ACME}/web/prompts", json={"name": "b"}, headers=admin_headers)
    r = await raw.post(f"{ACME}/web/prompt-sets", json={"name": "s", "prompts": ["a"]}, headers=admin_headers)
    assert r.status_code == 201, r.text
    h = {**admin_headers, "If-Match": r.headers["ETag"]}
    results = await asyncio.gather(
        raw.patch(f"{ACME}/web/prompt-sets/s", json={"prompts": ["a", "b"]}, headers=h),
        raw.patch(f"{ACME}/web/prompt-sets/s", json={"prompts": ["b"]}, headers=h),
    )
    codes = [x.status_code for x in results]
    assert codes.count(200) == 1, codes


@pytest.mark.parametrize("what", ["org", "project", "environment", "prompt", "prompt_set"])
async def test_concurrent_create_same_name(raw, acme, admin_headers, what):
    await raw.post(f"{ACME}/web/prompts", json={"name": "a"}, headers=admin_headers)
    url, body = {
        "org": ("/v1/orgs", {"slug": "dup", "name": "Dup"}),
        "project": (ACME, {"slug": "dup", "name": "Dup"}),
        "environment": (f"{ACME}/web/environments", {"name": "dup"}),
        "prompt": (f"{ACME}/web/prompts", {"name": "dup"}),
        "prompt_set": (f"{ACME}/web/prompt-sets", {"name": "dup", "prompts": ["a"]}),
    }[what]
    results = await asyncio.gather(*(raw.post(url, json=body, headers=admin_headers) for _ in range(4)))
    codes = sorted(x.status_code for x in results)
    assert codes == [201, 409, 409, 409], codes


async def test_concurrent_same_idempotency_key(raw, acme, admin_headers):
    await raw.post(f"{ACME}/web/environments", json={"name": "dev"}, headers=admin_headers)
    await raw.post(
        f"{ACME}/web/prompts/a/versions", json={"content": {"template": "A"}}, headers=admin_headers
    )
    h = {**admin_headers, "If-Match": '"rev-0"', "Idempotency-Key": "k1"}
    results = await asyncio.gather(
        *(
            raw.post(f"{ACME}/web/environments/dev/revisions", json={"prompts": {"a": 1}}, headers=h)
            for _ in range(4)
        )
    )
    codes = [(x.status_code, x.headers.get("Idempotent-Replayed")) for x in results]
    hist = (await raw.get(f"{ACME}/web/environments/dev/revisions", headers=admin_headers)).json()["items"]
    assert len(hist) == 1
    assert all(c == 201 for c, _ in codes)


@pytest.mark.parametrize("n", [900, 1100])
async def test_publish_many_prompts(raw, acme, admin_headers, state, n):
    await raw.post(f"{ACME}/web/environments", json={"name": "dev"}, headers=admin_headers)
    async with state.db.session() as s:
        proj = await s.scalar(select(Project).where(Project.slug == "web"))
        for i in range(n):
            p = Prompt(project_id=proj.id, name=f"p{i}", latest_version=1)
            s.add(p)
            await s.flush()
            c = normalize_content({"template": f"t{i}"})
            s.add(
                PromptVersion(
                    prompt_id=p.id, number=1, content_hash=content_digest(c), content=c, created_by="t"
                )
            )
    r = await raw.post(
        f"{ACME}/web/environments/dev/revisions",
        json={"prompts": {f"p{i}": 1 for i in range(n)}},
        headers={**admin_headers, "If-Match": '"rev-0"'},
    )
    assert r.status_code == 201
