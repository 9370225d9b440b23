from __future__ import annotations

import asyncio
import json

import pytest
from registry_testkit import add_version, create_env, publish

from anvil_wire import RevisionError, verify_revision

PROBLEM = "application/problem+json"
ENV = "/v1/orgs/acme/projects/web/environments"


async def test_publish_creates_signed_revision_that_verifies_and_renders(client, admin_headers, acme, state):
    env = await create_env(client, admin_headers, "prod")
    await add_version(state, "web", "footer", "-- {{ team }}", variables={"team": {"default": "Acme"}})
    await add_version(
        state, "web", "support/greeting", "Hello {{ name }}! {{> footer}}", variables={"name": {}}
    )
    r = await publish(client, admin_headers, "prod", {"prompts": {"support/greeting": 1, "footer": "latest"}})
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == '"rev-1"'
    body = r.json()
    assert body["number"] == 1
    assert body["prompts"]["support/greeting"]["partials"] == {"footer": "footer"}

    config = await client.get(f"{ENV}/prod/config", headers=admin_headers)
    assert config.status_code == 200
    assert config.headers["etag"] == '"rev-1"'
    verified = verify_revision(config.json(), state.keyset.public_keys(), environment_id=env["id"])
    assert verified.manifest.revision == 1
    assert verified.manifest.organisation["slug"] == "acme"
    assert verified.render("support/greeting", {"name": "Ada"}) == "Hello Ada! -- Acme"


async def test_publish_without_if_match_is_428_and_stale_is_412_writing_nothing(
    client, admin_headers, acme, state, snapshot
):
    await create_env(client, admin_headers, "prod")
    await add_version(state, "web", "a", "A")
    before = await snapshot()
    r = await client.post(f"{ENV}/prod/revisions", json={"prompts": {"a": 1}}, headers=admin_headers)
    assert r.status_code == 428
    assert r.headers["content-type"] == PROBLEM
    r = await publish(client, admin_headers, "prod", {"prompts": {"a": 1}}, etag='"rev-7"')
    assert r.status_code == 412
    assert r.json()["current_etag"] == '"rev-0"'
    assert await snapshot() == before


async def test_identical_publish_is_a_no_op_returning_the_current_revision(
    client, admin_headers, acme, state, snapshot
):
    await create_env(client, admin_headers, "prod")
    await add_version(state, "web", "a", "A")
    assert (await publish(client, admin_headers, "prod", {"prompts": {"a": 1}})).status_code == 201
    before = await snapshot()
    r = await publish(client, admin_headers, "prod", {"prompts": {"a": "latest"}})
    assert r.status_code == 200
    assert r.json()["number"] == 1
    assert await snapshot() == before


async def test_merge_remove_and_replace(client, admin_headers, acme, state):
    await create_env(client, admin_headers, "prod")
    for name in ("a", "b", "c"):
        await add_version(state, "web", name, name.upper())
    await publish(client, admin_headers, "prod", {"prompts": {"a": 1, "b": 1}})
    r = await publish(client, admin_headers, "prod", {"prompts": {"c": 1}, "remove": ["a"]})
    assert sorted(r.json()["prompts"]) == ["b", "c"]
    r = await publish(client, admin_headers, "prod", {"prompts": {"a": 1}, "replace": True})
    assert sorted(r.json()["prompts"]) == ["a"]
    assert r.json()["number"] == 3


async def test_rollback_creates_higher_revision_with_earlier_content(client, admin_headers, acme, state):
    env = await create_env(client, admin_headers, "prod")
    await add_version(state, "web", "a", "one")
    await publish(client, admin_headers, "prod", {"prompts": {"a": 1}})
    await add_version(state, "web", "a", "two")
    await publish(client, admin_headers, "prod", {"prompts": {"a": 2}})
    r = await client.post(
        f"{ENV}/prod/rollbacks", json={"to_revision": 1}, headers={**admin_headers, "If-Match": '"rev-2"'}
    )
    assert r.status_code == 201, r.text
    assert r.json()["number"] == 3
    assert r.json()["rollback_of"] == 1
    doc = (await client.get(f"{ENV}/prod/config", headers=admin_headers)).json()
    verified = verify_revision(doc, state.keyset.public_keys(), environment_id=env["id"])
    assert verified.manifest.revision == 3
    assert verified.manifest.rollback_of == 1
    assert verified.render("a", {}) == "one"
    history = (await client.get(f"{ENV}/prod/revisions", headers=admin_headers)).json()["items"]
    assert [h["number"] for h in history] == [3, 2, 1]


async def test_rollback_to_current_or_future_is_422_and_writes_nothing(
    client, admin_headers, acme, state, snapshot
):
    await create_env(client, admin_headers, "prod")
    await add_version(state, "web", "a", "one")
    await publish(client, admin_headers, "prod", {"prompts": {"a": 1}})
    before = await snapshot()
    for target in (1, 5):
        r = await client.post(
            f"{ENV}/prod/rollbacks",
            json={"to_revision": target},
            headers={**admin_headers, "If-Match": '"rev-1"'},
        )
        assert r.status_code == 422
        assert r.json()["type"] == "urn:anvil:problem:invalid-rollback-target"
    assert await snapshot() == before


async def test_promote_copies_exact_content_into_the_target_environment(client, admin_headers, acme, state):
    await create_env(client, admin_headers, "staging")
    prod = await create_env(client, admin_headers, "prod")
    await add_version(state, "web", "a", "tested")
    await publish(client, admin_headers, "staging", {"prompts": {"a": 1}})
    await add_version(state, "web", "a", "untested")
    r = await client.post(
        f"{ENV}/prod/promotions",
        json={"from_environment": "staging"},
        headers={**admin_headers, "If-Match": '"rev-0"'},
    )
    assert r.status_code == 201, r.text
    assert r.json()["promoted_from"]["environment"] == "staging"
    doc = (await client.get(f"{ENV}/prod/config", headers=admin_headers)).json()
    verified = verify_revision(doc, state.keyset.public_keys(), environment_id=prod["id"])
    assert verified.render("a", {}) == "tested"


async def test_revision_is_bound_to_its_environment(client, admin_headers, acme, state):
    staging = await create_env(client, admin_headers, "staging")
    await create_env(client, admin_headers, "prod")
    await add_version(state, "web", "a", "A")
    await publish(client, admin_headers, "prod", {"prompts": {"a": 1}})
    doc = (await client.get(f"{ENV}/prod/config", headers=admin_headers)).json()
    with pytest.raises(RevisionError, match="another environment"):
        verify_revision(doc, state.keyset.public_keys(), environment_id=staging["id"])


async def test_cross_project_partials_resolve_through_same_named_environment(
    client, admin_headers, acme, state
):
    r = await client.post(
        "/v1/orgs/acme/projects", json={"slug": "shared", "name": "Shared"}, headers=admin_headers
    )
    assert r.status_code == 201
    await create_env(client, admin_headers, "prod", project="shared")
    await add_version(state, "shared", "legal", "(c) {{ year }}", variables={"year": {"default": "2026"}})
    await add_version(state, "shared", "legal", "(C) {{ year }}", variables={"year": {"default": "2026"}})
    await publish(client, admin_headers, "prod", {"prompts": {"legal": 1}}, project="shared")
    await create_env(client, admin_headers, "prod")
    await add_version(state, "web", "mail", "Hi. {{> shared:legal}} {{> shared:legal@2}}")
    r = await publish(client, admin_headers, "prod", {"prompts": {"mail": 1}})
    assert r.status_code == 201, r.text
    body = r.json()
    assert sorted(body["dependencies"]) == ["shared:legal@1", "shared:legal@2"]
    doc = (await client.get(f"{ENV}/prod/config", headers=admin_headers)).json()
    verified = verify_revision(doc, state.keyset.public_keys())
    assert verified.render("mail", {}) == "Hi. (c) 2026 (C) 2026"


async def test_partial_cycles_and_missing_targets_are_422_and_write_nothing(
    client, admin_headers, acme, state, snapshot
):
    await create_env(client, admin_headers, "prod")
    await add_version(state, "web", "a", "A {{> b}}")
    await add_version(state, "web", "b", "B {{> a}}")
    await add_version(state, "web", "c", "C {{> nowhere}}")
    await add_version(state, "web", "d", "D {{> other:x}}")
    await add_version(state, "web", "chat", [{"role": "user", "content": "hi"}])
    await add_version(state, "web", "e", "E {{> chat}}")
    before = await snapshot()
    cases = [
        ({"a": 1, "b": 1}, "cyclic-reference"),
        ({"c": 1}, "unresolved-partial"),
        ({"d": 1}, "unresolved-partial"),
        ({"e": 1, "chat": 1}, "invalid-partial"),
        ({"zzz": 1}, "unknown-prompt"),
        ({"a": 9}, "unknown-prompt"),
    ]
    for prompts, code in cases:
        r = await publish(client, admin_headers, "prod", {"prompts": prompts})
        assert r.status_code == 422, r.text
        assert r.json()["type"] == f"urn:anvil:problem:{code}", r.text
    assert await snapshot() == before


async def test_config_etag_304_and_cache_follows_new_revisions(
    client, admin_headers, make_token, acme, state
):
    await create_env(client, admin_headers, "prod")
    await add_version(state, "web", "a", "one")
    await publish(client, admin_headers, "prod", {"prompts": {"a": 1}})
    reader = {
        "Authorization": f"Bearer {make_token('client', org='acme', project='web', environment='prod')}"
    }
    first = await client.get(f"{ENV}/prod/config", headers=reader)
    assert first.status_code == 200
    again = await client.get(f"{ENV}/prod/config", headers={**reader, "If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    await add_version(state, "web", "a", "two")
    await publish(client, admin_headers, "prod", {"prompts": {"a": 2}})
    after = await client.get(f"{ENV}/prod/config", headers={**reader, "If-None-Match": first.headers["etag"]})
    assert after.status_code == 200
    assert after.headers["etag"] == '"rev-2"'
    assert json.loads(after.content)["format"] == "anvil.revision.v1"


async def test_client_token_reads_only_its_environment(client, admin_headers, make_token, acme, state):
    await create_env(client, admin_headers, "prod")
    await create_env(client, admin_headers, "dev")
    await add_version(state, "web", "a", "one")
    await publish(client, admin_headers, "dev", {"prompts": {"a": 1}})
    reader = {
        "Authorization": f"Bearer {make_token('client', org='acme', project='web', environment='prod')}"
    }
    r = await client.get(f"{ENV}/dev/config", headers=reader)
    assert r.status_code == 403
    r = await client.get(f"{ENV}/prod/revisions", headers=reader)
    assert r.status_code == 403
    assert r.json()["required_scope"] == "revisions:read"


async def test_config_of_empty_or_archived_environment(client, admin_headers, acme, state):
    await create_env(client, admin_headers, "prod")
    r = await client.get(f"{ENV}/prod/config", headers=admin_headers)
    assert r.status_code == 404
    assert r.json()["type"] == "urn:anvil:problem:no-revision"
    await add_version(state, "web", "a", "one")
    await publish(client, admin_headers, "prod", {"prompts": {"a": 1}})
    assert (await client.get(f"{ENV}/prod/config", headers=admin_headers)).status_code == 200
    r = await client.delete(f"{ENV}/prod", headers=admin_headers)
    assert r.status_code == 200
    r = await client.get(f"{ENV}/prod/config", headers=admin_headers)
    assert r.status_code == 410
    assert r.json()["type"] == "urn:anvil:problem:environment-archived"
    r = await publish(client, admin_headers, "prod", {"prompts": {"a": 1}})
    assert r.status_code == 409


async def test_idempotency_key_replays_and_refuses_other_bodies(client, admin_headers, acme, state, snapshot):
    await create_env(client, admin_headers, "prod")
    await add_version(state, "web", "a", "one")
    await add_version(state, "web", "b", "two")
    headers = {**admin_headers, "If-Match": '"rev-0"', "Idempotency-Key": "k1"}
    first = await client.post(f"{ENV}/prod/revisions", json={"prompts": {"a": 1}}, headers=headers)
    assert first.status_code == 201
    before = await snapshot()
    replay = await client.post(f"{ENV}/prod/revisions", json={"prompts": {"a": 1}}, headers=headers)
    assert replay.status_code == 201
    assert replay.json() == first.json()
    assert replay.headers["idempotent-replayed"] == "true"
    other = await client.post(f"{ENV}/prod/revisions", json={"prompts": {"b": 1}}, headers=headers)
    assert other.status_code == 422
    assert other.json()["type"] == "urn:anvil:problem:idempotency-key-reused"
    assert await snapshot() == before


async def test_diff_between_revisions(client, admin_headers, acme, state):
    await create_env(client, admin_headers, "prod")
    for name in ("a", "b"):
        await add_version(state, "web", name, name)
    await publish(client, admin_headers, "prod", {"prompts": {"a": 1, "b": 1}})
    await add_version(state, "web", "a", "a2")
    await add_version(state, "web", "c", "c")
    await publish(client, admin_headers, "prod", {"prompts": {"a": 2, "c": 1}, "remove": ["b"]})
    d = (await client.get(f"{ENV}/prod/diff", params={"from": 1, "to": 2}, headers=admin_headers)).json()
    assert list(d["added"]) == ["c"]
    assert list(d["removed"]) == ["b"]
    assert d["changed"]["a"]["before"]["version"] == 1
    assert d["changed"]["a"]["after"]["version"] == 2


async def test_concurrent_publishers_get_consecutive_revision_numbers(client, admin_headers, acme, state):
    await create_env(client, admin_headers, "prod")
    for i in range(6):
        await add_version(state, "web", f"p{i}", f"P{i}")

    async def attempt(i: int) -> int:
        # Each retries on 412 like a real client would: read the ETag, publish.
        while True:
            r = await publish(client, admin_headers, "prod", {"prompts": {f"p{i}": 1}})
            if r.status_code != 412:
                assert r.status_code == 201, r.text
                return int(r.json()["number"])

    numbers = await asyncio.gather(*(attempt(i) for i in range(6)))
    assert sorted(numbers) == [1, 2, 3, 4, 5, 6]
    final = (await client.get(f"{ENV}/prod/revisions/6", headers=admin_headers)).json()
    assert sorted(final["prompts"]) == [f"p{i}" for i in range(6)]


async def test_partials_nested_deeper_than_clients_render_are_refused(
    client, admin_headers, acme, state, snapshot
):
    await create_env(client, admin_headers, "prod")
    await add_version(state, "web", "p0", "end")
    for i in range(1, 18):
        await add_version(state, "web", f"p{i}", f"{i} {{{{> p{i - 1}@1}}}}")
    ok = await publish(client, admin_headers, "prod", {"prompts": {"p16": 1}})
    assert ok.status_code == 201, ok.text
    doc = (await client.get(f"{ENV}/prod/config", headers=admin_headers)).json()
    rendered = verify_revision(doc, state.keyset.public_keys()).render("p16", {})
    assert isinstance(rendered, str)
    assert rendered.endswith("1 end")
    before = await snapshot()
    r = await publish(client, admin_headers, "prod", {"prompts": {"p17": 1}})
    assert r.status_code == 422
    assert r.json()["type"] == "urn:anvil:problem:partials-too-deep"
    assert await snapshot() == before


async def test_archived_prompt_cannot_be_reached_through_a_partial(
    client, admin_headers, acme, state, snapshot
):
    await create_env(client, admin_headers, "prod")
    await add_version(state, "web", "legal", "(c)")
    await add_version(state, "web", "mail", "Hi {{> legal@1}}")
    async with state.db.session() as session:
        from sqlalchemy import update

        from anvil_common.db import utcnow
        from anvil_registry.models import Prompt

        await session.execute(update(Prompt).where(Prompt.name == "legal").values(archived_at=utcnow()))
    before = await snapshot()
    r = await publish(client, admin_headers, "prod", {"prompts": {"mail": 1}})
    assert r.status_code == 422
    assert r.json()["type"] == "urn:anvil:problem:archived-prompt"
    assert await snapshot() == before


async def test_a_weak_etag_never_satisfies_if_match(client, admin_headers, acme, state, snapshot):
    await create_env(client, admin_headers, "prod")
    await add_version(state, "web", "a", "A")
    before = await snapshot()
    r = await publish(client, admin_headers, "prod", {"prompts": {"a": 1}}, etag='W/"rev-0"')
    assert r.status_code == 412
    assert await snapshot() == before


async def test_promote_refuses_a_revision_serving_an_archived_prompt(
    client, admin_headers, acme, state, snapshot
):
    await create_env(client, admin_headers, "staging")
    await create_env(client, admin_headers, "prod")
    await add_version(state, "web", "a", "A")
    await publish(client, admin_headers, "staging", {"prompts": {"a": 1}})
    r = await client.delete("/v1/orgs/acme/projects/web/prompts/a", headers=admin_headers)
    assert r.status_code == 200
    before = await snapshot()
    r = await client.post(
        f"{ENV}/prod/promotions",
        json={"from_environment": "staging"},
        headers={**admin_headers, "If-Match": '"rev-0"'},
    )
    assert r.status_code == 422
    assert r.json()["type"] == "urn:anvil:problem:archived-prompt"
    assert await snapshot() == before
