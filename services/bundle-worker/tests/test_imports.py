"""Imports end to end against a real registry on loopback: upload -> validation and planning job
-> plan -> apply (one registry transaction) -> the registry's state; and every way it refuses."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from typing import Any

import pytest
from sqlalchemy import text

from anvil_wire import KeySet
from anvil_wire.bundles import read_bundle, write_bundle

BUNDLE = {"Content-Type": "application/vnd.anvil.bundle"}


@pytest.fixture
def registry_url(live_registry: Any) -> str:
    return str(live_registry.url)


@pytest.fixture
async def acme(seed: Any) -> None:
    """The exporting organisation: project web (greeting v1, v2; farewell v1) and a prompt set."""
    await seed.org("acme", "web")
    await seed.version("acme", "web", "greeting", "Hello", "first")
    await seed.version("acme", "web", "greeting", "Hello {{name}}", "second")
    await seed.version("acme", "web", "farewell", "Bye")
    await seed.prompt_set("acme", "web", "app", ["farewell", "greeting"])
    await seed.org("beta")


@pytest.fixture
def importer(make_token: Any) -> dict[str, str]:
    """An operator of organisation beta, allowed to import (and export)."""
    return {"Authorization": f"Bearer {make_token(org='beta', scopes=['bundles:import', 'bundles:export'])}"}


async def export(client: Any, headers: dict[str, str], work: Any, **selection: Any) -> bytes:
    """Export acme/web (full history) through the worker and download the bundle."""
    body = {
        "organisation": "acme",
        "selection": selection or {"kind": "project", "project": "web"},
        "history": "full",
        "environments": False,
    }
    r = await client.post("/v1/exports", json=body, headers=headers)
    assert r.status_code == 202, r.text
    await work()
    job = (await client.get(f"/v1/jobs/{r.json()['id']}", headers=headers)).json()
    assert job["status"] == "succeeded", job
    download = await client.get(f"/v1/bundles/{job['result']['bundle']}", headers=headers)
    assert download.status_code == 200
    return bytes(download.content)


async def upload(
    client: Any,
    headers: dict[str, str],
    data: bytes,
    *,
    organisation: str = "beta",
    strategy: str | None = None,
    overrides: list[str] = (),  # type: ignore[assignment]
    extra: dict[str, str] | None = None,
) -> Any:
    params: list[tuple[str, str]] = [("organisation", organisation)]
    if strategy is not None:
        params.append(("strategy", strategy))
    params += [("override", o) for o in overrides]
    return await client.post(
        "/v1/imports", params=params, content=data, headers={**headers, **BUNDLE, **(extra or {})}
    )


async def plan_of(
    client: Any, headers: dict[str, str], work: Any, data: bytes, **kwargs: Any
) -> dict[str, Any]:
    """Upload, run the import job, and return the plan it made."""
    r = await upload(client, headers, data, **kwargs)
    assert r.status_code == 202, r.text
    await work()
    job = (await client.get(f"/v1/jobs/{r.json()['id']}", headers=headers)).json()
    assert job["status"] == "succeeded", job
    plan = await client.get(f"/v1/plans/{job['result']['plan']}", headers=headers)
    assert plan.status_code == 200, plan.text
    return dict(plan.json())


def prompt_plan(plan: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [p for p in plan["plan"]["prompts"] if p["name"] == name]
    return dict(found)


@pytest.mark.usefixtures("acme")
async def test_import_plans_and_applies_a_bundle_into_the_target(client, acme_headers, importer, work, seed):
    data = await export(client, acme_headers, work)
    plan = await plan_of(client, importer, work, data)
    assert plan["status"] == "planned"
    assert plan["applicable"]
    assert plan["changes"]
    assert plan["organisation"] == "beta"
    assert plan["strategy"] == "fail"
    assert prompt_plan(plan, "greeting")["status"] == "new"
    assert [v["message"] for v in prompt_plan(plan, "greeting")["versions"]] == ["first", "second"]

    r = await client.post(f"/v1/plans/{plan['id']}/apply", headers=importer)
    assert r.status_code == 200, r.text
    applied = r.json()
    assert applied["status"] == "applied"
    assert applied["applied_by"] == "operator:tester"
    assert applied["result"]["created"]["versions"] == 3
    assert "idempotent-replayed" not in r.headers
    assert await seed.heads("beta", "web") == {"greeting": 2, "farewell": 1}
    assert await seed.template("beta", "web", "greeting", 2) == "Hello {{name}}"

    # Applying it again answers the recorded result and writes nothing.
    again = await client.post(f"/v1/plans/{plan['id']}/apply", headers=importer)
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["result"] == applied["result"]


@pytest.mark.usefixtures("acme")
async def test_reimporting_the_same_bundle_is_a_no_op(client, acme_headers, importer, work, live_registry):
    data = await export(client, acme_headers, work)
    first = await plan_of(client, importer, work, data)
    assert (await client.post(f"/v1/plans/{first['id']}/apply", headers=importer)).status_code == 200
    registry_before = await live_registry.snapshot()

    second = await plan_of(client, importer, work, data)
    assert second["changes"] is False
    assert {p["status"] for p in second["plan"]["prompts"]} == {"identical"}
    r = await client.post(f"/v1/plans/{second['id']}/apply", headers=importer)
    assert r.status_code == 200, r.text
    assert r.json()["result"]["created"]["versions"] == 0
    after = await live_registry.snapshot()
    assert _content_tables(after) == _content_tables(registry_before)


def _content_tables(snapshot: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    # What an import writes (the registry records the import itself, and its audit entry).
    return {t: rows for t, rows in snapshot.items() if t in ("prompts", "prompt_versions", "prompt_sets")}


# -- conflicts and strategies ------------------------------------------------------------------------


async def diverge(
    client: Any, acme_headers: dict[str, str], importer: dict[str, str], work: Any, seed: Any
) -> bytes:
    """beta imports acme/web; then both change greeting: the next acme bundle conflicts in beta."""
    plan = await plan_of(client, importer, work, await export(client, acme_headers, work))
    assert (await client.post(f"/v1/plans/{plan['id']}/apply", headers=importer)).status_code == 200
    await seed.version("beta", "web", "greeting", "Beta says hello", "beta's change")
    await seed.version("acme", "web", "greeting", "Acme says hello", "acme's change")
    return await export(client, acme_headers, work)


@pytest.mark.usefixtures("acme")
async def test_conflict_with_strategy_fail_blocks_the_apply_and_says_which_prompt(
    client, acme_headers, importer, work, seed, live_registry
):
    data = await diverge(client, acme_headers, importer, work, seed)
    plan = await plan_of(client, importer, work, data)
    greeting = prompt_plan(plan, "greeting")
    assert greeting["status"] == "conflict"
    assert greeting["action"] == "blocked"
    assert greeting["diff"]
    assert "Beta says hello" in greeting["diff"]
    assert "Acme says hello" in greeting["diff"]
    assert prompt_plan(plan, "farewell")["status"] == "identical"
    assert plan["applicable"] is False
    before = await live_registry.snapshot()
    r = await client.post(f"/v1/plans/{plan['id']}/apply", headers=importer)
    assert r.status_code == 409
    problem = r.json()
    assert problem["type"] == "urn:anvil:problem:plan-not-applicable"
    assert any("web/greeting" in reason for reason in problem["blocked"])
    assert await live_registry.snapshot() == before
    assert (await client.get(f"/v1/plans/{plan['id']}", headers=importer)).json()["status"] == "planned"


@pytest.mark.usefixtures("acme")
@pytest.mark.parametrize(
    ("strategy", "overrides", "heads", "greeting_head"),
    [
        ("skip", [], {"greeting": 3, "farewell": 1}, "Beta says hello"),
        ("overwrite", [], {"greeting": 4, "farewell": 1}, "Acme says hello"),
        ("fail", ["web/greeting=overwrite"], {"greeting": 4, "farewell": 1}, "Acme says hello"),
        ("overwrite", ["web/greeting=skip"], {"greeting": 3, "farewell": 1}, "Beta says hello"),
    ],
)
async def test_conflict_resolved_by_strategy_or_override(
    client, acme_headers, importer, work, seed, strategy, overrides, heads, greeting_head
):
    data = await diverge(client, acme_headers, importer, work, seed)
    plan = await plan_of(client, importer, work, data, strategy=strategy, overrides=overrides)
    assert plan["applicable"] is True
    assert plan["overrides"] == dict(o.split("=") for o in overrides)
    r = await client.post(f"/v1/plans/{plan['id']}/apply", headers=importer)
    assert r.status_code == 200, r.text
    assert await seed.heads("beta", "web") == heads
    assert await seed.template("beta", "web", "greeting", heads["greeting"]) == greeting_head


@pytest.mark.usefixtures("acme")
async def test_conflict_with_strategy_rename_imports_a_new_prompt(client, acme_headers, importer, work, seed):
    data = await diverge(client, acme_headers, importer, work, seed)
    plan = await plan_of(client, importer, work, data, strategy="rename")
    greeting = prompt_plan(plan, "greeting")
    assert greeting["action"] == "rename"
    renamed = greeting["rename_to"]
    assert renamed.startswith("greeting.import-")
    assert (await client.post(f"/v1/plans/{plan['id']}/apply", headers=importer)).status_code == 200
    heads = await seed.heads("beta", "web")
    assert heads["greeting"] == 3
    assert renamed in heads
    assert await seed.template("beta", "web", renamed, heads[renamed]) == "Acme says hello"
    # Planning the same bundle again finds the renamed copy: nothing to do.
    again = await plan_of(client, importer, work, data, strategy="rename")
    assert again["changes"] is False


@pytest.mark.usefixtures("acme")
async def test_fast_forward_appends_the_new_versions(client, acme_headers, importer, work, seed):
    plan = await plan_of(client, importer, work, await export(client, acme_headers, work))
    assert (await client.post(f"/v1/plans/{plan['id']}/apply", headers=importer)).status_code == 200
    await seed.version("acme", "web", "greeting", "Hello again", "third")
    plan = await plan_of(client, importer, work, await export(client, acme_headers, work))
    greeting = prompt_plan(plan, "greeting")
    assert greeting["status"] == "fast-forward"
    assert [v["message"] for v in greeting["versions"]] == ["third"]
    assert (await client.post(f"/v1/plans/{plan['id']}/apply", headers=importer)).status_code == 200
    assert (await seed.heads("beta", "web"))["greeting"] == 3


# -- the target moved, plans expire or are rejected ----------------------------------------------------


@pytest.mark.usefixtures("acme")
async def test_target_changed_between_plan_and_apply_is_409_stale_and_nothing_written(
    client, acme_headers, importer, work, seed, live_registry
):
    plan = await plan_of(client, importer, work, await export(client, acme_headers, work))
    assert (await client.post(f"/v1/plans/{plan['id']}/apply", headers=importer)).status_code == 200
    await seed.version("acme", "web", "greeting", "Hello again", "third")
    plan = await plan_of(client, importer, work, await export(client, acme_headers, work))
    assert prompt_plan(plan, "greeting")["status"] == "fast-forward"
    await seed.version("beta", "web", "greeting", "Meanwhile in beta")  # the target moves
    before = await live_registry.snapshot()

    r = await client.post(f"/v1/plans/{plan['id']}/apply", headers=importer)
    assert r.status_code == 409
    assert r.json()["type"] == "urn:anvil:problem:import-target-changed"
    assert "upload the bundle again" in r.json()["detail"].lower()
    assert await live_registry.snapshot() == before
    stale = (await client.get(f"/v1/plans/{plan['id']}", headers=importer)).json()
    assert stale["status"] == "stale"
    assert stale["error"]["type"] == "urn:anvil:problem:import-target-changed"
    again = await client.post(f"/v1/plans/{plan['id']}/apply", headers=importer)
    assert again.status_code == 409
    assert again.json()["type"] == "urn:anvil:problem:plan-not-open"


@pytest.mark.usefixtures("acme")
async def test_expired_plan_cannot_be_applied(client, acme_headers, importer, work, state, live_registry):
    from sqlalchemy import update

    from anvil_bundle_worker.models import Plan
    from anvil_common.db import utcnow

    plan = await plan_of(client, importer, work, await export(client, acme_headers, work))
    async with state.db.session() as session:
        await session.execute(update(Plan).values(expires_at=utcnow()))
    assert (await client.get(f"/v1/plans/{plan['id']}", headers=importer)).json()["status"] == "expired"
    before = await live_registry.snapshot()
    r = await client.post(f"/v1/plans/{plan['id']}/apply", headers=importer)
    assert r.status_code == 410
    assert r.json()["type"] == "urn:anvil:problem:plan-expired"
    assert await live_registry.snapshot() == before
    assert (await client.post(f"/v1/plans/{plan['id']}/apply", headers=importer)).status_code == 410


@pytest.mark.usefixtures("acme")
async def test_rejected_plan_cannot_be_applied_and_an_applied_one_cannot_be_rejected(
    client, acme_headers, importer, work, live_registry
):
    data = await export(client, acme_headers, work)
    plan = await plan_of(client, importer, work, data)
    r = await client.post(f"/v1/plans/{plan['id']}/reject", headers=importer)
    assert r.status_code == 200
    assert r.json()["status"] == "rejected"
    replay = await client.post(f"/v1/plans/{plan['id']}/reject", headers=importer)
    assert replay.status_code == 200
    assert replay.headers["idempotent-replayed"] == "true"
    before = await live_registry.snapshot()
    refused = await client.post(f"/v1/plans/{plan['id']}/apply", headers=importer)
    assert refused.status_code == 409
    assert refused.json()["type"] == "urn:anvil:problem:plan-not-open"
    assert await live_registry.snapshot() == before

    other = await plan_of(client, importer, work, data)
    assert (await client.post(f"/v1/plans/{other['id']}/apply", headers=importer)).status_code == 200
    late = await client.post(f"/v1/plans/{other['id']}/reject", headers=importer)
    assert late.status_code == 409
    assert late.json()["type"] == "urn:anvil:problem:plan-already-applied"


# -- refused bundles: a clear problem, nothing written but the failed job ----------------------------


def reseal(data: bytes, key: Any, **manifest_changes: Any) -> bytes:
    """The bundle's manifest (changed) and contents, written again and sealed with ``key``."""
    bundle = read_bundle(data, trust=None)
    manifest = {**bundle.manifest, **manifest_changes}
    return write_bundle(manifest, bundle.contents, key).data


def members(data: bytes) -> tuple[bytes, bytes]:
    """(body, seal): the two gzip members of a bundle file."""
    inflater = zlib.decompressobj(wbits=31)
    inflater.decompress(data)
    seal = inflater.unused_data
    return data[: len(data) - len(seal)], seal


async def refused_job(
    client: Any, headers: dict[str, str], work: Any, data: bytes, *, state: Any, **kwargs: Any
) -> dict[str, Any]:
    """Upload ``data``: the import job fails; the upload is gone and no plan was stored."""
    r = await upload(client, headers, data, **kwargs)
    assert r.status_code == 202, r.text
    await work()
    job = (await client.get(f"/v1/jobs/{r.json()['id']}", headers=headers)).json()
    assert job["status"] == "failed", job
    assert job["attempts"] == 1
    assert job["result"] is None
    async with state.db.session(write=False) as session:
        assert (await session.execute(text("SELECT count(*) FROM plans"))).scalar() == 0
        kinds = (await session.execute(text("SELECT kind FROM bundles"))).scalars().all()
        assert "import" not in kinds
    return dict(job["error"])


@pytest.mark.usefixtures("acme")
async def test_bundle_sealed_by_an_unknown_key_is_refused(
    client, acme_headers, importer, work, state, live_registry
):
    data = reseal(await export(client, acme_headers, work), KeySet.generate().active)
    before = await live_registry.snapshot()
    error = await refused_job(client, importer, work, data, state=state)
    assert error["type"] == "urn:anvil:problem:bundle-untrusted-key"
    assert error["status"] == 422
    assert "not a trusted key" in error["detail"]
    assert await live_registry.snapshot() == before


@pytest.mark.usefixtures("acme")
async def test_bundle_of_another_issuer_is_refused_even_when_sealed_by_our_key(
    client, acme_headers, importer, work, state, keyset
):
    data = await export(client, acme_headers, work)
    exporter = {"instance": "https://elsewhere.example", "software": "anvil-bundle-worker/0.1.0"}
    error = await refused_job(
        client, importer, work, reseal(data, keyset.active, exporter=exporter), state=state
    )
    assert error["type"] == "urn:anvil:problem:bundle-untrusted-key"
    assert "https://elsewhere.example" in error["detail"]


@pytest.mark.usefixtures("acme")
async def test_tampered_bundles_are_refused_with_nothing_written(
    client, acme_headers, importer, work, state, keyset, live_registry
):
    data = await export(client, acme_headers, work)
    before = await live_registry.snapshot()
    # Another manifest under the original seal: the seal names another bundle digest.
    body, _ = members(reseal(data, keyset.active, projects=_redescribed(data)))
    _, seal = members(data)
    error = await refused_job(client, importer, work, body + seal, state=state)
    assert error["type"] == "urn:anvil:problem:bundle-signature-invalid"
    # A byte flipped inside the compressed body.
    flipped = bytearray(data)
    flipped[len(flipped) // 3] ^= 0xFF
    error = await refused_job(client, importer, work, bytes(flipped), state=state)
    assert error["type"] in ("urn:anvil:problem:bundle-malformed", "urn:anvil:problem:bundle-digest-mismatch")
    # Not a bundle at all; and no seal.
    error = await refused_job(client, importer, work, b"PK\x03\x04 a zip file", state=state)
    assert error["type"] == "urn:anvil:problem:bundle-malformed"
    unsigned = members(data)[0] + gzip.compress(bytes(1024))  # the body, then the end of the archive
    error = await refused_job(client, importer, work, unsigned, state=state)
    assert error["type"] == "urn:anvil:problem:bundle-unsigned"
    assert await live_registry.snapshot() == before


def _redescribed(data: bytes) -> list[dict[str, Any]]:
    projects = read_bundle(data, trust=None).manifest["projects"]
    return [{**p, "description": "changed after sealing"} for p in projects]


@pytest.mark.usefixtures("acme")
async def test_import_outside_the_tokens_project_is_refused(client, acme_headers, make_token, work, state):
    data = await export(client, acme_headers, work)  # holds project web
    docs_only = make_token(org="beta", project="docs", scopes=["bundles:import"])
    error = await refused_job(client, {"Authorization": f"Bearer {docs_only}"}, work, data, state=state)
    assert error["type"] == "urn:anvil:problem:import-outside-project"
    assert error["status"] == 403
    assert "web" in error["detail"]


@pytest.mark.usefixtures("acme")
async def test_override_naming_no_prompt_of_the_bundle_fails_the_job(
    client, acme_headers, importer, work, state
):
    data = await export(client, acme_headers, work)
    error = await refused_job(client, importer, work, data, overrides=["web/nothing=skip"], state=state)
    assert error["type"] == "urn:anvil:problem:import-plan-invalid"
    assert "web/nothing" in error["detail"]


@pytest.mark.usefixtures("acme")
async def test_import_into_an_organisation_the_registry_lacks_fails(
    client, acme_headers, make_token, work, state
):
    data = await export(client, acme_headers, work)
    admin = {"Authorization": f"Bearer {make_token(org=None, scopes=['bundles:import'])}"}
    error = await refused_job(client, admin, work, data, organisation="ghost", state=state)
    assert error["status"] == 404


@pytest.mark.usefixtures("acme")
async def test_same_idempotency_key_and_upload_returns_the_same_import_job(
    client, acme_headers, importer, work, snapshot
):
    data = await export(client, acme_headers, work)
    keyed = {"Idempotency-Key": "import-1"}
    first = await upload(client, importer, data, extra=keyed)
    second = await upload(client, importer, data, extra=keyed)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    before = await snapshot()
    other = await upload(client, importer, data, strategy="skip", extra=keyed)
    assert other.status_code == 422
    assert other.json()["type"] == "urn:anvil:problem:idempotency-key-reused"
    assert await snapshot() == before


@pytest.mark.usefixtures("acme")
async def test_concurrent_applies_of_one_plan_write_once(client, acme_headers, importer, work, seed):
    plan = await plan_of(client, importer, work, await export(client, acme_headers, work))
    first, second = await asyncio.gather(
        client.post(f"/v1/plans/{plan['id']}/apply", headers=importer),
        client.post(f"/v1/plans/{plan['id']}/apply", headers=importer),
    )
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.json()["result"] == second.json()["result"]
    assert await seed.heads("beta", "web") == {"greeting": 2, "farewell": 1}


# -- backup and restore -----------------------------------------------------------------------------------


async def _history(seed: Any, org: str) -> dict[str, Any]:
    """What a restore must reproduce: every version's content hash, every revision's served digests."""
    get = seed.http.get
    versions = {}
    for name in await seed.heads(org, "web"):
        r = await get(f"/v1/orgs/{org}/projects/web/prompts/{name}/versions", headers=seed.headers)
        versions[name] = sorted((v["number"], v["content_hash"]) for v in r.json()["items"])
    revisions = []
    listed = await get(f"/v1/orgs/{org}/projects/web/environments/prod/revisions", headers=seed.headers)
    for summary in sorted(listed.json()["items"], key=lambda r: r["number"]):
        url = f"/v1/orgs/{org}/projects/web/environments/prod/revisions/{summary['number']}"
        revision = (await get(url, headers=seed.headers)).json()
        revisions.append((revision["number"], {n: e["digest"] for n, e in revision["prompts"].items()}))
    return {"versions": versions, "revisions": revisions}


@pytest.mark.usefixtures("acme")
async def test_restoring_an_organisation_backup_into_an_empty_one_reproduces_its_history(
    client, acme_headers, importer, work, seed
):
    await seed.environment("acme", "web", "prod")
    await seed.publish("acme", "web", "prod", {"greeting": 1})
    await seed.publish("acme", "web", "prod", {"greeting": 2, "farewell": 1})
    body = {"kind": "organisation"}
    r = await client.post(
        "/v1/exports",
        json={"organisation": "acme", "selection": body, "history": "full", "environments": True},
        headers=acme_headers,
    )
    await work()
    digest = (await client.get(f"/v1/jobs/{r.json()['id']}", headers=acme_headers)).json()["result"]["bundle"]
    data = (await client.get(f"/v1/bundles/{digest}", headers=acme_headers)).content

    plan = await plan_of(client, importer, work, data)
    [environment] = plan["plan"]["environments"]
    assert environment["action"] == "create"
    assert len(environment["revisions"]) == 2
    applied = await client.post(f"/v1/plans/{plan['id']}/apply", headers=importer)
    assert applied.status_code == 200, applied.text
    assert await _history(seed, "beta") == await _history(seed, "acme")
