from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from anvil_registry.auth import KIND_SCOPES

PROBLEM = "application/problem+json"
ORG_OPERATOR_SCOPES = sorted(KIND_SCOPES["operator"] - {"orgs:admin"})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def audit(client, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    r = await client.get("/v1/audit", params=params, headers=headers)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_issue_revoke_and_project_creation_are_audited_newest_first(client, admin_headers, acme):
    r = await client.post(
        "/v1/tokens", json={"kind": "operator", "name": "ci", "org": "acme"}, headers=admin_headers
    )
    issued = r.json()
    await client.delete(f"/v1/tokens/{issued['id']}", headers=admin_headers)

    entries = await audit(client, admin_headers)
    assert [(e["action"], e["target"]) for e in entries] == [
        ("token.revoke", issued["id"]),
        ("token.issue", issued["id"]),
        ("project.create", "acme/web"),
        ("organisation.create", "acme"),
    ]
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
    assert all(e["actor"] == "tester" and e["org"] == "acme" for e in entries)
    assert entries[0]["actor_token"] is not None
    details = entries[1]["details"]
    assert (details["kind"], details["name"]) == ("operator", "ci")
    assert issued["token"] not in str(entries)


async def test_audit_filters_by_action_target_actor_and_since(client, admin_headers, make_token, acme):
    other = bearer(make_token(org=None, subject="someone-else"))
    await client.post("/v1/orgs/acme/projects", json={"slug": "api", "name": "API"}, headers=other)

    creations = await audit(client, admin_headers, action="project.create")
    assert [e["target"] for e in creations] == ["acme/api", "acme/web"]
    assert [e["target"] for e in await audit(client, admin_headers, target="acme/web")] == ["acme/web"]
    assert [e["target"] for e in await audit(client, admin_headers, actor="someone-else")] == ["acme/api"]
    newest = datetime.fromisoformat(creations[0]["at"])
    assert [
        e["target"]
        for e in await audit(client, admin_headers, action="project.create", since=newest.isoformat())
    ] == ["acme/api"]
    later = (newest + timedelta(days=1)).isoformat()
    assert await audit(client, admin_headers, since=later) == []
    assert await audit(client, admin_headers, action="nothing.happened") == []


async def test_naive_since_is_422_problem(client, admin_headers, acme):
    r = await client.get("/v1/audit", params={"since": "2026-01-01T00:00:00"}, headers=admin_headers)
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["type"] == "urn:anvil:problem:validation-failed"


async def test_audit_paginates_newest_first(client, admin_headers, acme):
    for i in range(5):
        await client.post(
            "/v1/orgs/acme/projects", json={"slug": f"p{i}", "name": "P"}, headers=admin_headers
        )
    everything = [e["id"] for e in await audit(client, admin_headers)]
    seen: list[int] = []
    page_token = None
    while True:
        params: dict[str, Any] = {"page_size": 2}
        if page_token:
            params["page_token"] = page_token
        page = (await client.get("/v1/audit", params=params, headers=admin_headers)).json()
        seen += [e["id"] for e in page["items"]]
        page_token = page["next_page_token"]
        if not page_token:
            break
    assert seen == everything == sorted(everything, reverse=True)
    assert len(seen) == 7  # organisation, project web, five more projects


async def test_org_limited_readers_see_only_their_organisation(client, admin_headers, make_token, acme):
    await client.post("/v1/orgs", json={"slug": "globex", "name": "Globex"}, headers=admin_headers)
    await client.post("/v1/orgs/globex/projects", json={"slug": "secret", "name": "S"}, headers=admin_headers)
    await client.post("/v1/tokens", json={"kind": "service", "name": "instance-wide"}, headers=admin_headers)

    acme_view = await audit(client, bearer(make_token(org="acme", scopes=["audit:read"])))
    assert {e["org"] for e in acme_view} == {"acme"}
    assert {e["target"] for e in acme_view} == {"acme", "acme/web"}
    globex_view = await audit(client, bearer(make_token(org="globex", scopes=["audit:read"])))
    assert {e["target"] for e in globex_view} == {"globex", "globex/secret"}
    assert await audit(client, bearer(make_token(org="nowhere", scopes=["audit:read"]))) == []
    instance_view = await audit(client, admin_headers, action="token.issue")
    assert [(e["org"], e["details"]["name"]) for e in instance_view] == [(None, "instance-wide")]


async def test_audit_needs_audit_read(client, make_token, acme):
    headers = bearer(make_token(scopes=sorted(set(ORG_OPERATOR_SCOPES) - {"audit:read"})))
    r = await client.get("/v1/audit", headers=headers)
    assert r.status_code == 403
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["required_scope"] == "audit:read"


async def test_audit_entries_carry_the_request_id(client, admin_headers, acme):
    headers = {**admin_headers, "X-Request-ID": "req-42"}
    r = await client.post(
        "/v1/tokens", json={"kind": "peer", "name": "mirror", "org": "acme"}, headers=headers
    )
    assert r.status_code == 201
    entry = (await audit(client, admin_headers, action="token.issue"))[0]
    assert entry["request_id"] == "req-42"
    assert entry["target"] == r.json()["id"]
