"""An environment's rollout policy over HTTP against a real gateway and registry on loopback:
``GET``/``PUT .../environments/{environment}/rollout-policy`` — defaults, ETags and If-Match,
scopes, tenancy, validation — every refusal with its exact problem type, and nothing written."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

PROD = "/v1/orgs/acme/projects/web/environments/prod/rollout-policy"
STAGING = "/v1/orgs/acme/projects/web/environments/staging/rollout-policy"


def auth(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:anvil:problem:{code}", body
    assert body["status"] == status
    return body


@pytest.fixture
async def world(gateway, seed) -> dict[str, str]:
    """acme/web with prod and staging, acme/shop/prod and other/web/prod; their ids by path."""
    await seed.org("acme", "web", "shop")
    await seed.org("other", "web")
    ids = {}
    for org, project, name in (
        ("acme", "web", "prod"),
        ("acme", "web", "staging"),
        ("acme", "shop", "prod"),
        ("other", "web", "prod"),
    ):
        await seed.environment(org, project, name)
        r = await seed.http.get(
            f"/v1/orgs/{org}/projects/{project}/environments/{name}", headers=seed.headers
        )
        ids[f"{org}/{project}/{name}"] = r.json()["id"]
    return ids


@pytest.fixture
def operator(make_token) -> str:
    """An operator of organisation acme with every operator scope."""
    return str(make_token("operator"))


async def put(gateway, token: str, body: Any, path: str = PROD, **headers: str) -> httpx.Response:
    return await gateway.client.put(path, json=body, headers=auth(token, **headers))


async def get(gateway, token: str, path: str = PROD) -> httpx.Response:
    return await gateway.client.get(path, headers=auth(token))


# -- reading and setting -----------------------------------------------------------------------


async def test_an_environment_without_a_policy_answers_404_no_rollout_policy(gateway, world, operator):
    body = problem(await get(gateway, operator), 404, "no-rollout-policy")
    assert body["detail"] == "environment 'prod' has no rollout policy"


async def test_a_policy_put_with_no_members_takes_the_defaults_and_is_201_then_readable(
    gateway, world, operator
):
    r = await put(gateway, operator, {})
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == '"r1"'
    body = r.json()
    assert body.pop("updated_at")
    assert body == {
        "organisation": "acme",
        "project": "web",
        "environment": "prod",
        "environment_id": world["acme/web/prod"],
        "max_nack_ratio": 0.5,
        "min_reports": 5,
        "auto_rollback": True,
        "updated_by": "tester",
    }
    r = await get(gateway, operator)
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"r1"'
    assert {k: v for k, v in r.json().items() if k != "updated_at"} == body
    problem(await get(gateway, operator, STAGING), 404, "no-rollout-policy")


async def test_a_policy_is_replaced_whole_with_200_and_a_new_etag(gateway, world, operator):
    await put(gateway, operator, {"max_nack_ratio": 0.2, "min_reports": 50, "auto_rollback": False})
    r = await put(gateway, operator, {"min_reports": 10})
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"r2"'
    assert (r.json()["max_nack_ratio"], r.json()["min_reports"], r.json()["auto_rollback"]) == (0.5, 10, True)
    r = await put(gateway, operator, {"max_nack_ratio": 1, "min_reports": 1}, **{"If-Match": '"r2"'})
    assert r.status_code == 200, r.text
    assert (r.headers["etag"], r.json()["max_nack_ratio"], r.json()["min_reports"]) == ('"r3"', 1.0, 1)
    r = await put(gateway, operator, {"max_nack_ratio": 0.3}, **{"If-Match": "*"})
    assert (r.status_code, r.json()["max_nack_ratio"]) == (200, 0.3)


async def test_a_stale_if_match_is_412_and_writes_nothing(gateway, world, operator):
    before = await gateway.snapshot()
    body = problem(await put(gateway, operator, {}, **{"If-Match": "*"}), 412, "precondition-failed")
    assert body["current_etag"] is None  # no policy yet: nothing matches
    assert await gateway.snapshot() == before
    await put(gateway, operator, {})
    await put(gateway, operator, {"min_reports": 9})
    before = await gateway.snapshot()
    for tag in ('"r1"', 'W/"r2"', "r2"):
        body = problem(
            await put(gateway, operator, {"min_reports": 3}, **{"If-Match": tag}), 412, "precondition-failed"
        )
        assert body["current_etag"] == '"r2"'
    assert await gateway.snapshot() == before
    assert (await get(gateway, operator)).json()["min_reports"] == 9


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"max_nack_ratio": 0}, ["body", "max_nack_ratio"]),
        ({"max_nack_ratio": -0.1}, ["body", "max_nack_ratio"]),
        ({"max_nack_ratio": 1.01}, ["body", "max_nack_ratio"]),
        ({"max_nack_ratio": "0.5"}, ["body", "max_nack_ratio"]),
        ({"max_nack_ratio": None}, ["body", "max_nack_ratio"]),
        ({"max_nack_ratio": True}, ["body", "max_nack_ratio"]),
        ({"min_reports": 0}, ["body", "min_reports"]),
        ({"min_reports": 1_000_001}, ["body", "min_reports"]),
        ({"min_reports": 2.5}, ["body", "min_reports"]),
        ({"min_reports": "5"}, ["body", "min_reports"]),
        ({"min_reports": True}, ["body", "min_reports"]),
        ({"auto_rollback": "yes"}, ["body", "auto_rollback"]),
        ({"auto_rollback": 1}, ["body", "auto_rollback"]),
        ({"threshold": 0.5}, ["body", "threshold"]),
        ([], ["body"]),
    ],
)
async def test_a_bad_policy_is_422_and_writes_nothing(gateway, world, operator, body, loc):
    await put(gateway, operator, {"min_reports": 7})
    before = await gateway.snapshot()
    errors = problem(await put(gateway, operator, body), 422, "validation-failed")["errors"]
    assert errors[0]["loc"] == loc, errors
    assert await gateway.snapshot() == before


async def test_a_body_that_is_not_json_is_refused_and_writes_nothing(gateway, world, operator):
    before = await gateway.snapshot()
    for content in (b"{not json", b""):
        r = await gateway.client.put(
            PROD, content=content, headers=auth(operator, **{"Content-Type": "application/json"})
        )
        problem(r, 422, "validation-failed")
    r = await gateway.client.put(
        PROD, content=b"{}", headers=auth(operator, **{"Content-Type": "text/plain"})
    )
    problem(r, 415, "unsupported-media-type")
    assert await gateway.snapshot() == before


# -- who may --------------------------------------------------------------------------------------


async def test_reading_needs_fleet_read_and_setting_needs_revisions_publish(gateway, world, make_token):
    before = await gateway.snapshot()
    problem(await gateway.client.get(PROD), 401, "invalid-token")
    problem(await gateway.client.put(PROD, json={}), 401, "invalid-token")
    problem(await get(gateway, "not-a-jwt"), 401, "invalid-token")
    problem(await put(gateway, make_token(audience="anvil-registry"), {}), 401, "invalid-token")
    for token in (
        make_token("client", org="acme", project="web", environment="prod"),
        make_token("operator", scopes=["revisions:publish", "config:read"]),
    ):
        assert problem(await get(gateway, token), 403, "forbidden")["required_scope"] == "fleet:read"
    for token in (
        make_token("client", org="acme", project="web", environment="prod"),
        make_token("operator", scopes=["fleet:read", "projects:write", "revisions:read"]),
        make_token("service", org=None, scopes=["fleet:read", "config:read"]),
    ):
        body = problem(await put(gateway, token, {}), 403, "forbidden")
        assert body["required_scope"] == "revisions:publish"
    assert await gateway.snapshot() == before

    publisher = make_token("service", org=None, scopes=["revisions:publish"], subject="service:deployer")
    r = await put(gateway, publisher, {})
    assert (r.status_code, r.json()["updated_by"]) == (201, "service:deployer")
    reader = make_token("service", scopes=["fleet:read"])
    assert (await get(gateway, reader)).status_code == 200


async def test_a_token_reaches_only_its_organisation_project_and_environment(gateway, world, make_token):
    before = await gateway.snapshot()
    in_other_org = make_token("operator", org="other")
    in_shop = make_token("operator", project="shop")
    in_staging = make_token("operator", project="web", environment="staging")
    for token, status, code in (
        (in_other_org, 404, "not-found"),
        (in_shop, 404, "not-found"),
        (in_staging, 403, "forbidden"),
    ):
        problem(await put(gateway, token, {}), status, code)
        problem(await get(gateway, token), status, code)
    assert await gateway.snapshot() == before

    in_prod = make_token("operator", project="web", environment="prod")
    assert (await put(gateway, in_prod, {"min_reports": 3})).status_code == 201
    assert (await get(gateway, in_prod)).json()["min_reports"] == 3
    # The other organisation's prod is another environment, with its own (absent) policy.
    other = "/v1/orgs/other/projects/web/environments/prod/rollout-policy"
    problem(await get(gateway, in_other_org, other), 404, "no-rollout-policy")


async def test_an_unknown_or_archived_environment_is_404_or_410_and_writes_nothing(
    gateway, world, seed, operator
):
    before = await gateway.snapshot()
    qa = "/v1/orgs/acme/projects/web/environments/qa/rollout-policy"
    assert (
        problem(await put(gateway, operator, {}, qa), 404, "not-found")["detail"]
        == "environment acme/web/qa not found"
    )
    problem(await get(gateway, operator, qa), 404, "not-found")
    r = await seed.http.delete("/v1/orgs/acme/projects/web/environments/staging", headers=seed.headers)
    assert r.status_code == 200, r.text
    problem(await put(gateway, operator, {}, STAGING), 410, "environment-archived")
    assert await gateway.snapshot() == before
