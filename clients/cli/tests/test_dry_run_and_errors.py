"""--dry-run sends nothing; refusals are one stderr line with exit 1 and write nothing."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def project(logged_in, request, tmp_path):
    """A fresh org with project web, environment staging serving prompt greet (revision 1)."""
    org = "t-" + request.node.name.removeprefix("test_").replace("_", "-")[:40].rstrip("-")
    logged_in.ok("orgs", "create", org)
    logged_in.ok("projects", "create", "web", "--org", org)
    logged_in.ok("context", "set", "--org", org, "--project", "web")
    logged_in.ok("envs", "create", "staging")
    logged_in.ok("envs", "create", "prod")
    path = tmp_path / "greet.txt"
    path.write_text("Hello")
    logged_in.ok("prompts", "push", "greet", "-f", str(path))
    logged_in.ok("publish", "staging", "-p", "greet")
    return org


def error_line(result, status):
    assert result.exit_code == 1, result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert f"({status} urn:anvil:problem:" in lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


def test_dry_run_prints_each_mutating_request_and_sends_nothing(logged_in, registry, project, tmp_path):
    prompt = tmp_path / "new.json"
    prompt.write_text(json.dumps({"template": "Hi {{who}}", "variables": {"who": {}}}))
    token_id = logged_in.json(
        "tokens", "issue", "--kind", "client", "--name", "app", "--project", "web", "--environment", "staging"
    )["id"]
    commands = [
        ["orgs", "create", "dry-org"],
        ["projects", "create", "dry-project"],
        ["projects", "archive", "web"],
        ["envs", "create", "dev"],
        ["envs", "archive", "prod"],
        ["prompts", "push", "new", "-f", str(prompt)],
        ["publish", "staging", "-p", "greet", "--replace"],
        ["promote", "--from", "staging", "--to", "prod"],
        ["rollback", "staging", "--to", "1"],
        ["tokens", "issue", "--kind", "operator", "--name", "dry"],
        ["tokens", "revoke", token_id],
    ]
    before = registry.snapshot()
    for command in commands:
        for args in ([*command, "--dry-run"], ["--dry-run", *command]):
            result = logged_in(*args)
            assert result.exit_code == 0, (args, result.stderr)
            assert result.stdout.startswith("dry run: nothing was sent"), result.stdout
            assert registry.admin_token not in result.stdout
            assert "authorization" not in result.stdout.lower()
    assert registry.snapshot() == before

    described = json.loads(
        logged_in.ok("publish", "staging", "-p", "greet=1", "-m", "why", "--dry-run", "-o", "json").stdout
    )
    assert described["dry_run"] is True
    assert described["method"] == "POST"
    assert described["url"] == f"{registry.url}/v1/orgs/{project}/projects/web/environments/staging/revisions"
    assert described["headers"]["if-match"] == '"rev-1"'
    assert described["headers"]["idempotency-key"]
    assert "authorization" not in described["headers"]
    assert described["body"] == {"prompts": {"greet": 1}, "remove": [], "replace": False, "message": "why"}
    as_yaml = logged_in.ok("rollback", "staging", "--to", "1", "--dry-run", "-o", "yaml").stdout
    assert "to_revision: 1" in as_yaml
    assert registry.snapshot() == before


def test_stale_if_match_is_412_one_line_exit_1_and_writes_nothing(logged_in, registry, project):
    before = registry.snapshot()
    result = logged_in("publish", "staging", "-p", "greet", "--replace", "--if-match", '"rev-0"')
    line = error_line(result, 412)
    assert line.startswith("error: Precondition failed: ")
    assert result.stdout == ""
    assert registry.snapshot() == before


def test_invalid_prompt_content_is_422_one_line_and_writes_nothing(logged_in, registry, project, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"template": "Hi {{undeclared}}"}))
    before = registry.snapshot()
    error_line(logged_in("prompts", "push", "greet", "-f", str(bad)), 422)
    error_line(logged_in("publish", "staging", "-p", "missing"), 422)
    error_line(logged_in("rollback", "staging", "--to", "7"), 422)
    assert registry.snapshot() == before


def test_reused_idempotency_key_with_another_body_is_422(logged_in, registry, project):
    first = logged_in.json("publish", "staging", "-p", "greet", "--replace", "--idempotency-key", "k-1")
    replayed = logged_in.json(
        "publish", "staging", "-p", "greet", "--replace", "--idempotency-key", "k-1", "--if-match", '"rev-9"'
    )
    assert replayed == first
    before = registry.snapshot()
    line = error_line(logged_in("publish", "staging", "--remove", "greet", "--idempotency-key", "k-1"), 422)
    assert "idempotency-key-reused" in line
    assert registry.snapshot() == before


def test_not_found_and_conflicts_exit_1(logged_in, registry, project):
    error_line(logged_in("prompts", "show", "nothing-here"), 404)
    error_line(logged_in("history", "nowhere"), 404)
    error_line(logged_in("projects", "list", "--org", "no-such-org"), 404)
    error_line(logged_in("orgs", "create", project), 409)


def test_bad_command_lines_exit_2_without_contacting_the_registry(logged_in, registry, project, tmp_path):
    before = registry.snapshot()
    assert logged_in("publish", "staging").exit_code == 2  # nothing to publish
    assert logged_in("publish", "staging", "-p", "greet=two").exit_code == 2
    assert logged_in("prompts", "push", "x", "-f", str(tmp_path / "missing.json")).exit_code == 2
    (tmp_path / "p.toml").write_text("")
    assert logged_in("prompts", "push", "x", "-f", str(tmp_path / "p.toml")).exit_code == 2
    assert logged_in("prompts", "show", "Bad Name").exit_code == 2
    assert logged_in("tokens", "issue", "--kind", "operator", "--name", "x", "--ttl", "soon").exit_code == 2
    assert logged_in("rollback", "staging").exit_code == 2  # typer: --to is required
    assert logged_in("orgs", "frobnicate").exit_code == 2
    assert registry.snapshot() == before
