"""Peering between two real Anvil instances (tests/anvil_instances.py): A and B each run a
registry, a bundle-worker API and a worker loop as separate processes, with their own ports,
databases and signing keys, over real HTTP.

The story: A and B register each other as peers; A pushes a project (whose prompt references a
prompt of another project) to B, where the plan is held until approved and then reproduces A's
content hashes; pushing again changes nothing; both change the same prompt, the push shows the
conflict, and each strategy resolves it; A pulls from B; a bundle sealed by a third key set is
refused by B with nothing written; with auto-apply B applies A's push without approval. (That
http peers are refused unless allowed is a unit test: services/bundle-worker/tests/test_peers.py.)
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from anvil_instances import Instance

from anvil_runtime import AnvilClient, ClientState
from anvil_wire import KeySet
from anvil_wire.bundles import read_bundle, write_bundle

pytestmark = pytest.mark.timeout(300)

WORKER = "anvil-bundle-worker"
ORG = "acme"
FAST = {"ANVIL_BUNDLE_WORKER_PEER_POLL_SECONDS": "0.1", "ANVIL_BUNDLE_WORKER_POLL_SECONDS": "0.1"}


@dataclass
class Side:
    """One instance, driven through its public APIs by an operator of every service."""

    instance: Instance
    registry: httpx.Client
    worker: httpx.Client

    @property
    def issuer(self) -> str:
        return self.instance.registry_url

    # -- the registry ----------------------------------------------------------------------------

    def ok(self, response: httpx.Response, *expected: int) -> Any:
        assert response.status_code in (expected or (200, 201)), (
            f"{response.request.method} {response.request.url}: {response.status_code} {response.text}"
        )
        return response.json() if response.content else None

    def org(self, slug: str, *projects: str) -> None:
        self.ok(self.registry.post("/v1/orgs", json={"slug": slug, "name": slug.title()}))
        for project in projects:
            self.ok(self.registry.post(f"/v1/orgs/{slug}/projects", json={"slug": project, "name": project}))

    def version(self, project: str, name: str, template: str, message: str = "") -> int:
        base = f"/v1/orgs/{ORG}/projects/{project}/prompts"
        if self.registry.get(f"{base}/{name}").status_code == 404:
            self.ok(self.registry.post(base, json={"name": name}))
        variables = {v: None for v in re.findall(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}", template)}
        body = {"content": {"template": template, "variables": variables}, "message": message}
        return int(self.ok(self.registry.post(f"{base}/{name}/versions", json=body))["number"])

    def hashes(self, project: str) -> dict[str, list[str]]:
        """Prompt name -> the content hash of each of its versions, in order."""
        base = f"/v1/orgs/{ORG}/projects/{project}/prompts"
        prompts = self.ok(self.registry.get(base, params={"page_size": 500}))["items"]
        return {
            p["name"]: [
                v["content_hash"]
                for v in self.ok(
                    self.registry.get(f"{base}/{p['name']}/versions", params={"page_size": 500})
                )["items"]
            ]
            for p in prompts
        }

    def template(self, project: str, name: str, number: int) -> str:
        base = f"/v1/orgs/{ORG}/projects/{project}/prompts/{name}/versions/{number}"
        return str(self.ok(self.registry.get(base))["content"]["template"])

    # -- the worker --------------------------------------------------------------------------------

    def finished(self, job: dict[str, Any]) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while job["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, f"job {job['id']} still {job['status']}"
            time.sleep(0.05)
            job = self.ok(self.worker.get(f"/v1/jobs/{job['id']}"))
        return job

    def transfer(self, kind: str, peer: str, selection: dict[str, Any], **body: Any) -> dict[str, Any]:
        job = self.ok(
            self.worker.post(f"/v1/peers/{ORG}/{peer}/{kind}", json={"selection": selection, **body}), 202
        )
        done = self.finished(job)
        assert done["status"] == "succeeded", done
        return dict(done["result"])

    def plan(self, plan_id: str) -> dict[str, Any]:
        return dict(self.ok(self.worker.get(f"/v1/plans/{plan_id}")))

    def approve(self, plan_id: str) -> httpx.Response:
        return self.worker.post(f"/v1/plans/{plan_id}/apply")


def _side(instance: Instance) -> Side:
    token = instance.issue_token(kind="operator", name="tester", audience=["anvil-registry", WORKER])
    return Side(instance, instance.client("registry", token), instance.client("worker", token))


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Side, Side]]:
    root: Path = tmp_path_factory.mktemp("peering")
    with Instance.start(root / "a", "a", **FAST) as a, Instance.start(root / "b", "b", **FAST) as b:
        sides = (_side(a), _side(b))
        try:
            yield sides
        finally:
            for side in sides:
                side.registry.close()
                side.worker.close()


def prompt_plan(plan: dict[str, Any], project: str, name: str) -> dict[str, Any]:
    [found] = [p for p in plan["plan"]["prompts"] if (p["project"], p["name"]) == (project, name)]
    return dict(found)


WEB = {"kind": "project", "project": "web"}


# The tests below are one story, in order: each starts where the previous one left off.


def test_the_instances_have_their_own_keys_and_register_each_other(pair):
    a, b = pair
    jwks_a = httpx.get(f"{a.issuer}/.well-known/jwks.json").json()
    jwks_b = httpx.get(f"{b.issuer}/.well-known/jwks.json").json()
    assert {k["kid"] for k in jwks_a["keys"]}.isdisjoint({k["kid"] for k in jwks_b["keys"]})

    a.org(ORG, "web", "shared")
    a.version("shared", "footer", "-- the Acme team")
    a.version("web", "greeting", "Hello {{name}} {{> shared:footer@1}}", "first")
    a.version("web", "farewell", "Bye")
    b.org(ORG)

    # Each registry issues the other a peer token for its acme, and each worker registers the other
    # (its keys fetched from the other's issuer).
    scopes = ["bundles:import", "bundles:export"]
    for here, there, name in ((a, b, "b"), (b, a, "a")):
        token = there.instance.issue_token(
            kind="peer", name=f"instance-{here.instance.name}", org=ORG, scopes=scopes, audience=[WORKER]
        )
        body = {"organisation": ORG, "name": name, "issuer": there.issuer, "url": there.instance.worker_url}
        peer = here.ok(here.worker.post("/v1/peers", json={**body, "token": token}), 201)
        assert peer["has_token"] is True
        assert token not in str(peer)
        assert set(peer["kids"]) == {
            k["kid"] for k in httpx.get(f"{there.issuer}/.well-known/jwks.json").json()["keys"]
        }


def test_a_push_is_held_until_approved_and_reproduces_the_content_hashes(pair):
    a, b = pair
    result = a.transfer("push", "b", WEB, history="full")
    remote = result["remote"]
    assert (remote["status"], remote["applied"], remote["applicable"]) == ("planned", False, True)
    plan = b.plan(remote["plan"])
    assert plan["exporter"] == a.issuer
    assert plan["created_by"] == "peer:instance-a"
    # The reference into another project brought its target along.
    assert prompt_plan(plan, "shared", "footer")["status"] == "new"
    assert b.registry.get(f"/v1/orgs/{ORG}/projects/web").status_code == 404  # held: nothing yet

    applied = b.approve(remote["plan"])
    assert applied.status_code == 200, applied.text
    for project in ("web", "shared"):
        assert b.hashes(project) == a.hashes(project)

    again = a.transfer("push", "b", WEB, history="full")["remote"]
    assert (again["status"], again["changes"]) == ("planned", False)
    assert {p["status"] for p in b.plan(again["plan"])["plan"]["prompts"]} == {"identical"}


def test_publishing_what_b_imported_reaches_the_clients_of_b(pair, tmp_path):
    """The imported prompts (with their cross-project partial) publish on B and reach an app
    subscribed to B's gateway, verified with B's keys."""
    _, b = pair
    b.ok(b.registry.post(f"/v1/orgs/{ORG}/projects/web/environments", json={"name": "prod"}))
    environment = f"/v1/orgs/{ORG}/projects/web/environments/prod"
    etag = b.registry.get(environment).headers["etag"]
    published = b.ok(
        b.registry.post(
            f"{environment}/revisions", json={"prompts": {"greeting": 1}}, headers={"If-Match": etag}
        )
    )
    _, gateway = b.instance.start_gateway("b1")
    token = b.instance.issue_token(kind="client", name="app", org=ORG, project="web", environment="prod")
    with AnvilClient(
        gateway,
        token=token,
        public_keys=b.instance.jwks(),
        cache_dir=tmp_path / "cache",
        allow_insecure=True,
    ) as client:
        assert client.wait_until_ready(timeout=30) is ClientState.LIVE
        assert client.revision == published["number"]
        assert client.get_prompt("greeting").render(name="Ada") == "Hello Ada -- the Acme team"


def _diverge(a: Side, b: Side, round_: int) -> None:
    b.version("web", "greeting", f"B says hello ({round_})", "b's change")
    a.version("web", "greeting", f"A says hello ({round_})", "a's change")


def test_a_conflict_is_shown_and_each_strategy_resolves_it(pair):
    a, b = pair
    _diverge(a, b, 1)
    held = a.transfer("push", "b", WEB)["remote"]
    assert (held["status"], held["applicable"]) == ("planned", False)
    greeting = prompt_plan(b.plan(held["plan"]), "web", "greeting")
    assert greeting["status"] == "conflict"
    assert "B says hello (1)" in greeting["diff"]
    assert "A says hello (1)" in greeting["diff"]

    # fail (the default) refuses to apply.
    refused = b.approve(held["plan"])
    assert refused.status_code == 409
    assert refused.json()["type"] == "urn:anvil:problem:plan-not-applicable"
    b_head = len(b.hashes("web")["greeting"])
    assert b.template("web", "greeting", b_head) == "B says hello (1)"

    # skip keeps B's head.
    skip = a.transfer("push", "b", WEB, strategy="skip")["remote"]
    assert b.approve(skip["plan"]).status_code == 200
    assert len(b.hashes("web")["greeting"]) == b_head

    # overwrite appends A's head as a new version.
    overwrite = a.transfer("push", "b", WEB, strategy="overwrite")["remote"]
    assert b.approve(overwrite["plan"]).status_code == 200
    assert b.template("web", "greeting", b_head + 1) == "A says hello (1)"

    # rename imports A's prompt under a new name, leaving B's alone.
    _diverge(a, b, 2)
    rename = a.transfer("push", "b", WEB, strategy="rename")["remote"]
    renamed = prompt_plan(b.plan(rename["plan"]), "web", "greeting")["rename_to"]
    assert b.approve(rename["plan"]).status_code == 200
    heads = b.hashes("web")
    assert b.template("web", "greeting", len(heads["greeting"])) == "B says hello (2)"
    assert b.template("web", renamed, len(heads[renamed])) == "A says hello (2)"


def test_a_pulls_from_b(pair):
    a, b = pair
    b.version("web", "b-only", "Made in B")
    result = a.transfer("pull", "b", {"kind": "prompts", "prompts": ["web/b-only"]})
    assert result["status"] == "planned"
    plan = a.plan(result["plan"])
    assert plan["exporter"] == b.issuer
    assert prompt_plan(plan, "web", "b-only")["status"] == "new"
    assert a.approve(result["plan"]).status_code == 200, "pulled plan applies"
    assert a.hashes("web")["b-only"] == b.hashes("web")["b-only"]


def _exported_by_a(a: Side) -> bytes:
    job = a.finished(a.ok(a.worker.post("/v1/exports", json={"organisation": ORG, "selection": WEB}), 202))
    assert job["status"] == "succeeded", job
    download = a.worker.get(f"/v1/bundles/{job['result']['bundle']}")
    assert download.status_code == 200
    return download.content


@pytest.mark.parametrize(
    ("issuer", "says"),
    [("a", "not among the keys of peer 'a'"), ("https://stranger.example", "not a peer of organisation")],
    ids=["known-issuer-unknown-key", "unknown-issuer"],
)
def test_a_bundle_sealed_by_an_unknown_key_is_refused_by_b_with_nothing_written(pair, issuer, says):
    a, b = pair
    a.version("web", "farewell", f"Forged farewell for {issuer}")
    bundle = read_bundle(_exported_by_a(a), trust=None)
    manifest = {**bundle.manifest, "exporter": {**bundle.manifest["exporter"]}}
    if issuer != "a":
        manifest["exporter"]["instance"] = issuer
    forged = write_bundle(manifest, bundle.contents, KeySet.generate().active).data
    before = {project: b.hashes(project) for project in ("web", "shared")}

    job = b.ok(
        b.worker.post(
            "/v1/imports",
            params={"organisation": ORG},
            content=forged,
            headers={"Content-Type": "application/vnd.anvil.bundle"},
        ),
        202,
    )
    job = b.finished(job)
    assert job["status"] == "failed"
    assert job["result"] is None
    assert job["error"]["type"] == "urn:anvil:problem:bundle-untrusted-key"
    assert says in job["error"]["detail"]
    assert {project: b.hashes(project) for project in ("web", "shared")} == before


def test_with_auto_apply_b_applies_a_push_without_approval(pair):
    a, b = pair
    b.ok(b.worker.patch(f"/v1/peers/{ORG}/a", json={"auto_apply": True}))
    a.version("shared", "footer", "-- the Acme team, again")
    remote = a.transfer("push", "b", {"kind": "prompts", "prompts": ["shared/footer"]})["remote"]
    assert (remote["status"], remote["applied"]) == ("applied", True)
    assert b.plan(remote["plan"])["applied_by"] == "auto-apply:a"
    assert b.hashes("shared") == a.hashes("shared")
