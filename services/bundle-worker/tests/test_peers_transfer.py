"""Push and pull jobs, and the incoming policy, against a real registry and this worker served on
a loopback port acting as its own peer (organisation acme here, beta "there"), with real job
loops running in the background. The two-instance version is tests/test_peering.py (root)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from anvil_bundle_worker import queue
from anvil_bundle_worker.peers.jobs import run_push
from anvil_bundle_worker.planning.testing import Exporter
from anvil_bundle_worker.worker import Worker
from anvil_wire import KeySet
from anvil_wire.bundles import write_bundle

ISSUER = "http://registry.test"  # conftest: this instance's issuer
SELECTION = {"kind": "project", "project": "web"}
BUNDLE = {"Content-Type": "application/vnd.anvil.bundle"}


@pytest.fixture
def registry_url(live_registry: Any) -> str:
    return str(live_registry.url)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "allow_insecure_peers": True,
        "poll_seconds": 0.05,
        "peer_poll_seconds": 0.05,
        "peer_timeout_seconds": 10.0,
        "retry_base_seconds": 30.0,  # a retried attempt waits: tests see the job queued again
    }


@pytest.fixture
async def loops(state: Any) -> AsyncIterator[None]:
    """Two job loops in the background: one follows the peer's job the other one runs."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(Worker(state, worker_id=f"loop-{i}").run(stop)) for i in range(2)]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


@pytest.fixture
async def acme(seed: Any) -> None:
    """acme: web/greeting references shared/footer (another project); beta: empty."""
    await seed.org("acme", "web", "shared")
    await seed.version("acme", "shared", "footer", "-- Acme")
    await seed.version("acme", "web", "greeting", "Hello {{name}} {{> shared:footer@1}}", "first")
    await seed.version("acme", "web", "farewell", "Bye")
    await seed.org("beta")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def acme_admin(make_token: Any) -> dict[str, str]:
    return bearer(make_token(scopes=["peers:admin", "bundles:export", "bundles:import"]))


@pytest.fixture
def beta_admin(make_token: Any) -> dict[str, str]:
    return bearer(make_token(org="beta", scopes=["peers:admin", "bundles:export", "bundles:import"]))


@pytest.fixture
def peer_token(make_token: Any) -> Any:
    """What "the peer's registry" issues to us: a peer token limited to one organisation."""

    def issue(org: str, scopes: tuple[str, ...] = ("bundles:import", "bundles:export")) -> str:
        return str(make_token(kind="peer", org=org, scopes=list(scopes), subject="peer:instance-a"))

    return issue


async def add_peer(client: Any, headers: dict[str, str], keyset: KeySet, **body: Any) -> dict[str, Any]:
    values = {"issuer": ISSUER, "jwks": keyset.public_jwks(), **body}
    r = await client.post("/v1/peers", json=values, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def finished(client: Any, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    """The job once it succeeded or failed (the background loops run it)."""
    async with asyncio.timeout(60):
        while True:
            job = (await client.get(f"/v1/jobs/{job_id}", headers=headers)).json()
            if job["status"] in ("succeeded", "failed"):
                return dict(job)
            await asyncio.sleep(0.05)


async def transfer(
    client: Any,
    headers: dict[str, str],
    peer: str,
    kind: str = "push",
    organisation: str = "acme",
    **body: Any,
) -> dict[str, Any]:
    r = await client.post(
        f"/v1/peers/{organisation}/{peer}/{kind}", json={"selection": SELECTION, **body}, headers=headers
    )
    assert r.status_code == 202, r.text
    assert r.json()["kind"] == kind
    return await finished(client, headers, r.json()["id"])


@pytest.fixture
async def mirror(
    client: Any, acme_admin: dict[str, str], keyset: KeySet, live_worker: str, peer_token: Any
) -> str:
    """acme's peer "mirror": this worker, importing into beta with a beta peer token."""
    await add_peer(
        client, acme_admin, keyset, organisation="acme", name="mirror", url=live_worker,
        remote_organisation="beta", token=peer_token("beta"),
    )  # fmt: skip
    return "mirror"


# -- push ------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("acme", "loops")
async def test_push_plans_on_the_peer_and_holds_the_plan_until_approved(
    client, acme_admin, beta_admin, mirror, seed, peer_token, caplog
):
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="anvil")
    job = await transfer(client, acme_admin, mirror)
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["bundle"].startswith("sha256:")
    remote = result["remote"]
    assert (remote["status"], remote["applied"], remote["applicable"], remote["changes"]) == (
        "planned",
        False,
        True,
        True,
    )
    # The peer's import job and plan: made by the peer token, in beta, with the dependency.
    plan = (await client.get(f"/v1/plans/{remote['plan']}", headers=beta_admin)).json()
    assert plan["job"] == remote["job"]
    assert plan["organisation"] == "beta"
    assert plan["created_by"] == "peer:instance-a"
    assert {(p["project"], p["name"]) for p in plan["plan"]["prompts"]} >= {
        ("web", "greeting"),
        ("shared", "footer"),
    }
    applied = await client.post(f"/v1/plans/{remote['plan']}/apply", headers=beta_admin)
    assert applied.status_code == 200, applied.text
    assert await seed.heads("beta", "web") == {"greeting": 1, "farewell": 1}
    assert await seed.heads("beta", "shared") == {"footer": 1}
    # The same selection again: the peer finds nothing to do.
    again = (await transfer(client, acme_admin, mirror))["result"]["remote"]
    assert (again["status"], again["changes"]) == ("planned", False)
    assert peer_token("beta") not in caplog.text


@pytest.mark.usefixtures("acme", "loops")
async def test_an_auto_apply_peer_is_applied_without_approval_unless_the_plan_is_blocked(
    client, acme_admin, beta_admin, mirror, seed, keyset
):
    # beta trusts bundles of this instance's issuer and applies them at once.
    await add_peer(client, beta_admin, keyset, organisation="beta", name="source", auto_apply=True)
    remote = (await transfer(client, acme_admin, mirror))["result"]["remote"]
    assert (remote["status"], remote["applied"]) == ("applied", True)
    assert await seed.heads("beta", "web") == {"greeting": 1, "farewell": 1}
    plan = (await client.get(f"/v1/plans/{remote['plan']}", headers=beta_admin)).json()
    assert plan["applied_by"] == "auto-apply:source"
    assert plan["result"]["created"]["versions"] == 3

    # Both sides change greeting: a conflict under "fail" is held, whatever the policy.
    await seed.version("beta", "web", "greeting", "Beta says hello")
    await seed.version("acme", "web", "greeting", "Acme says hello")
    held = (await transfer(client, acme_admin, mirror))["result"]["remote"]
    assert (held["status"], held["applicable"]) == ("planned", False)
    assert (await seed.heads("beta", "web"))["greeting"] == 2
    resolved = (await transfer(client, acme_admin, mirror, strategy="overwrite"))["result"]["remote"]
    assert resolved["status"] == "applied"
    assert await seed.template("beta", "web", "greeting", 3) == "Acme says hello"


@pytest.mark.usefixtures("acme", "loops")
async def test_the_peers_refusal_fails_the_push_with_the_peers_problem(
    client, acme_admin, keyset, live_worker, peer_token
):
    token = peer_token("beta", ("bundles:export",))  # may not import there
    await add_peer(
        client, acme_admin, keyset, organisation="acme", name="mirror", url=live_worker,
        remote_organisation="beta", token=token,
    )  # fmt: skip
    job = await transfer(client, acme_admin, "mirror")
    assert job["status"] == "failed"
    assert job["attempts"] == 1  # a refusal is not retried
    error = job["error"]
    assert (error["type"], error["status"]) == ("urn:anvil:problem:forbidden", 403)
    assert error["detail"].startswith("peer mirror: ")
    assert "bundles:import" in error["detail"]
    assert error["peer"] == "mirror"
    assert token not in str(job)


@pytest.mark.usefixtures("acme")
async def test_an_unreachable_peer_is_retried(client, acme_admin, keyset, peer_token, work):
    await add_peer(
        client, acme_admin, keyset, organisation="acme", name="gone", url="http://127.0.0.1:9",
        remote_organisation="beta", token=peer_token("beta"),
    )  # fmt: skip
    r = await client.post("/v1/peers/acme/gone/push", json={"selection": SELECTION}, headers=acme_admin)
    await work()
    job = (await client.get(f"/v1/jobs/{r.json()['id']}", headers=acme_admin)).json()
    assert job["status"] == "queued"  # waiting for its retry
    assert job["error"]["type"] == "urn:anvil:problem:peer-unavailable"
    assert "peer gone could not be reached" in job["error"]["detail"]


@pytest.mark.usefixtures("acme")
async def test_a_retried_push_finds_the_peers_job_instead_of_importing_again(
    client, acme_admin, mirror, state
):
    r = await client.post("/v1/peers/acme/mirror/push", json={"selection": SELECTION}, headers=acme_admin)
    assert r.status_code == 202
    async with state.db.session() as session:
        lease = await queue.claim_next_job(session, worker_id="test", lease_seconds=60)
    assert lease is not None
    assert lease.kind == "push"
    stop = asyncio.Event()
    remote_loop = asyncio.create_task(Worker(state, worker_id="remote").run(stop))
    try:
        first = await run_push(lease, state)
        second = await run_push(lease, state)  # as a retry of the same job would
    finally:
        stop.set()
        await remote_loop
    assert first.result["remote"]["job"] == second.result["remote"]["job"]
    assert first.result == second.result


# -- pull ------------------------------------------------------------------------------------------


@pytest.fixture
async def source(
    client: Any, beta_admin: dict[str, str], keyset: KeySet, live_worker: str, peer_token: Any
) -> str:
    """beta's peer "source": this worker, exporting from acme with an acme peer token."""
    await add_peer(
        client, beta_admin, keyset, organisation="beta", name="source", url=live_worker,
        remote_organisation="acme", token=peer_token("acme"),
    )  # fmt: skip
    return "source"


@pytest.mark.usefixtures("acme", "loops")
async def test_pull_imports_the_peers_export_as_an_upload_and_holds_the_plan(
    client, beta_admin, source, seed
):
    job = await transfer(client, beta_admin, source, kind="pull", organisation="beta", history="full")
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["status"] == "planned"
    plan = (await client.get(f"/v1/plans/{result['plan']}", headers=beta_admin)).json()
    assert plan["bundle"] == result["bundle"]
    assert plan["exporter"] == ISSUER
    assert plan["job"] == job["id"]
    applied = await client.post(f"/v1/plans/{result['plan']}/apply", headers=beta_admin)
    assert applied.status_code == 200, applied.text
    assert await seed.heads("beta", "web") == {"greeting": 1, "farewell": 1}


@pytest.mark.usefixtures("acme", "loops")
async def test_pull_from_an_auto_apply_peer_is_applied(client, beta_admin, source, seed):
    await client.patch(f"/v1/peers/beta/{source}", json={"auto_apply": True}, headers=beta_admin)
    result = (await transfer(client, beta_admin, source, kind="pull", organisation="beta"))["result"]
    assert result["status"] == "applied"
    assert await seed.heads("beta", "shared") == {"footer": 1}


@pytest.mark.usefixtures("acme", "loops")
async def test_a_pull_whose_remote_export_fails_carries_the_peers_problem(client, beta_admin, source):
    job = await transfer(
        client,
        beta_admin,
        source,
        kind="pull",
        organisation="beta",
        selection={"kind": "project", "project": "nope"},
    )
    assert job["status"] == "failed"
    assert job["error"]["status"] == 404
    assert job["error"]["detail"].startswith("peer source: ")
    assert "nope" in job["error"]["detail"]


@pytest.mark.usefixtures("acme", "loops")
async def test_a_pulled_bundle_sealed_by_another_issuer_than_the_peers_is_refused(
    client, beta_admin, live_worker, peer_token, live_registry
):
    await add_peer(
        client, beta_admin, KeySet.generate(), organisation="beta", name="liar",
        issuer="https://liar.example", url=live_worker, remote_organisation="acme", token=peer_token("acme"),
    )  # fmt: skip
    before = await live_registry.snapshot()
    job = await transfer(client, beta_admin, "liar", kind="pull", organisation="beta")
    assert job["status"] == "failed"
    assert job["error"]["type"] == "urn:anvil:problem:bundle-untrusted-key"
    assert "https://liar.example" in job["error"]["detail"]
    assert await live_registry.snapshot() == before


# -- the incoming policy for uploads -----------------------------------------------------------------


def peer_bundle(keys: KeySet, issuer: str, template: str = "Hello from the peer") -> bytes:
    exporter = Exporter(organisation="elsewhere", instance=issuer)
    exporter.prompt("web/greeting", template)
    manifest, contents = exporter.export(kind="project", project="web")
    return write_bundle(manifest, contents, keys.active).data


@pytest.mark.usefixtures("acme")
@pytest.mark.parametrize(
    ("uploader", "auto_apply", "applied"),
    [("peer", False, False), ("peer", True, True), ("operator", True, False)],
)
async def test_a_bundle_a_peer_pushes_is_applied_only_under_its_auto_apply_policy(
    client, beta_admin, peer_token, seed, work, uploader, auto_apply, applied
):
    """Auto-apply covers what the peer itself sends (with its peer token); an operator's
    upload of the same peer's bundle (``anvil import``, a dry run included) is always held."""
    keys = KeySet.generate()
    await add_peer(
        client,
        beta_admin,
        keys,
        organisation="beta",
        name="far",
        issuer="https://far.example",
        auto_apply=auto_apply,
    )
    uploading = bearer(peer_token("beta")) if uploader == "peer" else beta_admin
    r = await client.post(
        "/v1/imports", params={"organisation": "beta"}, content=peer_bundle(keys, "https://far.example"),
        headers={**uploading, **BUNDLE},
    )  # fmt: skip
    assert r.status_code == 202, r.text
    await work()
    job = (await client.get(f"/v1/jobs/{r.json()['id']}", headers=beta_admin)).json()
    assert job["status"] == "succeeded", job
    plan = (await client.get(f"/v1/plans/{job['result']['plan']}", headers=beta_admin)).json()
    assert plan["exporter"] == "https://far.example"
    if applied:
        assert plan["status"] == "applied"
    else:
        assert plan["status"] == "planned"
        # Approving verifies the upload again with the peer's keys, then applies it.
        approved = await client.post(f"/v1/plans/{plan['id']}/apply", headers=beta_admin)
        assert approved.status_code == 200, approved.text
    assert await seed.template("beta", "web", "greeting", 1) == "Hello from the peer"


@pytest.mark.usefixtures("acme")
async def test_a_held_plan_of_a_removed_peer_can_no_longer_be_approved(
    client, beta_admin, seed, work, live_registry
):
    keys = KeySet.generate()
    await add_peer(client, beta_admin, keys, organisation="beta", name="far", issuer="https://far.example")
    r = await client.post(
        "/v1/imports", params={"organisation": "beta"}, content=peer_bundle(keys, "https://far.example"),
        headers={**beta_admin, **BUNDLE},
    )  # fmt: skip
    await work()
    plan_id = (await client.get(f"/v1/jobs/{r.json()['id']}", headers=beta_admin)).json()["result"]["plan"]
    assert (await client.delete("/v1/peers/beta/far", headers=beta_admin)).status_code == 204
    before = await live_registry.snapshot()
    refused = await client.post(f"/v1/plans/{plan_id}/apply", headers=beta_admin)
    assert refused.status_code == 422
    assert refused.json()["type"] == "urn:anvil:problem:bundle-untrusted-key"
    assert await live_registry.snapshot() == before
