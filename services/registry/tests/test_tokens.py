from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from anvil_registry.auth import KIND_SCOPES
from anvil_registry.models import Event, Token
from anvil_registry.tokens.policy import TOKEN_POLICY

PROBLEM = "application/problem+json"
ALL_SERVICES = ["anvil-bundle-worker", "anvil-push-gateway", "anvil-registry"]
ORG_OPERATOR_SCOPES = sorted(KIND_SCOPES["operator"] - {"orgs:admin"})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def lifetime(body: dict[str, Any]) -> int:
    expires = datetime.fromisoformat(body["expires_at"])
    created = datetime.fromisoformat(body["created_at"])
    return int((expires - created).total_seconds())


@pytest.fixture
async def prod(client, admin_headers, acme) -> None:
    """Environment acme/web/prod."""
    r = await client.post(
        "/v1/orgs/acme/projects/web/environments", json={"name": "prod"}, headers=admin_headers
    )
    assert r.status_code == 201, r.text


async def issue(client, headers: dict[str, str], **body: Any) -> Any:
    return await client.post("/v1/tokens", json=body, headers=headers)


async def count_events(state, kind: str) -> int:
    async with state.db.session(write=False) as session:
        return int(
            await session.scalar(select(func.count()).select_from(Event).where(Event.kind == kind)) or 0
        )


@pytest.mark.parametrize(
    ("body", "scopes", "audience"),
    [
        ({"kind": "operator", "org": "acme"}, ORG_OPERATOR_SCOPES, ALL_SERVICES),
        ({"kind": "operator"}, sorted(KIND_SCOPES["operator"]), ALL_SERVICES),
        ({"kind": "service", "org": "acme"}, sorted(KIND_SCOPES["service"]), ALL_SERVICES),
        ({"kind": "service"}, sorted(KIND_SCOPES["service"]), ALL_SERVICES),
        (
            {"kind": "client", "org": "acme", "project": "web", "environment": "prod"},
            ["config:read"],
            ["anvil-push-gateway", "anvil-registry"],
        ),
        (
            {"kind": "peer", "org": "acme"},
            sorted(KIND_SCOPES["peer"]),
            ["anvil-bundle-worker", "anvil-registry"],
        ),
    ],
)
async def test_issue_each_kind_with_defaults(client, admin_headers, prod, body, scopes, audience):
    r = await issue(client, admin_headers, name="ci-bot", **body)
    assert r.status_code == 201, r.text
    issued = r.json()
    assert r.headers["location"] == f"/v1/tokens/{issued['id']}"
    assert issued["kind"] == body["kind"]
    assert issued["subject"] == f"{body['kind']}:ci-bot"
    assert issued["org"] == body.get("org")
    assert issued["project"] == body.get("project")
    assert issued["environment"] == body.get("environment")
    assert issued["scopes"] == scopes
    assert issued["audience"] == audience
    assert lifetime(issued) == TOKEN_POLICY[body["kind"]].default_ttl
    assert issued["token"].count(".") == 2
    got = (await client.get(f"/v1/tokens/{issued['id']}", headers=admin_headers)).json()
    assert "token" not in got
    assert got == {k: v for k, v in issued.items() if k != "token"}


def test_policy_constants_match_the_documented_defaults():
    hour, day = 3600, 86400
    assert {k: (p.default_ttl, p.max_ttl) for k, p in TOKEN_POLICY.items()} == {
        "operator": (12 * hour, 90 * day),
        "service": (30 * day, 365 * day),
        "client": (90 * day, 365 * day),
        "peer": (30 * day, 365 * day),
    }


async def test_issued_token_works_and_is_refused_at_once_after_revocation(client, admin_headers, acme, state):
    r = await issue(client, admin_headers, kind="operator", name="deployer", org="acme", ttl_seconds=600)
    assert r.status_code == 201
    issued = r.json()
    assert lifetime(issued) == 600
    headers = bearer(issued["token"])
    assert (await client.get("/v1/orgs/acme", headers=headers)).status_code == 200

    r = await client.delete(f"/v1/tokens/{issued['id']}", headers=admin_headers)
    assert r.status_code == 200
    revoked = r.json()
    assert revoked["revoked_at"] is not None
    assert revoked["revoked_by"] == "tester"
    r = await client.get("/v1/orgs/acme", headers=headers)
    assert r.status_code == 401
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["type"] == "urn:anvil:problem:invalid-token"

    async with state.db.session(write=False) as session:
        event = await session.scalar(select(Event).where(Event.kind == "token.revoked"))
        assert event is not None
        assert event.payload == {
            "jti": issued["id"],
            "expires_at": revoked["expires_at"].replace("Z", "+00:00"),
        }
        org_id = await session.scalar(select(Token.organisation_id).where(Token.id == issued["id"]))
        assert event.organisation_id == org_id is not None


async def test_revoking_twice_is_idempotent_without_a_second_event(client, admin_headers, acme, state):
    issued = (await issue(client, admin_headers, kind="service", name="worker", org="acme")).json()
    first = await client.delete(f"/v1/tokens/{issued['id']}", headers=admin_headers)
    second = await client.delete(f"/v1/tokens/{issued['id']}", headers=admin_headers)
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert await count_events(state, "token.revoked") == 1
    entries = (await client.get("/v1/audit", params={"action": "token.revoke"}, headers=admin_headers)).json()
    assert [e["target"] for e in entries["items"]] == [issued["id"]]


async def test_other_replicas_learn_revocations_from_the_table(client, admin_headers, acme, state):
    issued = (await issue(client, admin_headers, kind="operator", name="ops", org="acme")).json()
    assert (await client.delete(f"/v1/tokens/{issued['id']}", headers=admin_headers)).status_code == 200
    # A replica that did not handle the DELETE: empty cache, due for a refresh.
    state.revocations.revoked = set()
    state.revocations.loaded_at = float("-inf")
    r = await client.get("/v1/orgs/acme", headers=bearer(issued["token"]))
    assert r.status_code == 401
    assert r.json()["type"] == "urn:anvil:problem:invalid-token"


async def test_token_string_is_never_stored(client, admin_headers, acme, snapshot):
    issued = (await issue(client, admin_headers, kind="operator", name="secretive", org="acme")).json()
    await client.delete(f"/v1/tokens/{issued['id']}", headers=admin_headers)
    everything = json.dumps(await snapshot(), default=str)
    assert issued["id"] in everything
    assert issued["token"] not in everything
    assert issued["token"].split(".")[2] not in everything


ADMIN: dict[str, Any] = {"org": None}
ACME_OP: dict[str, Any] = {"org": "acme", "scopes": ORG_OPERATOR_SCOPES}
ACME_WEB_OP: dict[str, Any] = {**ACME_OP, "project": "web"}
ACME_NARROW: dict[str, Any] = {"org": "acme", "scopes": ["tokens:admin", "projects:read"]}
CLIENT: dict[str, Any] = {"kind": "client", "org": "acme", "project": "web", "environment": "prod"}
OPERATOR: dict[str, Any] = {"kind": "operator", "org": "acme"}
PEER: dict[str, Any] = {"kind": "peer", "org": "acme"}
ESCALATIONS: list[tuple[dict[str, Any], dict[str, Any], str]] = [
    (ACME_OP, {**OPERATOR, "scopes": ["orgs:admin"]}, "instance-scope-in-org-token"),
    (ADMIN, {**OPERATOR, "scopes": ["orgs:admin", "projects:read"]}, "instance-scope-in-org-token"),
    (ACME_OP, {"kind": "operator"}, "organisation-required"),
    (ACME_OP, {**OPERATOR, "org": "globex"}, "organisation-limit"),
    (ACME_NARROW, {**OPERATOR, "scopes": ["revisions:publish"]}, "scope-escalation"),
    (ACME_NARROW, {**PEER, "scopes": ["projects:read", "bundles:import"]}, "scope-escalation"),
    ({"org": "acme", "scopes": ["tokens:admin"]}, PEER, "scope-escalation"),
    (ADMIN, {"kind": "service", "org": "acme", "scopes": ["tokens:admin"]}, "scope-not-allowed-for-kind"),
    (ADMIN, {**PEER, "scopes": ["revisions:publish"]}, "scope-not-allowed-for-kind"),
    (ADMIN, {**OPERATOR, "scopes": ["root:everything"]}, "unknown-scope"),
    (ADMIN, {"kind": "peer"}, "organisation-required"),
    (ADMIN, {"kind": "client"}, "organisation-required"),
    (ACME_WEB_OP, OPERATOR, "limit-escalation"),
    (ACME_WEB_OP, {**OPERATOR, "project": "api"}, "limit-escalation"),
    ({**ACME_WEB_OP, "environment": "prod"}, {**OPERATOR, "project": "web"}, "limit-escalation"),
    (ADMIN, {"kind": "operator", "project": "web"}, "invalid-token-limits"),
    (ADMIN, {**OPERATOR, "environment": "prod"}, "invalid-token-limits"),
    (ADMIN, {**PEER, "audience": ["anvil-push-gateway"]}, "audience-not-allowed"),
    (ADMIN, {**CLIENT, "audience": ["anvil-bundle-worker"]}, "audience-not-allowed"),
    (ADMIN, {**OPERATOR, "audience": ["example.com"]}, "audience-not-allowed"),
]


@pytest.mark.parametrize(("caller", "body", "code"), ESCALATIONS)
async def test_escalation_attempts_are_refused_and_write_nothing(
    client, make_token, prod, snapshot, caller, body, code
):
    headers = bearer(make_token(**caller))
    before = await snapshot()
    r = await issue(client, headers, name="sneaky", **body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["type"] == f"urn:anvil:problem:{code}"
    assert await snapshot() == before


@pytest.mark.parametrize("kind", ["operator", "service", "client", "peer"])
async def test_ttl_above_the_kinds_maximum_is_refused(client, admin_headers, prod, snapshot, kind):
    limits = {"org": "acme", "project": "web", "environment": "prod"} if kind == "client" else {"org": "acme"}
    maximum = TOKEN_POLICY[kind].max_ttl
    before = await snapshot()
    r = await issue(client, admin_headers, kind=kind, name="long", ttl_seconds=maximum + 1, **limits)
    assert r.status_code == 422
    assert r.json()["type"] == "urn:anvil:problem:ttl-too-long"
    assert r.json()["max_ttl_seconds"] == maximum
    assert await snapshot() == before
    r = await issue(client, admin_headers, kind=kind, name="long", ttl_seconds=maximum, **limits)
    assert r.status_code == 201
    assert lifetime(r.json()) == maximum


LIMITS: dict[str, Any] = {"org": "acme", "project": "web", "environment": "prod"}
CLIENT_CASES: list[tuple[dict[str, Any], int, str]] = [
    ({"org": "acme", "project": "web"}, 422, "client-token-constraints"),
    ({**LIMITS, "scopes": ["config:read", "prompts:read"]}, 422, "client-token-constraints"),
    ({**LIMITS, "scopes": ["prompts:read"]}, 422, "client-token-constraints"),
    ({**LIMITS, "environment": "staging"}, 404, "not-found"),
    ({**LIMITS, "project": "api"}, 404, "not-found"),
    ({**LIMITS, "org": "nope"}, 404, "not-found"),
    ({**LIMITS, "ttl_seconds": 0}, 422, "validation-failed"),
    ({**LIMITS, "scopes": []}, 422, "validation-failed"),
]


@pytest.mark.parametrize(("body", "status", "code"), CLIENT_CASES)
async def test_client_token_constraints(client, admin_headers, prod, snapshot, body, status, code):
    before = await snapshot()
    r = await issue(client, admin_headers, kind="client", name="app", **body)
    assert r.status_code == status, r.text
    assert r.json()["type"] == f"urn:anvil:problem:{code}"
    assert await snapshot() == before


async def test_client_token_for_an_archived_environment_is_refused(client, admin_headers, prod, snapshot):
    r = await client.delete("/v1/orgs/acme/projects/web/environments/prod", headers=admin_headers)
    assert r.status_code == 200, r.text
    before = await snapshot()
    r = await issue(client, admin_headers, name="app", **CLIENT)
    assert r.status_code == 409
    assert r.json()["type"] == "urn:anvil:problem:archived"
    assert await snapshot() == before


async def test_client_token_is_limited_to_its_environment(client, admin_headers, prod):
    issued = (await issue(client, admin_headers, name="app", **CLIENT)).json()
    headers = bearer(issued["token"])
    assert (await client.get("/v1/orgs/acme", headers=headers)).status_code == 200
    r = await client.get("/v1/orgs/acme/projects", headers=headers)
    assert r.status_code == 403
    assert r.json()["required_scope"] == "projects:read"


async def test_org_limited_caller_issues_within_its_limits(client, make_token, prod):
    headers = bearer(make_token(scopes=["tokens:admin", "config:read", "projects:read"], project="web"))
    r = await issue(client, headers, kind="operator", name="narrow", org="acme", project="web")
    assert r.status_code == 201, r.text
    assert r.json()["scopes"] == ["config:read", "projects:read", "tokens:admin"]
    assert (await issue(client, headers, name="app", **CLIENT)).status_code == 201


async def test_tokens_of_one_org_are_invisible_to_another(client, admin_headers, make_token, acme, snapshot):
    await client.post("/v1/orgs", json={"slug": "globex", "name": "Globex"}, headers=admin_headers)
    acme_token = (await issue(client, admin_headers, kind="operator", name="a", org="acme")).json()
    globex_token = (await issue(client, admin_headers, kind="operator", name="g", org="globex")).json()
    instance = (await issue(client, admin_headers, kind="service", name="gateway")).json()
    globex = bearer(make_token(org="globex", scopes=ORG_OPERATOR_SCOPES))

    listed = (await client.get("/v1/tokens", headers=globex)).json()["items"]
    assert [t["id"] for t in listed] == [globex_token["id"]]
    everyone = (await client.get("/v1/tokens", headers=admin_headers)).json()["items"]
    assert {t["id"] for t in everyone} == {acme_token["id"], globex_token["id"], instance["id"]}

    before = await snapshot()
    for other in (acme_token["id"], instance["id"], "no-such-token"):
        r = await client.get(f"/v1/tokens/{other}", headers=globex)
        assert r.status_code == 404
        assert r.json()["type"] == "urn:anvil:problem:not-found"
        r = await client.delete(f"/v1/tokens/{other}", headers=globex)
        assert r.status_code == 404
    assert await snapshot() == before
    assert (await client.get("/v1/orgs/acme", headers=bearer(acme_token["token"]))).status_code == 200


async def test_list_hides_revoked_and_expired_unless_asked(client, admin_headers, acme, state):
    live = (await issue(client, admin_headers, kind="operator", name="live", org="acme")).json()
    gone = (await issue(client, admin_headers, kind="operator", name="gone", org="acme")).json()
    await client.delete(f"/v1/tokens/{gone['id']}", headers=admin_headers)
    async with state.db.session() as session:
        past = datetime.now(UTC) - timedelta(days=1)
        old = {"kind": "operator", "name": "old", "subject": "operator:old", "created_by": "tester"}
        session.add(
            Token(
                id="expired-jti",
                scopes=[],
                audience=[],
                created_at=past - timedelta(hours=1),
                expires_at=past,
                **old,
            )
        )

    async def ids(**params: Any) -> set[str]:
        r = await client.get("/v1/tokens", params=params, headers=admin_headers)
        assert r.status_code == 200
        return {t["id"] for t in r.json()["items"] if t["name"] != "bootstrap admin"}

    assert await ids() == {live["id"]}
    assert await ids(include_revoked="true") == {live["id"], gone["id"]}
    assert await ids(include_expired="true") == {live["id"], "expired-jti"}
    assert await ids(include_revoked="true", include_expired="true") == {
        live["id"],
        gone["id"],
        "expired-jti",
    }


async def test_token_list_paginates_by_id(client, admin_headers, acme):
    issued = [
        (await issue(client, admin_headers, kind="peer", name=f"p{i}", org="acme")).json()["id"]
        for i in range(5)
    ]
    seen: list[str] = []
    page_token = None
    while True:
        params: dict[str, Any] = {"page_size": 2}
        if page_token:
            params["page_token"] = page_token
        page = (await client.get("/v1/tokens", params=params, headers=admin_headers)).json()
        assert all("token" not in t for t in page["items"])
        seen += [t["id"] for t in page["items"]]
        page_token = page["next_page_token"]
        if not page_token:
            break
    assert seen == sorted(issued)


async def test_tokens_endpoints_need_tokens_admin(client, make_token, admin_headers, acme, snapshot):
    target = (await issue(client, admin_headers, kind="operator", name="t", org="acme")).json()["id"]
    headers = bearer(make_token(scopes=sorted(set(ORG_OPERATOR_SCOPES) - {"tokens:admin"})))
    before = await snapshot()
    for method, url, body in [
        ("POST", "/v1/tokens", {"kind": "operator", "name": "x", "org": "acme"}),
        ("GET", "/v1/tokens", None),
        ("GET", f"/v1/tokens/{target}", None),
        ("DELETE", f"/v1/tokens/{target}", None),
    ]:
        r = await client.request(method, url, json=body, headers=headers)
        assert r.status_code == 403, (method, url)
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["required_scope"] == "tokens:admin"
    assert await snapshot() == before
