"""``anvil peers`` and ``anvil transfer`` between two real instances (A: the session's ``instance``,
B: one more for this module), each a registry, a bundle-worker API and a worker loop as
processes with its own database and signing keys, over real HTTP."""

from __future__ import annotations

import json

import httpx
import pytest
from anvil_instances import Instance


def one_error_line(result, exit_code=1):
    assert result.exit_code == exit_code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def peer_instance(tmp_path_factory):
    with Instance.start(tmp_path_factory.mktemp("peer-instance"), "clipeer") as started:
        yield started


@pytest.fixture(scope="module")
def peer_operator_token(peer_instance):
    return peer_instance.issue_token(kind="operator", name="cli-tests")


@pytest.fixture
def cli(anvil, instance, operator_token, peer_instance, peer_operator_token):
    """``anvil`` with context a (instance A) and context b (instance B), a current."""
    for name, inst, token in (("b", peer_instance, peer_operator_token), ("a", instance, operator_token)):
        anvil.ok(
            "login",
            "--url",
            inst.registry_url,
            "--token",
            token,
            "--worker-url",
            inst.worker_url,
            "--context",
            name,
        )
    return anvil


def api(inst, method, path, **kwargs):
    with inst.client("registry") as client:
        response = client.request(method, path, **kwargs)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def make_org(inst, org, *, prompt=None):
    api(inst, "POST", "/v1/orgs", json={"slug": org, "name": org.title()})
    api(inst, "POST", f"/v1/orgs/{org}/projects", json={"slug": "web", "name": "Web"})
    if prompt:
        push(inst, org, "greet", prompt)


def push(inst, org, name, template):
    path = f"/v1/orgs/{org}/projects/web/prompts/{name}/versions"
    api(inst, "POST", path, json={"content": {"template": template}, "message": template})


def prompts_of(inst, org):
    page = api(inst, "GET", f"/v1/orgs/{org}/projects/web/prompts")
    return {p["name"]: p["latest_version"] for p in page["items"]}


def kids_of(inst):
    return sorted(k["kid"] for k in httpx.get(f"{inst.registry_url}/.well-known/jwks.json").json()["keys"])


@pytest.fixture
def orgs(request, instance, peer_instance):
    """(org on A with web/greet, org on B with project web): named after the test."""
    name = request.node.name.removeprefix("test_").replace("_", "-")[:24].rstrip("-")
    here, there = f"a-{name}", f"b-{name}"
    make_org(instance, here, prompt="Hello")
    make_org(peer_instance, there)
    return here, there


def peer_token_file(cli, there, tmp_path):
    """A peer token of B's registry for B's organisation, in a file (as an operator would pass it)."""
    issued = cli.json(
        "--context", "b", "tokens", "issue", "--kind", "peer", "--name", "from-a", "--org", there,
        "--scope", "bundles:import", "--audience", "anvil-bundle-worker",
    )  # fmt: skip
    path = tmp_path / "peer.token"
    path.write_text(issued["token"] + "\n")
    return path, issued["token"]


def test_peers_add_list_show_update_refresh_and_remove(cli, instance, peer_instance, orgs, tmp_path):
    here, there = orgs
    assert kids_of(instance) != kids_of(peer_instance)  # two instances, two key sets
    token_file, token = peer_token_file(cli, there, tmp_path)
    add = ["peers", "add", "b", "--org", here, "--issuer", peer_instance.registry_url]
    add += ["--url", peer_instance.worker_url, "--remote-org", there, "--token-file", str(token_file)]
    result = cli.ok(*add, "-o", "json")
    assert token not in result.stdout + result.stderr
    peer = json.loads(result.stdout)
    assert "token" not in peer
    assert (peer["name"], peer["organisation"], peer["remote_organisation"]) == ("b", here, there)
    assert peer["issuer"] == peer_instance.registry_url
    assert peer["has_token"] is True
    assert peer["auto_apply"] is False
    assert sorted(peer["kids"]) == kids_of(peer_instance)
    assert peer["keys_fetched_at"] is not None

    assert "peer-exists" in one_error_line(cli(*add))
    listed = cli.json("peers", "list", "--org", here)
    assert [p["name"] for p in listed] == ["b"]
    table = cli.ok("peers", "list", "--org", here).stdout
    assert peer_instance.worker_url in table
    assert "AUTO-APPLY" in table
    shown = cli.ok("peers", "show", "b", "--org", here).stdout
    assert "remote organisation" in shown
    assert token not in shown

    updated = cli.json("peers", "update", "b", "--org", here, "--auto-apply")
    assert updated["auto_apply"] is True
    one_error_line(cli("peers", "update", "b", "--org", here), exit_code=2)  # nothing to change
    refreshed = cli.json("peers", "refresh-keys", "b", "--org", here)
    assert sorted(refreshed["kids"]) == kids_of(peer_instance)
    assert refreshed["keys_fetched_at"] >= peer["keys_fetched_at"]

    assert "peer b removed" in cli.ok("peers", "remove", "b", "--org", here).stdout
    assert cli.json("peers", "list", "--org", here) == []
    assert "no peers" in cli.ok("peers", "list", "--org", here).stdout
    assert "(404 urn:anvil:problem:peer-not-found)" in one_error_line(
        cli("peers", "show", "b", "--org", here)
    )
    assert "peer-not-found" in one_error_line(cli("peers", "remove", "b", "--org", here))
    assert "peer-not-found" in one_error_line(cli("transfer", "--to", "b", "--org", here, "--project", "web"))


def test_transfer_is_refused_until_trusted_then_held_then_auto_applied(
    cli, instance, peer_instance, orgs, tmp_path
):
    here, there = orgs
    token_file, _ = peer_token_file(cli, there, tmp_path)
    cli.ok(
        "peers", "add", "b", "--org", here, "--issuer", peer_instance.registry_url, "--url",
        peer_instance.worker_url, "--remote-org", there, "--token-file", str(token_file),
    )  # fmt: skip
    send = ["transfer", "--to", "b", "--org", here, "--project", "web"]

    # B does not know A yet: A's seal is an unknown key there, and nothing is written.
    line = one_error_line(cli(*send))
    assert "bundle-untrusted-key" in line
    exported = tmp_path / "a.anvil"
    cli.ok("export", "--org", here, "--project", "web", "-f", str(exported))
    assert "bundle-untrusted-key" in one_error_line(
        cli("--context", "b", "import", str(exported), "--org", there)
    )
    assert prompts_of(peer_instance, there) == {}

    jwks = tmp_path / "a-jwks.json"  # given keys, instead of fetching them from A
    jwks.write_text(httpx.get(f"{instance.registry_url}/.well-known/jwks.json").text)
    trust = ["peers", "add", "a", "--org", there, "--issuer", instance.registry_url, "--jwks", str(jwks)]
    trusted = cli.json("--context", "b", *trust)
    assert (sorted(trusted["kids"]), trusted["keys_fetched_at"], trusted["has_token"]) == (
        kids_of(instance),
        None,
        False,
    )
    held = cli.json(*send)
    assert held["kind"] == "push"
    remote = held["result"]["remote"]
    assert (remote["status"], remote["applicable"], remote["applied"]) == ("planned", True, False)
    table = cli.ok(*send).stdout
    assert "held for approval there" in table
    assert prompts_of(peer_instance, there) == {}

    cli.ok("--context", "b", "peers", "update", "a", "--org", there, "--auto-apply")
    applied = cli.json(*send, "--full-history")
    assert applied["result"]["remote"]["status"] == "applied"
    assert prompts_of(peer_instance, there) == {"greet": 1}

    # Both sides change greet: a conflict there, refused with --strategy fail, renamed on request.
    push(instance, here, "greet", "Hello from A")
    push(peer_instance, there, "greet", "Hello from B")
    result = cli(*send)
    line = one_error_line(result)
    assert "cannot apply plan" in line
    assert "--strategy" in line
    assert "not applicable" in result.stdout
    assert prompts_of(peer_instance, there) == {"greet": 2}
    renamed = cli.json(*send, "--strategy", "rename")
    assert renamed["result"]["remote"]["status"] == "applied"
    after = prompts_of(peer_instance, there)
    assert after["greet"] == 2
    assert [name for name in after if name.startswith("greet.import-")]

    # A bundle from A imported by hand on B: auto-apply covers only what A itself sends, so a
    # dry run stays a dry run (the plan is held, then discarded), and the import applies it.
    push(instance, here, "fresh", "New on A")
    cli.ok("export", "--org", here, "--prompt", "web/fresh", "-f", str(exported))
    dry = cli.json("--context", "b", "import", str(exported), "--org", there, "--dry-run")
    assert dry["status"] in ("planned", "rejected")
    assert "fresh" not in prompts_of(peer_instance, there)
    imported = cli.json("--context", "b", "import", str(exported), "--org", there)
    assert imported["status"] == "applied"
    assert prompts_of(peer_instance, there)["fresh"] == 1
