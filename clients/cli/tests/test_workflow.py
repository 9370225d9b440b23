"""The operator's path through a real registry: org, project, environments, prompts, publish,
history, diff, rollback, verified config, promote, tokens and audit; json and yaml output."""

from __future__ import annotations

import json

import pytest
import yaml


@pytest.fixture
def project(logged_in, registry, request):
    """A fresh org (named after the test) with project web and environments staging and prod,
    set as the context's defaults."""
    org = "t-" + request.node.name.removeprefix("test_").replace("_", "-")[:40].rstrip("-")
    logged_in.ok("orgs", "create", org, "--name", "Test org")
    logged_in.ok("projects", "create", "web", "--org", org, "--description", "The web app")
    logged_in.ok("context", "set", "--org", org, "--project", "web")
    logged_in.ok("envs", "create", "staging")
    logged_in.ok("envs", "create", "prod")
    return org


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


GREETING = {
    "template": "Hello {{name}}, welcome to {{product}}.",
    "variables": {"name": {"description": "Who"}, "product": {"default": "Anvil"}},
    "model": {"provider": "openai", "name": "gpt-4o-mini", "parameters": {"temperature": 0.2}},
    "metadata": {"owner": "support"},
}


def test_org_project_and_environments_list_as_json_yaml_and_tables(logged_in, registry):
    logged_in.ok("orgs", "create", "lists")
    created = logged_in.json("projects", "create", "web", "--org", "lists", "--name", "Web")
    assert (created["slug"], created["name"]) == ("web", "Web")
    logged_in.ok("envs", "create", "dev", "--org", "lists", "--project", "web")
    env = logged_in.json("envs", "create", "prod", "--org", "lists", "--project", "web")
    assert env["current_revision"] is None

    assert "lists" in [o["slug"] for o in logged_in.json("orgs", "list")]
    listed = yaml.safe_load(
        logged_in.ok("envs", "list", "--org", "lists", "--project", "web", "-o", "yaml").stdout
    )
    assert [e["name"] for e in listed] == ["dev", "prod"]
    assert listed[1]["id"] == env["id"]
    table = logged_in.ok("projects", "list", "--org", "lists").stdout
    assert "web" in table
    assert "Web" in table

    archived = logged_in.json("envs", "archive", "dev", "--org", "lists", "--project", "web")
    assert archived["archived_at"] is not None
    assert [e["name"] for e in logged_in.json("envs", "list", "--org", "lists", "--project", "web")] == [
        "prod"
    ]
    logged_in.ok("projects", "archive", "web", "--org", "lists")
    assert logged_in.json("projects", "list", "--org", "lists") == []
    assert len(logged_in.json("projects", "list", "--org", "lists", "--include-archived")) == 1


def test_push_prompts_from_json_yaml_and_text_files(logged_in, project, tmp_path):
    pushed = logged_in.json(
        "prompts", "push", "support/greeting", "--file", str(write(tmp_path, "g.json", GREETING))
    )
    assert pushed["number"] == 1
    assert pushed["content"]["variables"]["product"]["default"] == "Anvil"

    same = logged_in.ok(
        "prompts", "push", "support/greeting", "-f", str(write(tmp_path, "g.yaml", yaml.safe_dump(GREETING)))
    )
    assert "unchanged" in same.stdout

    text = write(tmp_path, "farewell.txt", "Goodbye {{name}}!\n")
    result = logged_in.ok(
        "prompts", "push", "farewell", "--file", str(text), "--var", "name=friend", "-m", "first"
    )
    assert "pushed farewell version 1" in result.stdout
    shown = logged_in.json("prompts", "show", "farewell")
    assert shown["content"]["template"] == "Goodbye {{name}}!"
    assert shown["content"]["variables"] == {"name": {"default": "friend", "description": ""}}
    assert shown["message"] == "first"

    changed = write(tmp_path, "farewell.md", "See you, {{name}}.\n")
    assert logged_in.json("prompts", "push", "farewell", "-f", str(changed), "--var", "name")["number"] == 2
    versions = logged_in.json("prompts", "versions", "farewell")
    assert [(v["number"], v["parent"]) for v in versions] == [(2, 1), (1, None)]
    assert (
        logged_in.json("prompts", "show", "farewell", "--version", "1")["content"]["template"]
        == "Goodbye {{name}}!"
    )
    assert [(p["name"], p["latest_version"]) for p in logged_in.json("prompts", "list")] == [
        ("farewell", 2),
        ("support/greeting", 1),
    ]
    table = logged_in.ok("prompts", "show", "support/greeting").stdout
    assert "Hello {{name}}, welcome to {{product}}." in table
    assert "product" in table


def test_publish_history_diff_rollback_then_verified_config_serves_the_old_content(
    logged_in, project, tmp_path
):
    logged_in.ok("prompts", "push", "greet", "-f", str(write(tmp_path, "v1.txt", "Hello v1")))
    first = logged_in.json("publish", "staging", "--prompt", "greet", "-m", "first")
    assert (first["number"], first["prompts"]["greet"]["version"]) == (1, 1)
    logged_in.ok("prompts", "push", "greet", "-f", str(write(tmp_path, "v2.txt", "Hello v2")))
    logged_in.ok("prompts", "push", "extra", "-f", str(write(tmp_path, "x.txt", "Extra")))
    second = logged_in.ok("publish", "staging", "--prompt", "greet=2", "--prompt", "extra=latest")
    assert "published revision 2 to staging" in second.stdout
    assert "greet " in second.stdout  # the table names each served prompt

    assert [r["number"] for r in logged_in.json("history", "staging")] == [2, 1]
    diff = logged_in.json("diff", "staging", "--from", "1")
    assert (diff["from_revision"], diff["to_revision"]) == (1, 2)
    assert diff["changed"]["greet"]["before"]["version"] == 1
    assert diff["changed"]["greet"]["after"]["version"] == 2
    assert list(diff["added"]) == ["extra"]
    assert "greet" in logged_in.ok("diff", "staging", "--from", "1", "--to", "2").stdout

    rolled = logged_in.json("rollback", "staging", "--to", "1", "-m", "v2 is broken")
    assert (rolled["number"], rolled["kind"], rolled["rollback_of"]) == (3, "rollback", 1)
    history = logged_in.json("history", "staging")
    assert [(r["number"], r["rollback_of"]) for r in history] == [(3, 1), (2, None), (1, None)]
    assert "rollback of 1" in logged_in.ok("history", "staging").stdout

    verified = logged_in.json("config", "staging", "--verify")
    assert verified["verified"] is True
    assert (verified["revision"], verified["rollback_of"]) == (3, 1)
    assert list(verified["prompts"]) == ["greet"]
    assert verified["prompts"]["greet"]["version"] == 1
    assert verified["prompts"]["greet"]["content"]["template"] == "Hello v1"
    table = logged_in.ok("config", "staging", "--verify").stdout
    assert "verified revision 3" in table
    assert "Hello v1" in table

    document = json.loads(logged_in.ok("config", "staging").stdout)
    assert set(document) == {"format", "manifest", "contents"}
    jwks = write(tmp_path, "jwks.json", registry_jwks(logged_in))
    assert logged_in.json("config", "staging", "--verify", "--jwks", str(jwks))["revision"] == 3


def registry_jwks(anvil):
    """The JWKS as the CLI's own client fetches it (same URL, same context)."""
    from anvil_cli.client import AnvilClient

    context = json.loads(anvil.config.read_text())["contexts"]["default"]
    with AnvilClient(context["url"], context["token"]) as client:
        return client.get_jwks()


def test_verify_refuses_a_jwks_without_the_signing_key(logged_in, project, tmp_path):
    from anvil_wire import KeySet

    logged_in.ok("prompts", "push", "greet", "-f", str(write(tmp_path, "v1.txt", "Hello")))
    logged_in.ok("publish", "staging", "-p", "greet")
    other = write(tmp_path, "other.json", KeySet.generate().public_jwks())
    result = logged_in("config", "staging", "--verify", "--jwks", str(other))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: revision verification failed")
    assert len(result.stderr.splitlines()) == 1


def test_promote_copies_the_staging_revision_into_prod(logged_in, project, tmp_path):
    logged_in.ok("prompts", "push", "greet", "-f", str(write(tmp_path, "g.json", GREETING)))
    logged_in.ok("publish", "staging", "--prompt", "greet=1")
    promoted = logged_in.json("promote", "--from", "staging", "--to", "prod", "-m", "ship it")
    assert promoted["environment"] == "prod"
    assert (promoted["number"], promoted["kind"]) == (1, "promote")
    assert promoted["promoted_from"]["environment"] == "staging"
    assert promoted["promoted_from"]["revision"] == 1
    verified = logged_in.json("config", "prod", "--verify")
    assert verified["prompts"]["greet"]["content"]["template"] == GREETING["template"]
    assert "from staging #1" in logged_in.ok("history", "prod").stdout
    again = logged_in.ok("promote", "--from", "staging", "--to", "prod", "--revision", "1")
    assert "unchanged" in again.stdout or "promoted revision 2" in again.stdout


def test_tokens_issue_list_revoke_and_audit(logged_in, project, registry):
    issued = logged_in.json(
        "tokens", "issue", "--kind", "operator", "--name", "ci", "--ttl", "2h", "--scope", "projects:read"
    )
    assert (issued["kind"], issued["org"], issued["scopes"]) == ("operator", project, ["projects:read"])
    token = issued["token"]
    as_ci = {"ANVIL_TOKEN": token}
    assert [p["slug"] for p in logged_in.json("projects", "list", env=as_ci)] == ["web"]

    listed = logged_in.json("tokens", "list")
    assert issued["id"] in [t["id"] for t in listed]
    assert all("token" not in t for t in listed)
    assert token not in logged_in.ok("tokens", "list").stdout

    refused = logged_in("orgs", "create", "nope", env=as_ci)
    assert refused.exit_code == 1
    assert "(403 urn:anvil:problem:forbidden)" in refused.stderr

    revoked = logged_in.json("tokens", "revoke", issued["id"])
    assert revoked["revoked_at"] is not None
    result = logged_in("projects", "list", env=as_ci)
    assert result.exit_code == 1
    assert "(401 " in result.stderr
    assert issued["id"] in [t["id"] for t in logged_in.json("tokens", "list", "--include-revoked")]

    actions = [e["action"] for e in logged_in.json("audit", "--limit", "20")]
    assert "token.issue" in actions
    assert "token.revoke" in actions
    only = logged_in.json("audit", "--action", "token.revoke")
    assert {e["action"] for e in only} == {"token.revoke"}
    assert "token.revoke" in logged_in.ok("audit", "--action", "token.revoke").stdout

    table = logged_in.ok("tokens", "issue", "--kind", "service", "--name", "worker").stdout
    assert "shown only now" in table
