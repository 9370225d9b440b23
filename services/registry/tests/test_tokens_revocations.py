"""GET /v1/revocations: the revoked, unexpired tokens other services load their caches from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from anvil_registry.auth import KIND_SCOPES
from anvil_registry.models import Token

PROBLEM = "application/problem+json"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def issue(client, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    r = await client.post("/v1/tokens", json=body, headers=headers)
    assert r.status_code == 201, r.text
    issued: dict[str, Any] = r.json()
    return issued


async def revoke(client, headers: dict[str, str], jti: str) -> dict[str, Any]:
    r = await client.delete(f"/v1/tokens/{jti}", headers=headers)
    assert r.status_code == 200, r.text
    revoked: dict[str, Any] = r.json()
    return revoked


async def revocations(client, headers: dict[str, str]) -> list[dict[str, Any]]:
    r = await client.get("/v1/revocations", headers=headers)
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"revoked"}
    items: list[dict[str, Any]] = r.json()["revoked"]
    return items


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_lists_every_unexpired_revocation_for_an_instance_wide_service(
    client, admin_headers, acme, make_token, state
):
    service = bearer(make_token("service", scopes=["events:read"], org=None))
    assert await revocations(client, service) == []

    await client.post("/v1/orgs", json={"slug": "globex", "name": "Globex"}, headers=admin_headers)
    live = await issue(client, admin_headers, kind="peer", name="live", org="acme")
    gone = [
        await issue(client, admin_headers, kind="peer", name="peer-a", org="acme", ttl_seconds=900),
        await issue(client, admin_headers, kind="service", name="svc-g", org="globex"),
        await issue(client, admin_headers, kind="operator", name="instance-op"),  # no organisation
    ]
    revoked = [await revoke(client, admin_headers, t["id"]) for t in gone]
    # Revoked long ago and expired since: refused anyway, so not listed.
    async with state.db.session() as session:
        past = datetime.now(UTC) - timedelta(days=1)
        session.add(
            Token(
                id="expired-jti",
                kind="peer",
                name="old",
                subject="peer:old",
                scopes=[],
                audience=[],
                created_by="tester",
                created_at=past - timedelta(hours=1),
                expires_at=past,
                revoked_at=past - timedelta(minutes=30),
                revoked_by="tester",
            )
        )

    listed = await revocations(client, service)
    assert [r["jti"] for r in listed] == sorted(t["id"] for t in gone)
    assert live["id"] not in {r["jti"] for r in listed}
    expected = {r["id"]: instant(r["expires_at"]) for r in revoked}
    assert {r["jti"]: instant(r["expires_at"]) for r in listed} == expected
    # The instance administrator sees the same list.
    assert await revocations(client, admin_headers) == listed


async def test_a_limited_token_sees_only_revocations_within_its_limits(
    client, admin_headers, acme, make_token
):
    await client.post("/v1/orgs", json={"slug": "globex", "name": "Globex"}, headers=admin_headers)
    acme_peer = await issue(client, admin_headers, kind="peer", name="p", org="acme")
    acme_web = await issue(client, admin_headers, kind="service", name="w", org="acme", project="web")
    globex_peer = await issue(client, admin_headers, kind="peer", name="p", org="globex")
    instance_op = await issue(client, admin_headers, kind="operator", name="op")
    for token in (acme_peer, acme_web, globex_peer, instance_op):
        await revoke(client, admin_headers, token["id"])

    def ids(items: list[dict[str, Any]]) -> set[str]:
        return {r["jti"] for r in items}

    acme = bearer(make_token("service", scopes=["events:read"], org="acme"))
    assert ids(await revocations(client, acme)) == {acme_peer["id"], acme_web["id"]}
    web = bearer(make_token("service", scopes=["events:read"], org="acme", project="web"))
    assert ids(await revocations(client, web)) == {acme_web["id"]}
    globex = bearer(make_token("service", scopes=["events:read"], org="globex"))
    assert ids(await revocations(client, globex)) == {globex_peer["id"]}
    # An organisation the token names but that does not exist: nothing, not an error.
    ghost = bearer(make_token("service", scopes=["events:read"], org="ghost"))
    assert await revocations(client, ghost) == []


async def test_needs_events_read_and_writes_nothing(client, admin_headers, acme, make_token, snapshot):
    gone = await issue(client, admin_headers, kind="peer", name="p", org="acme")
    await revoke(client, admin_headers, gone["id"])
    # A peer token may never hold events:read: the list is not for peers.
    for token in (
        make_token("peer", org="acme"),
        make_token("service", scopes=sorted(KIND_SCOPES["service"] - {"events:read"}), org=None),
    ):
        r = await client.get("/v1/revocations", headers=bearer(token))
        assert r.status_code == 403, r.text
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["required_scope"] == "events:read"
    r = await client.get("/v1/revocations")
    assert r.status_code == 401
    assert r.json()["type"] == "urn:anvil:problem:invalid-token"
    # A revoked token cannot read the list either.
    reader = await issue(client, admin_headers, kind="service", name="reader", scopes=["events:read"])
    assert (await client.get("/v1/revocations", headers=bearer(reader["token"]))).status_code == 200
    await revoke(client, admin_headers, reader["id"])
    before = await snapshot()
    r = await client.get("/v1/revocations", headers=bearer(reader["token"]))
    assert r.status_code == 401
    assert r.json()["detail"] == "token has been revoked"
    assert await revocations(client, admin_headers) != []
    assert await snapshot() == before
