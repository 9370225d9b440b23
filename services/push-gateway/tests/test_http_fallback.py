"""The HTTP fallback (docs/push-protocol.md section 7): ``GET .../config`` on the gateway serves
the registry's signed revision document byte for byte, with ETag, long-poll, prompt-set
narrowing, and every refusal as its exact problem."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from live_registry import Seeder

from anvil_wire import KeySet, public_keys_from_jwks
from anvil_wire.push import PushRefused, manifest_digest, verify_pushed

CONFIG = "/v1/orgs/{org}/projects/{project}/environments/{environment}/config"


@pytest.fixture
async def acme(seed: Seeder) -> Seeder:
    """acme/web: greeting (using the footer partial), footer and farewell; prod serves greeting
    and farewell at revision 1; staging has nothing published."""
    await seed.org("acme", "web")
    await seed.version("acme", "web", "footer", "-- the Acme team")
    await seed.version("acme", "web", "greeting", "Hello {{name}} {{> footer@1}}")
    await seed.version("acme", "web", "farewell", "Bye {{name}}")
    await seed.environment("acme", "web", "prod")
    await seed.environment("acme", "web", "staging")
    await seed.publish("acme", "web", "prod", {"greeting": 1, "farewell": 1})
    return seed


@pytest.fixture
def client_token(make_token: Any) -> str:
    return str(make_token("client", org="acme", project="web", environment="prod"))


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def get_config(
    gateway: Any,
    token: str | None,
    environment: str = "prod",
    *,
    org: str = "acme",
    project: str = "web",
    etag: str | None = None,
    **params: Any,
) -> httpx.Response:
    headers = {} if token is None else auth(token)
    if etag is not None:
        headers["If-None-Match"] = etag
    path = CONFIG.format(org=org, project=project, environment=environment)
    return await gateway.client.get(path, params=params, headers=headers)


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert (body["type"], body["status"]) == (f"urn:anvil:problem:{code}", status)
    return body


async def registry_config(seed: Seeder, environment: str = "prod") -> httpx.Response:
    """The registry's own answer at .../config."""
    path = CONFIG.format(org="acme", project="web", environment=environment)
    r = await seed.http.get(path, headers=seed.headers)
    assert r.status_code == 200, r.text
    return r


async def environment_id(seed: Seeder, environment: str) -> str:
    r = await seed.http.get(f"/v1/orgs/acme/projects/web/environments/{environment}", headers=seed.headers)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def verify(keyset: KeySet, response: httpx.Response, prompts: Any = None) -> Any:
    """The answer's document verified as a client does, against its headers' claims."""
    keys = public_keys_from_jwks(keyset.public_jwks())
    expected = (int(response.headers["anvil-revision"]), response.headers["anvil-manifest-digest"])
    return verify_pushed(
        response.json(),
        keys,
        environment_id=response.headers["anvil-environment-id"],
        prompts=prompts,
        expected=expected,
    )


async def parked(task: asyncio.Task[Any]) -> None:
    """Give a long-poll time to reach the gateway and check it is still waiting."""
    await asyncio.sleep(0.3)
    assert not task.done(), task.result()


# -- the document ------------------------------------------------------------------------------


async def test_the_current_revision_is_the_registrys_document_byte_for_byte_with_its_headers(
    gateway, acme, client_token, keyset
):
    r = await get_config(gateway, client_token)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    registry = await registry_config(acme)
    assert r.content == registry.content
    document = await acme.http.get(
        "/v1/orgs/acme/projects/web/environments/prod/revisions/1/document", headers=acme.headers
    )
    assert r.content == document.content
    assert r.headers["etag"] == registry.headers["etag"] == '"rev-1"'
    assert r.headers["anvil-environment-id"] == await environment_id(acme, "prod")
    assert r.headers["anvil-revision"] == "1"
    assert r.headers["anvil-manifest-digest"] == manifest_digest(json.loads(r.content)["manifest"])
    assert "anvil-prompt-set-prompts" not in r.headers
    verified = verify(keyset, r)
    assert verified.render("greeting", {"name": "Ada"}) == "Hello Ada -- the Acme team"


async def test_a_new_revision_is_served_once_the_gateway_has_it(gateway, acme, client_token):
    await get_config(gateway, client_token)  # the environment is loaded at revision 1
    await acme.version("acme", "web", "farewell", "Goodbye {{name}}")
    await acme.publish("acme", "web", "prod", {"farewell": 2})
    await gateway.until(lambda: gateway.state.hub.by_key[("acme", "web", "prod")].current.number == 2)
    r = await get_config(gateway, client_token)
    assert (r.status_code, r.headers["etag"], r.headers["anvil-revision"]) == (200, '"rev-2"', "2")
    assert r.content == (await registry_config(acme)).content


@pytest.mark.parametrize("etag", ['"rev-1"', 'W/"rev-1"', '"rev-9", "rev-1"', "*"])
async def test_if_none_match_naming_the_current_revision_is_not_modified(gateway, acme, client_token, etag):
    r = await get_config(gateway, client_token, etag=etag)
    assert (r.status_code, r.content) == (304, b"")
    assert r.headers["etag"] == '"rev-1"'
    assert "anvil-revision" not in r.headers


async def test_if_none_match_naming_another_revision_gets_the_document(gateway, acme, client_token):
    r = await get_config(gateway, client_token, etag='"rev-0"')
    assert (r.status_code, r.headers["etag"]) == (200, '"rev-1"')


# -- long-poll ---------------------------------------------------------------------------------


async def test_a_long_poll_answers_with_the_new_revision_as_soon_as_it_is_published(
    gateway, acme, client_token, keyset
):
    poll = asyncio.create_task(get_config(gateway, client_token, etag='"rev-1"', wait=60))
    await parked(poll)
    await acme.version("acme", "web", "farewell", "Goodbye {{name}}")
    await acme.publish("acme", "web", "prod", {"farewell": 2})
    r = await asyncio.wait_for(poll, 30)  # well before its 60 s: woken by the revision
    assert (r.status_code, r.headers["etag"], r.headers["anvil-revision"]) == (200, '"rev-2"', "2")
    assert verify(keyset, r).render("farewell", {"name": "Ada"}) == "Goodbye Ada"


async def test_a_long_poll_without_a_new_revision_ends_not_modified(gateway, acme, client_token):
    r = await get_config(gateway, client_token, etag='"rev-1"', wait=0.5)
    assert (r.status_code, r.content, r.headers["etag"]) == (304, b"", '"rev-1"')


async def test_a_long_poll_on_an_outdated_etag_answers_at_once(gateway, acme, client_token):
    poll = asyncio.create_task(get_config(gateway, client_token, etag='"rev-0"', wait=60))
    r = await asyncio.wait_for(poll, 30)
    assert (r.status_code, r.headers["etag"]) == (200, '"rev-1"')


async def test_before_the_first_revision_the_answer_is_no_revision(gateway, acme, make_token):
    token = make_token("client", org="acme", project="web", environment="staging")
    body = problem(await get_config(gateway, token, "staging"), 404, "no-revision")
    assert body["detail"] == "nothing has been published to environment 'staging' yet"
    problem(await get_config(gateway, token, "staging", wait=0.3), 404, "no-revision")


async def test_a_long_poll_before_the_first_revision_answers_when_it_is_published(
    gateway, acme, make_token, keyset
):
    token = make_token("client", org="acme", project="web", environment="staging")
    poll = asyncio.create_task(get_config(gateway, token, "staging", wait=60))
    await parked(poll)
    await acme.publish("acme", "web", "staging", {"greeting": 1})
    r = await asyncio.wait_for(poll, 30)
    assert (r.status_code, r.headers["etag"]) == (200, '"rev-1"')
    assert r.headers["anvil-environment-id"] == await environment_id(acme, "staging")
    assert r.content == (await registry_config(acme, "staging")).content
    assert sorted(verify(keyset, r).manifest.prompts) == ["greeting"]


async def test_a_long_poll_ends_gone_when_the_environment_is_archived(gateway, acme, client_token):
    poll = asyncio.create_task(get_config(gateway, client_token, etag='"rev-1"', wait=60))
    await parked(poll)
    r = await acme.http.delete("/v1/orgs/acme/projects/web/environments/prod", headers=acme.headers)
    assert r.status_code in (200, 204), r.text
    problem(await asyncio.wait_for(poll, 30), 410, "environment-archived")


@pytest.mark.parametrize("settings_overrides", [{"long_poll_max_seconds": 5.0}])
@pytest.mark.parametrize(
    ("wait", "message"),
    [
        ("5.5", "Input should be less than or equal to 5"),
        ("-1", "Input should be greater than or equal to 0"),
        ("inf", "Input should be a finite number"),
        ("soon", "Input should be a valid number, unable to parse string as a number"),
    ],
)
async def test_a_wait_outside_zero_to_the_maximum_is_a_validation_problem(
    gateway, acme, client_token, wait, message
):
    body = problem(await get_config(gateway, client_token, wait=wait), 422, "validation-failed")
    assert [(e["loc"], e["msg"]) for e in body["errors"]] == [(["query", "wait"], message)]


@pytest.mark.parametrize("settings_overrides", [{"long_poll_max_seconds": 5.0}])
async def test_a_wait_of_exactly_the_maximum_is_accepted(gateway, acme, client_token):
    r = await get_config(gateway, client_token, etag='"rev-0"', wait=5)
    assert r.status_code == 200, r.text


# -- prompt sets -------------------------------------------------------------------------------


async def test_a_prompt_set_narrows_the_contents_to_its_prompts_and_their_partials(
    gateway, acme, client_token, keyset
):
    await acme.prompt_set("acme", "web", "welcome", ["greeting"])
    r = await get_config(gateway, client_token, prompt_set="welcome")
    assert r.status_code == 200, r.text
    assert r.headers["anvil-prompt-set-prompts"] == "greeting"
    full = json.loads((await registry_config(acme)).content)
    document = r.json()
    assert document["manifest"] == full["manifest"]  # the signed manifest, untouched
    verified = verify(keyset, r, prompts=["greeting"])
    entries = verified.manifest.prompts["greeting"], verified.manifest.dependencies
    expected = {entries[0].digest} | {d.digest for d in entries[1].values()}
    assert set(document["contents"]) == expected  # greeting and the footer it reaches
    assert len(expected) == 2
    assert verified.render("greeting", {"name": "Ada"}) == "Hello Ada -- the Acme team"
    with pytest.raises(PushRefused) as refused:
        verify(keyset, r)  # farewell's content is not there: not the whole revision
    assert refused.value.code == "digest-mismatch"
    assert (r.headers["etag"], r.headers["anvil-revision"]) == ('"rev-1"', "1")


async def test_the_prompt_set_header_lists_the_served_prompts_sorted(gateway, acme, client_token, keyset):
    await acme.version("acme", "web", "unused", "Not published")
    await acme.prompt_set("acme", "web", "all", ["greeting", "unused", "farewell"])
    r = await get_config(gateway, client_token, prompt_set="all")
    assert r.headers["anvil-prompt-set-prompts"] == "farewell,greeting"
    assert len(r.json()["contents"]) == 3
    verify(keyset, r, prompts=["farewell", "greeting"])


async def test_a_prompt_set_answer_is_not_modified_like_the_whole_document(gateway, acme, client_token):
    await acme.prompt_set("acme", "web", "welcome", ["greeting"])
    r = await get_config(gateway, client_token, prompt_set="welcome", etag='"rev-1"')
    assert (r.status_code, r.headers["etag"]) == (304, '"rev-1"')


# -- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "detail"),
    [
        ({"environment": "nowhere"}, "environment acme/web/nowhere not found"),
        ({"project": "nowhere"}, "environment acme/nowhere/prod not found"),
        ({"org": "nowhere"}, "environment nowhere/web/prod not found"),
        ({"prompt_set": "nowhere"}, "prompt set 'nowhere' not found in project 'web'"),
    ],
)
async def test_what_does_not_exist_is_not_found(gateway, acme, make_token, where, detail):
    token = make_token("operator", org=None)
    body = problem(await get_config(gateway, token, **where), 404, "not-found")
    assert body["detail"] == detail


async def test_an_archived_environment_is_gone(gateway, acme, make_token):
    r = await acme.http.delete("/v1/orgs/acme/projects/web/environments/prod", headers=acme.headers)
    assert r.status_code in (200, 204), r.text
    token = make_token("client", org="acme", project="web", environment="prod")
    body = problem(await get_config(gateway, token), 410, "environment-archived")
    assert body["detail"] == "environment 'prod' is archived and serves nothing"


async def test_an_environment_archived_after_it_was_served_is_gone(gateway, acme, client_token):
    assert (await get_config(gateway, client_token)).status_code == 200
    r = await acme.http.delete("/v1/orgs/acme/projects/web/environments/prod", headers=acme.headers)
    assert r.status_code in (200, 204), r.text
    await gateway.until(lambda: gateway.state.hub.by_key[("acme", "web", "prod")].archived)
    problem(await get_config(gateway, client_token), 410, "environment-archived")


@pytest.mark.parametrize(
    ("token", "environment", "org", "status", "code"),
    [
        ("staging-client", "prod", "acme", 403, "forbidden"),
        ("prod-client", "staging", "acme", 403, "forbidden"),
        ("other-org-client", "prod", "acme", 404, "not-found"),
        ("prod-client", "prod", "other", 404, "not-found"),
        (None, "prod", "acme", 401, "invalid-token"),
        ("garbage", "prod", "acme", 401, "invalid-token"),
        ("registry-audience", "prod", "acme", 401, "invalid-token"),
        ("fleet-reader", "prod", "acme", 403, "forbidden"),
    ],
)
async def test_tokens_outside_their_limits_or_scope_are_refused(
    gateway, acme, make_token, token, environment, org, status, code
):
    tokens = {
        "staging-client": make_token("client", org="acme", project="web", environment="staging"),
        "prod-client": make_token("client", org="acme", project="web", environment="prod"),
        "other-org-client": make_token("client", org="other", project="web", environment="prod"),
        "registry-audience": make_token(
            "client", org="acme", project="web", environment="prod", audience="anvil-registry"
        ),
        "fleet-reader": make_token("operator", org="acme", scopes=["fleet:read"]),
    }
    r = await get_config(gateway, tokens.get(token, token), environment, org=org)
    body = problem(r, status, code)
    if token == "fleet-reader":
        assert body["required_scope"] == "config:read"
    assert gateway.state.hub.by_key == {}  # refused before the registry was asked
