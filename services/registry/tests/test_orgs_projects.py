from __future__ import annotations

import httpx

PROBLEM = "application/problem+json"


async def test_instance_admin_creates_org_and_project_with_location_and_etag(client, admin_headers):
    r = await client.post("/v1/orgs", json={"slug": "acme", "name": "Acme"}, headers=admin_headers)
    assert r.status_code == 201
    assert r.headers["location"] == "/v1/orgs/acme"
    r = await client.post(
        "/v1/orgs/acme/projects", json={"slug": "web", "name": "Web"}, headers=admin_headers
    )
    assert r.status_code == 201
    assert r.headers["etag"] == '"p1"'
    r = await client.get("/v1/orgs/acme/projects/web", headers=admin_headers)
    assert r.json()["slug"] == "web"


async def test_duplicate_org_is_409_problem_and_writes_nothing(client, admin_headers, acme, snapshot):
    before = await snapshot()
    r = await client.post("/v1/orgs", json={"slug": "acme", "name": "Again"}, headers=admin_headers)
    assert r.status_code == 409
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["type"] == "urn:anvil:problem:organisation-exists"
    assert await snapshot() == before


async def test_org_operator_cannot_create_orgs_without_orgs_admin(client, acme_headers, snapshot):
    before = await snapshot()
    r = await client.post("/v1/orgs", json={"slug": "other", "name": "Other"}, headers=acme_headers)
    assert r.status_code == 403
    assert r.json()["required_scope"] == "orgs:admin"
    assert await snapshot() == before


async def test_token_of_one_org_sees_nothing_of_another(client, admin_headers, make_token, acme):
    await client.post("/v1/orgs", json={"slug": "globex", "name": "Globex"}, headers=admin_headers)
    await client.post("/v1/orgs/globex/projects", json={"slug": "secret", "name": "S"}, headers=admin_headers)
    globex = {"Authorization": f"Bearer {make_token(org='globex')}"}
    assert (await client.get("/v1/orgs/acme", headers=globex)).status_code == 404
    assert (await client.get("/v1/orgs/acme/projects", headers=globex)).status_code == 404
    assert (await client.get("/v1/orgs/acme/projects/web", headers=globex)).status_code == 404
    listed = (await client.get("/v1/orgs", headers=globex)).json()["items"]
    assert [o["slug"] for o in listed] == ["globex"]


async def test_project_list_paginates_with_cursor(client, admin_headers, acme):
    for i in range(5):
        r = await client.post(
            "/v1/orgs/acme/projects", json={"slug": f"p{i}", "name": f"P{i}"}, headers=admin_headers
        )
        assert r.status_code == 201
    seen: list[str] = []
    token = None
    while True:
        params: dict[str, str | int] = {"page_size": 2}
        if token:
            params["page_token"] = token
        page = (await client.get("/v1/orgs/acme/projects", params=params, headers=admin_headers)).json()
        seen += [p["slug"] for p in page["items"]]
        token = page["next_page_token"]
        if not token:
            break
    assert seen == ["p0", "p1", "p2", "p3", "p4", "web"]


async def test_garbage_page_token_is_400_problem(client, admin_headers, acme):
    r = await client.get("/v1/orgs/acme/projects", params={"page_token": "!!"}, headers=admin_headers)
    assert r.status_code == 400
    assert r.headers["content-type"] == PROBLEM


async def test_stale_if_match_on_project_update_is_412_and_writes_nothing(
    client, admin_headers, acme, snapshot
):
    before = await snapshot()
    r = await client.patch(
        "/v1/orgs/acme/projects/web", json={"name": "New"}, headers={**admin_headers, "If-Match": '"p9"'}
    )
    assert r.status_code == 412
    assert r.json()["current_etag"] == '"p1"'
    assert await snapshot() == before
    r = await client.patch(
        "/v1/orgs/acme/projects/web", json={"name": "New"}, headers={**admin_headers, "If-Match": '"p1"'}
    )
    assert r.status_code == 200
    assert r.headers["etag"] == '"p2"'


async def test_bad_bodies_are_problems_and_write_nothing(
    client: httpx.AsyncClient, admin_headers, acme, snapshot
):
    before = await snapshot()
    url = "/v1/orgs/acme/projects"
    cases = [
        (dict(content=b"{not json", headers={**admin_headers, "content-type": "application/json"}), 422),
        (
            dict(
                content=b"slug=x",
                headers={**admin_headers, "content-type": "application/x-www-form-urlencoded"},
            ),
            415,
        ),
        (dict(json={"slug": "Bad Slug", "name": "x"}, headers=admin_headers), 422),
        (dict(json={"slug": "ok", "name": "x", "extra": 1}, headers=admin_headers), 422),
        (
            dict(
                content=b"{" + b" " * 5_000_000 + b"}",
                headers={**admin_headers, "content-type": "application/json"},
            ),
            413,
        ),
    ]
    for kwargs, status in cases:
        r = await client.post(url, **kwargs)
        assert r.status_code == status, (kwargs.get("json"), r.text)
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["status"] == status
    assert await snapshot() == before


async def test_unknown_route_and_method_are_problems(client, admin_headers):
    r = await client.get("/v1/nothing-here", headers=admin_headers)
    assert r.status_code == 404
    assert r.headers["content-type"] == PROBLEM
    r = await client.put("/v1/orgs", json={}, headers=admin_headers)
    assert r.status_code == 405
    assert r.headers["content-type"] == PROBLEM
