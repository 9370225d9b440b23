"""Peers: registering, changing and removing them (scope peers:admin, per organisation), their keys
(given, or fetched from the issuer's JWKS: EC P-256 only, size-capped, https unless allowed), and
trust (trust.py): a bundle sealed by a peer is accepted for that peer's organisation only, an
unknown key of a known peer refreshes its JWKS (rate-limited), an unknown issuer is refused with
a message saying how to register it."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from anvil_bundle_worker.imports.service import verify_upload
from anvil_bundle_worker.planning.testing import Exporter
from anvil_wire import KeySet
from anvil_wire.bundles import BundleUntrustedKey, write_bundle

PEER = "https://peer.example"
# The test's peers are plain http on loopback: allowed only where a test says so.
insecure = pytest.mark.parametrize(
    "settings_overrides", [{"allow_insecure_peers": True, "peer_timeout_seconds": 5.0}], ids=["insecure"]
)
SECRET = "peer-token.eyJzZWNyZXQiOiJkby1ub3Qtc2hvdyJ9.signature"


class JwksServer:
    """A peer registry's /.well-known/jwks.json on a loopback port (a real HTTP server), whose
    answer a test changes: keys, status, raw body; ``hits`` counts the fetches."""

    def __init__(self, keys: KeySet) -> None:
        self.jwks: dict[str, Any] = keys.public_jwks()
        self.status = 200
        self.body: bytes | None = None
        self.send_length = True
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits += 1
                body = server.body if server.body is not None else json.dumps(server.jwks).encode()
                status = server.status if self.path == "/.well-known/jwks.json" else 404
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if server.send_length:
                    self.send_header("Content-Length", str(len(body)))
                else:  # read until the connection closes
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def peer_keys() -> KeySet:
    return KeySet.generate()


@pytest.fixture
def jwks_server(peer_keys: KeySet) -> Iterator[JwksServer]:
    server = JwksServer(peer_keys)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def admin(make_token: Any) -> dict[str, str]:
    """An administrator of organisation acme: peers, exports and imports."""
    scopes = ["peers:admin", "bundles:export", "bundles:import"]
    return {"Authorization": f"Bearer {make_token(scopes=scopes)}"}


def peer_body(keys: KeySet | None = None, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "organisation": "acme",
        "name": "prod",
        "issuer": PEER,
        "url": "https://worker.peer.example",
        "token": SECRET,
    }
    if keys is not None:
        body["jwks"] = keys.public_jwks()
    return {**body, **changes}


def sealed_by(keys: KeySet, issuer: str = PEER, *, template: str = "Hello") -> bytes:
    """A valid bundle exported by ``issuer`` and sealed with ``keys``' active key."""
    exporter = Exporter(instance=issuer)
    exporter.prompt("web/greeting", template)
    manifest, contents = exporter.export(kind="project", project="web")
    return write_bundle(manifest, contents, keys.active).data


def problem_type(response: Any) -> str:
    assert response.headers["content-type"] == "application/problem+json", response.text
    return str(response.json()["type"]).removeprefix("urn:anvil:problem:")


# -- registering -----------------------------------------------------------------------------------


async def test_registered_peer_shows_its_keys_but_never_its_token(client, admin, peer_keys, caplog):
    # What the worker logs (INFO by default; its own loggers at any level).
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="anvil")
    r = await client.post("/v1/peers", json=peer_body(peer_keys, auto_apply=True), headers=admin)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/v1/peers/acme/prod"
    peer = r.json()
    assert peer["has_token"] is True
    assert peer["issuer"] == PEER
    assert peer["remote_organisation"] == "acme"
    assert peer["kids"] == [peer_keys.active.kid]
    assert peer["keys_fetched_at"] is None
    assert peer["auto_apply"] is True
    assert peer["created_by"] == "operator:tester"
    listed = await client.get("/v1/peers", params={"organisation": "acme"}, headers=admin)
    shown = await client.get("/v1/peers/acme/prod", headers=admin)
    assert [p["name"] for p in listed.json()["items"]] == ["prod"]
    assert shown.json() == peer
    for response in (r, listed, shown):
        assert SECRET not in response.text
        assert "token" not in response.json().get("items", [response.json()])[0]
    assert SECRET not in caplog.text


@insecure
async def test_keys_are_fetched_from_the_issuers_jwks_when_not_given(client, admin, jwks_server, peer_keys):
    r = await client.post(
        "/v1/peers", json=peer_body(issuer=jwks_server.url + "/", url=None, token=None), headers=admin
    )
    assert r.status_code == 201, r.text
    peer = r.json()
    assert peer["issuer"] == jwks_server.url  # without the trailing slash
    assert peer["kids"] == [peer_keys.active.kid]
    assert peer["keys_fetched_at"] is not None
    assert peer["has_token"] is False
    assert peer["url"] is None
    assert jwks_server.hits == 1


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"issuer": "http://peer.example"}, "issuer"),
        ({"url": "http://worker.peer.example"}, "URL"),
    ],
)
async def test_http_peer_urls_are_refused_unless_insecure_peers_are_allowed(
    client, admin, peer_keys, snapshot, changes, where
):
    before = await snapshot()
    r = await client.post("/v1/peers", json=peer_body(peer_keys, **changes), headers=admin)
    assert r.status_code == 422
    assert problem_type(r) == "insecure-peer-url"
    assert f"the peer's {where}" in r.json()["detail"]
    assert "requires https" in r.json()["detail"]
    assert await snapshot() == before


async def test_changing_a_peer_url_to_http_is_refused(client, admin, peer_keys, snapshot):
    assert (await client.post("/v1/peers", json=peer_body(peer_keys), headers=admin)).status_code == 201
    before = await snapshot()
    r = await client.patch("/v1/peers/acme/prod", json={"url": "http://worker.peer.example"}, headers=admin)
    assert r.status_code == 422
    assert problem_type(r) == "insecure-peer-url"
    assert await snapshot() == before


def _rsa_jwk() -> dict[str, str]:
    return {"kty": "RSA", "kid": "rsa-1", "n": "sXch", "e": "AQAB", "alg": "RS256"}


@pytest.mark.parametrize(
    ("jwks", "says"),
    [
        ({"keys": [_rsa_jwk()]}, "only EC P-256 keys"),
        ({"keys": []}, "holds no keys"),
        ({"nope": 1}, "'keys' array"),
        ({"keys": "all"}, "'keys' array"),
    ],
    ids=["rsa", "empty", "no-keys", "keys-not-a-list"],
)
async def test_unusable_given_keys_are_refused(client, admin, snapshot, jwks, says):
    before = await snapshot()
    r = await client.post("/v1/peers", json={**peer_body(), "jwks": jwks}, headers=admin)
    assert r.status_code == 422, r.text
    assert problem_type(r) == "peer-jwks-invalid"
    assert says in r.json()["detail"]
    assert await snapshot() == before


async def test_private_keys_and_keys_without_kid_or_of_another_curve_are_refused(client, admin, peer_keys):
    private = peer_keys.active.private_jwk()
    no_kid = {k: v for k, v in peer_keys.active.public_jwk().items() if k != "kid"}
    p384 = {**peer_keys.active.public_jwk(), "crv": "P-384"}
    twice = peer_keys.active.public_jwk()
    for jwks, says in (
        ({"keys": [private]}, "private key"),
        ({"keys": [no_kid]}, "kid"),
        ({"keys": [p384]}, "P-256"),
        ({"keys": [twice, twice]}, "appears twice"),
        ({"keys": [{**twice, "use": "enc"}]}, "not a signing key"),
        ({"keys": [{**twice, "alg": "ES384"}]}, "ES256"),
    ):
        r = await client.post("/v1/peers", json={**peer_body(), "jwks": jwks}, headers=admin)
        assert r.status_code == 422, r.text
        assert problem_type(r) == "peer-jwks-invalid"
        assert says in r.json()["detail"]


@insecure
@pytest.mark.parametrize("send_length", [True, False], ids=["with-length", "without-length"])
@pytest.mark.parametrize(
    ("status", "body", "code", "says"),
    [
        (500, None, "peer-error", "answered 500"),
        (200, b"x" * (65 * 1024), "peer-error", "larger than"),
        (200, b"not json", "peer-error", "cannot be used"),
        (200, b'{"keys": [{"kty": "RSA", "kid": "r"}]}', "peer-error", "only EC P-256"),
    ],
    ids=["error-status", "too-large", "not-json", "rsa"],
)
async def test_a_peer_jwks_that_cannot_be_fetched_or_used_registers_nothing(
    client, admin, jwks_server, snapshot, status, body, code, says, send_length
):
    jwks_server.status, jwks_server.body, jwks_server.send_length = status, body, send_length
    before = await snapshot()
    r = await client.post("/v1/peers", json=peer_body(issuer=jwks_server.url), headers=admin)
    assert r.status_code == 502, r.text
    assert problem_type(r) == code
    assert says in r.json()["detail"]
    assert await snapshot() == before


@insecure
async def test_an_unreachable_issuer_is_a_503_and_registers_nothing(client, admin, snapshot):
    before = await snapshot()
    r = await client.post("/v1/peers", json=peer_body(issuer="http://127.0.0.1:9"), headers=admin)
    assert r.status_code == 503
    assert problem_type(r) == "peer-unavailable"
    assert await snapshot() == before


@pytest.mark.parametrize(
    "changes",
    [
        {"issuer": "ftp://peer.example"},
        {"issuer": "https://user:pw@peer.example"},
        {"issuer": "https://peer.example/?x=1"},
        {"issuer": "peer.example"},
        {"url": "https://worker.example#frag"},
        {"name": "Prod"},
        {"organisation": "ACME"},
        {"remote_organisation": "-x"},
        {"token": ""},
        {"token": "two words"},
        {"auto_apply": "maybe"},
        {"colour": "red"},
    ],
)
async def test_invalid_peer_bodies_are_422(client, admin, peer_keys, snapshot, changes):
    before = await snapshot()
    r = await client.post("/v1/peers", json=peer_body(peer_keys, **changes), headers=admin)
    assert r.status_code == 422, r.text
    assert problem_type(r) == "validation-failed"
    assert await snapshot() == before


async def test_one_peer_per_name_and_per_issuer_in_an_organisation(client, admin, make_token, peer_keys):
    assert (await client.post("/v1/peers", json=peer_body(peer_keys), headers=admin)).status_code == 201
    same_name = await client.post(
        "/v1/peers", json=peer_body(peer_keys, issuer="https://other.example"), headers=admin
    )
    same_issuer = await client.post("/v1/peers", json=peer_body(peer_keys, name="staging"), headers=admin)
    assert (same_name.status_code, same_issuer.status_code) == (409, 409)
    assert problem_type(same_name) == problem_type(same_issuer) == "peer-exists"
    assert same_issuer.json()["peer"] == "prod"
    # Another organisation may register the same peer.
    beta = {"Authorization": f"Bearer {make_token(org='beta', scopes=['peers:admin'])}"}
    other = await client.post("/v1/peers", json=peer_body(peer_keys, organisation="beta"), headers=beta)
    assert other.status_code == 201, other.text


# -- scopes and tenancy ------------------------------------------------------------------------------


async def test_peers_need_the_peers_admin_scope(client, make_token, peer_keys):
    lacking = {"Authorization": f"Bearer {make_token(scopes=['bundles:export', 'bundles:import'])}"}
    for method, path, body in (
        ("POST", "/v1/peers", peer_body(peer_keys)),
        ("GET", "/v1/peers?organisation=acme", None),
        ("GET", "/v1/peers/acme/prod", None),
        ("PATCH", "/v1/peers/acme/prod", {"auto_apply": True}),
        ("DELETE", "/v1/peers/acme/prod", None),
        ("POST", "/v1/peers/acme/prod/refresh-keys", None),
    ):
        r = await client.request(method, path, json=body, headers=lacking)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["required_scope"] == "peers:admin"
    assert (await client.get("/v1/peers?organisation=acme")).status_code == 401


async def test_another_organisations_peers_do_not_exist_and_project_tokens_cannot_manage_peers(
    client, admin, make_token, peer_keys, snapshot
):
    assert (await client.post("/v1/peers", json=peer_body(peer_keys), headers=admin)).status_code == 201
    before = await snapshot()
    beta = {"Authorization": f"Bearer {make_token(org='beta', scopes=['peers:admin'])}"}
    assert (await client.get("/v1/peers/acme/prod", headers=beta)).status_code == 404
    assert (await client.get("/v1/peers", params={"organisation": "acme"}, headers=beta)).status_code == 404
    assert (await client.delete("/v1/peers/acme/prod", headers=beta)).status_code == 404
    created = await client.post("/v1/peers", json=peer_body(peer_keys, name="x"), headers=beta)
    assert created.status_code == 404
    project = {"Authorization": f"Bearer {make_token(project='web', scopes=['peers:admin'])}"}
    r = await client.get("/v1/peers/acme/prod", headers=project)
    assert r.status_code == 403
    assert "manage the organisation's peers" in r.json()["detail"]
    assert await snapshot() == before


async def test_unknown_peers_are_404(client, admin):
    for method, path in (
        ("GET", "/v1/peers/acme/nope"),
        ("PATCH", "/v1/peers/acme/nope"),
        ("DELETE", "/v1/peers/acme/nope"),
        ("POST", "/v1/peers/acme/nope/refresh-keys"),
    ):
        r = await client.request(method, path, json={} if method == "PATCH" else None, headers=admin)
        assert r.status_code == 404, (method, r.text)
        assert problem_type(r) == "peer-not-found"


# -- changing, removing, listing --------------------------------------------------------------------


async def test_a_patch_changes_only_what_it_sends_and_null_removes_url_or_token(client, admin, peer_keys):
    await client.post("/v1/peers", json=peer_body(peer_keys), headers=admin)
    r = await client.patch(
        "/v1/peers/acme/prod", json={"auto_apply": True, "remote_organisation": "acme-prod"}, headers=admin
    )
    assert r.status_code == 200, r.text
    peer = r.json()
    assert (peer["auto_apply"], peer["remote_organisation"], peer["has_token"]) == (True, "acme-prod", True)
    assert peer["url"] == "https://worker.peer.example"
    cleared = (
        await client.patch("/v1/peers/acme/prod", json={"token": None, "url": None}, headers=admin)
    ).json()
    assert (cleared["has_token"], cleared["url"], cleared["auto_apply"]) == (False, None, True)
    rotated = KeySet.generate()
    keys = (
        await client.patch("/v1/peers/acme/prod", json={"jwks": rotated.public_jwks()}, headers=admin)
    ).json()
    assert keys["kids"] == [rotated.active.kid]
    again = await client.patch("/v1/peers/acme/prod", json={"token": "new-token"}, headers=admin)
    assert again.json()["has_token"] is True
    assert "new-token" not in again.text


async def test_removing_a_peer_forgets_it(client, admin, peer_keys):
    await client.post("/v1/peers", json=peer_body(peer_keys), headers=admin)
    r = await client.delete("/v1/peers/acme/prod", headers=admin)
    assert r.status_code == 204
    assert r.content == b""
    assert (await client.get("/v1/peers/acme/prod", headers=admin)).status_code == 404


async def test_peers_are_listed_by_name_in_pages(client, admin):
    for name in ("c", "a", "b"):
        keys = KeySet.generate()
        body = peer_body(keys, name=name, issuer=f"https://{name}.example")
        assert (await client.post("/v1/peers", json=body, headers=admin)).status_code == 201
    first = (
        await client.get("/v1/peers", params={"organisation": "acme", "page_size": 2}, headers=admin)
    ).json()
    assert [p["name"] for p in first["items"]] == ["a", "b"]
    params = {"organisation": "acme", "page_size": 2, "page_token": first["next_page_token"]}
    second = (await client.get("/v1/peers", params=params, headers=admin)).json()
    assert [p["name"] for p in second["items"]] == ["c"]
    assert second["next_page_token"] is None


@insecure
async def test_refresh_keys_fetches_the_rotated_jwks(client, admin, jwks_server, peer_keys):
    await client.post("/v1/peers", json=peer_body(issuer=jwks_server.url), headers=admin)
    rotated = peer_keys.rotate()
    jwks_server.jwks = rotated.public_jwks()
    r = await client.post("/v1/peers/acme/prod/refresh-keys", headers=admin)
    assert r.status_code == 200, r.text
    assert set(r.json()["kids"]) == {rotated.active.kid, peer_keys.active.kid}
    assert jwks_server.hits == 2


# -- transfers: what is checked before a job is queued ----------------------------------------------


async def test_push_needs_bundles_export_and_pull_bundles_import(client, make_token, admin, peer_keys):
    await client.post("/v1/peers", json=peer_body(peer_keys), headers=admin)
    body = {"selection": {"kind": "project", "project": "web"}}
    only_peers = {"Authorization": f"Bearer {make_token(scopes=['peers:admin'])}"}
    push = await client.post("/v1/peers/acme/prod/push", json=body, headers=only_peers)
    pull = await client.post("/v1/peers/acme/prod/pull", json=body, headers=only_peers)
    assert (push.status_code, pull.status_code) == (403, 403)
    assert push.json()["required_scope"] == "bundles:export"
    assert pull.json()["required_scope"] == "bundles:import"
    no_admin = {"Authorization": f"Bearer {make_token(scopes=['bundles:export', 'bundles:import'])}"}
    r = await client.post("/v1/peers/acme/prod/push", json=body, headers=no_admin)
    assert r.status_code == 403
    assert r.json()["required_scope"] == "peers:admin"


async def test_a_transfer_with_a_peer_without_url_or_token_is_refused_before_queueing(
    client, admin, peer_keys, snapshot
):
    await client.post("/v1/peers", json=peer_body(peer_keys, url=None, token=None), headers=admin)
    before = await snapshot()
    body = {"selection": {"kind": "project", "project": "web"}}
    r = await client.post("/v1/peers/acme/prod/push", json=body, headers=admin)
    assert r.status_code == 422
    assert problem_type(r) == "peer-not-configured"
    assert "peer prod has no URL and no token" in r.json()["detail"]
    assert await snapshot() == before


@pytest.mark.parametrize(
    "body",
    [
        {"selection": {"kind": "project"}},
        {"selection": {"kind": "project", "project": "web"}, "strategy": "merge"},
        {"selection": {"kind": "project", "project": "web"}, "overrides": {"web/x": "merge"}},
        {"selection": {"kind": "project", "project": "web"}, "overrides": {"nope": "skip"}},
        {"selection": {"kind": "project", "project": "web"}, "extra": 1},
    ],
)
async def test_invalid_transfer_bodies_are_422(client, admin, peer_keys, snapshot, body):
    await client.post("/v1/peers", json=peer_body(peer_keys), headers=admin)
    before = await snapshot()
    r = await client.post("/v1/peers/acme/prod/pull", json=body, headers=admin)
    assert r.status_code == 422, r.text
    assert problem_type(r) == "validation-failed"
    assert await snapshot() == before


async def test_a_transfer_is_queued_once_per_idempotency_key(client, admin, peer_keys):
    await client.post("/v1/peers", json=peer_body(peer_keys), headers=admin)
    body = {"selection": {"kind": "project", "project": "web"}, "overrides": {"web/greeting": "skip"}}
    headers = {**admin, "Idempotency-Key": "k1"}
    first = await client.post("/v1/peers/acme/prod/push", json=body, headers=headers)
    again = await client.post("/v1/peers/acme/prod/push", json=body, headers=headers)
    other = await client.post("/v1/peers/acme/prod/push", json={**body, "strategy": "skip"}, headers=headers)
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json()["kind"] == "push"
    assert first.headers["location"] == f"/v1/jobs/{first.json()['id']}"
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 422
    assert problem_type(other) == "idempotency-key-reused"


# -- trust -------------------------------------------------------------------------------------------


async def test_a_bundle_of_an_unknown_issuer_is_refused_with_how_to_register_it(state, peer_keys):
    with pytest.raises(BundleUntrustedKey) as refused:
        await verify_upload(sealed_by(peer_keys), state, "acme")
    message = str(refused.value)
    assert PEER in message
    assert "not a peer of organisation 'acme'" in message
    assert "POST /v1/peers" in message
    assert f"anvil peers add NAME --issuer {PEER}" in message


async def test_a_peers_bundle_is_trusted_for_that_peers_organisation_only(client, admin, state, peer_keys):
    await client.post("/v1/peers", json=peer_body(peer_keys), headers=admin)
    bundle = await verify_upload(sealed_by(peer_keys), state, "acme")
    assert bundle.seal is not None
    assert (bundle.seal.issuer, bundle.seal.kid) == (PEER, peer_keys.active.kid)
    with pytest.raises(BundleUntrustedKey, match="not a peer of organisation 'beta'"):
        await verify_upload(sealed_by(peer_keys), state, "beta")


async def test_a_peers_key_never_vouches_for_another_issuer_or_for_us(
    client, admin, state, peer_keys, keyset
):
    await client.post("/v1/peers", json=peer_body(peer_keys), headers=admin)
    # The peer's key claiming to be us, and our key claiming to be the peer.
    with pytest.raises(BundleUntrustedKey):
        await verify_upload(sealed_by(peer_keys, issuer="http://registry.test"), state, "acme")
    with pytest.raises(BundleUntrustedKey, match="not among the keys of peer 'prod'"):
        await verify_upload(sealed_by(keyset), state, "acme")


async def test_our_own_bundles_are_trusted_in_every_organisation(state, keyset):
    bundle = await verify_upload(sealed_by(keyset, issuer="http://registry.test"), state, "anything")
    assert bundle.seal is not None


async def test_removing_a_peer_stops_trusting_its_bundles(client, admin, state, peer_keys):
    await client.post("/v1/peers", json=peer_body(peer_keys), headers=admin)
    await client.delete("/v1/peers/acme/prod", headers=admin)
    with pytest.raises(BundleUntrustedKey, match="not a peer"):
        await verify_upload(sealed_by(peer_keys), state, "acme")


@insecure
async def test_an_unknown_key_of_a_known_peer_refreshes_its_jwks_at_most_once_in_a_while(
    client, admin, state, jwks_server, peer_keys
):
    body = peer_body(issuer=jwks_server.url, jwks=peer_keys.public_jwks())  # given: never fetched
    assert (await client.post("/v1/peers", json=body, headers=admin)).status_code == 201
    rotated = peer_keys.rotate()
    jwks_server.jwks = rotated.public_jwks()
    # The peer rotated: its new key is unknown here until its JWKS is fetched again.
    bundle = await verify_upload(sealed_by(rotated, issuer=jwks_server.url), state, "acme")
    assert bundle.seal is not None
    assert bundle.seal.kid == rotated.active.kid
    assert jwks_server.hits == 1
    stored = (await client.get("/v1/peers/acme/prod", headers=admin)).json()
    assert set(stored["kids"]) == {peer_keys.active.kid, rotated.active.kid}
    assert stored["keys_fetched_at"] is not None
    # A key nobody has: one refresh happened just now, so no other fetch is made.
    stranger = KeySet.generate()
    with pytest.raises(BundleUntrustedKey, match="fetched again recently or could not be fetched"):
        await verify_upload(sealed_by(stranger, issuer=jwks_server.url), state, "acme")
    assert jwks_server.hits == 1


@insecure
async def test_a_refresh_that_still_lacks_the_key_refuses_the_bundle(
    client, admin, state, jwks_server, peer_keys
):
    body = peer_body(issuer=jwks_server.url, jwks=peer_keys.public_jwks())
    await client.post("/v1/peers", json=body, headers=admin)
    with pytest.raises(BundleUntrustedKey, match="fetched again and does not hold it"):
        await verify_upload(sealed_by(KeySet.generate(), issuer=jwks_server.url), state, "acme")
    assert jwks_server.hits == 1


@insecure
async def test_a_failed_refresh_refuses_the_bundle_and_is_not_retried_at_once(
    client, admin, state, jwks_server, peer_keys
):
    body = peer_body(issuer=jwks_server.url, jwks=peer_keys.public_jwks())
    await client.post("/v1/peers", json=body, headers=admin)
    jwks_server.status = 500
    rotated = peer_keys.rotate()
    for _ in range(2):
        with pytest.raises(BundleUntrustedKey, match="could not be fetched"):
            await verify_upload(sealed_by(rotated, issuer=jwks_server.url), state, "acme")
    assert jwks_server.hits == 1
