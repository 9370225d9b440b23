"""Tenancy: project limits and instance-wide service tokens."""

import pytest

from anvil_registry.auth import KIND_SCOPES

ACME = "/v1/orgs/acme/projects"
OPS = sorted(KIND_SCOPES["operator"] - {"orgs:admin"})


@pytest.fixture
def web_only(make_token):
    """An operator limited to acme/web (docs/api.md 3.5: other projects do not exist for it)."""
    return {"Authorization": f"Bearer {make_token(scopes=OPS, project='web')}"}


async def _secret_project(client, admin_headers):
    r = await client.post(ACME, json={"slug": "secret", "name": "Secret"}, headers=admin_headers)
    assert r.status_code == 201, r.text
    r = await client.post(
        f"{ACME}/secret/prompts/key/versions",
        json={"content": {"template": "TOP SECRET launch code 0000"}},
        headers=admin_headers,
    )
    assert r.status_code == 201, r.text


async def test_project_limited_token_cannot_create_other_projects(client, acme, web_only, snapshot):
    before = await snapshot()
    r = await client.post(ACME, json={"slug": "evil", "name": "Evil"}, headers=web_only)
    assert r.status_code == 403, r.text
    assert await snapshot() == before


async def test_project_limited_token_cannot_reach_another_project_through_partials(
    client, acme, admin_headers, web_only
):
    await _secret_project(client, admin_headers)
    # the limited token cannot read it directly
    r = await client.get(f"{ACME}/secret/prompts/key/versions/1", headers=web_only)
    assert r.status_code == 404
    await client.post(f"{ACME}/web/environments", json={"name": "dev"}, headers=admin_headers)
    # writing a partial into the other project is refused as if the project did not exist
    r = await client.post(
        f"{ACME}/web/prompts/leak/versions",
        json={"content": {"template": "{{> secret:key@1}}"}},
        headers=web_only,
    )
    assert r.status_code == 422, r.text
    assert r.json()["type"] == "urn:anvil:problem:unresolved-partial"
    # and publishing a prompt someone else wrote with such a partial is refused too
    r = await client.post(
        f"{ACME}/web/prompts/leak/versions",
        json={"content": {"template": "{{> secret:key@1}}"}},
        headers=admin_headers,
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        f"{ACME}/web/environments/dev/revisions",
        json={"prompts": {"leak": 1}},
        headers={**web_only, "If-Match": '"rev-0"'},
    )
    assert r.status_code == 422, r.text
    assert r.json()["type"] == "urn:anvil:problem:unresolved-partial"
    doc = await client.get(f"{ACME}/web/environments/dev/config", headers=web_only)
    assert "TOP SECRET" not in doc.text


async def test_project_limited_token_cannot_probe_other_projects_by_error(
    client, acme, admin_headers, web_only
):
    await _secret_project(client, admin_headers)
    out: dict[str, tuple[int, str]] = {}
    for ref in ("secret:key@1", "secret:key@2", "nosuch:key@1"):
        r = await client.post(
            f"{ACME}/web/prompts/probe/versions",
            json={"content": {"template": "{{> " + ref + "}}"}},
            headers=web_only,
        )
        out[ref] = (r.status_code, r.json()["detail"])
    # An existing version, a missing version and a missing project all answer "no such project".
    assert {status for status, _ in out.values()} == {422}
    assert all("no project" in detail for _, detail in out.values()), out


async def test_project_limited_token_reads_only_its_projects_audit(client, acme, admin_headers, web_only):
    await _secret_project(client, admin_headers)
    r = await client.get("/v1/audit", params={"page_size": 500}, headers=web_only)
    assert r.status_code == 200
    targets = [e["target"] for e in r.json()["items"]]
    assert all(t == "acme/web" or t.startswith("acme/web/") for t in targets), targets


async def test_instance_wide_service_token_reads_revisions_of_every_organisation(client, acme, admin_headers):
    await client.post(f"{ACME}/web/environments", json={"name": "dev"}, headers=admin_headers)
    await client.post(
        f"{ACME}/web/prompts/a/versions", json={"content": {"template": "A"}}, headers=admin_headers
    )
    await client.post(
        f"{ACME}/web/environments/dev/revisions",
        json={"prompts": {"a": 1}},
        headers={**admin_headers, "If-Match": '"rev-0"'},
    )
    r = await client.post("/v1/tokens", json={"kind": "service", "name": "gateway"}, headers=admin_headers)
    assert r.status_code == 201, r.text
    gw = {"Authorization": f"Bearer {r.json()['token']}"}
    assert (await client.get("/v1/events", headers=gw)).status_code == 200
    doc = await client.get(f"{ACME}/web/environments/dev/revisions/1/document", headers=gw)
    assert doc.status_code == 200
    cfg = await client.get(f"{ACME}/web/environments/dev/config", headers=gw)
    assert cfg.status_code == 200


async def test_environment_limited_token_cannot_change_the_whole_project(
    client, acme, admin_headers, make_token, snapshot
):
    for env in ("dev", "prod"):
        await client.post(f"{ACME}/web/environments", json={"name": env}, headers=admin_headers)
    await client.post(
        f"{ACME}/web/prompts/a/versions", json={"content": {"template": "A"}}, headers=admin_headers
    )
    r = await client.post(
        f"{ACME}/web/environments/prod/revisions",
        json={"prompts": {"a": 1}},
        headers={**admin_headers, "If-Match": '"rev-0"'},
    )
    assert r.status_code == 201
    dev_only = {"Authorization": f"Bearer {make_token(scopes=OPS, project='web', environment='dev')}"}
    before = await snapshot()
    assert (await client.delete(f"{ACME}/web/environments/prod", headers=dev_only)).status_code == 403
    r = await client.post(f"{ACME}/web/environments", json={"name": "other"}, headers=dev_only)
    assert r.status_code == 403
    assert (await client.patch(f"{ACME}/web", json={"name": "x"}, headers=dev_only)).status_code == 403
    assert (await client.delete(f"{ACME}/web", headers=dev_only)).status_code == 403
    assert (await client.delete(f"{ACME}/web/prompts/a", headers=dev_only)).status_code == 403
    assert await snapshot() == before
    prod = await client.get(f"{ACME}/web/environments/prod/config", headers=admin_headers)
    assert prod.status_code == 200
