"""Login, contexts, environment overrides, and the usage errors (exit 2) around them."""

from __future__ import annotations

import json
import stat


def one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_login_stores_a_0600_context_and_never_shows_the_token(anvil, registry):
    result = anvil.ok("login", "--url", registry.url, "--token", registry.admin_token)
    assert "logged in to" in result.stdout
    assert stat.S_IMODE(anvil.config.stat().st_mode) == 0o600
    stored = json.loads(anvil.config.read_text())
    assert stored["current"] == "default"
    assert stored["contexts"]["default"]["token"] == registry.admin_token

    listed = anvil.json("context", "list")
    assert listed == [
        {
            "name": "default",
            "current": True,
            "url": registry.url,
            "worker_url": None,
            "gateway_url": None,
            "org": None,
            "project": None,
            "allow_http": False,
        }
    ]
    shown = anvil.json("context", "show")
    assert shown["token"] == "set"
    assert shown["kind"] == "operator"
    for args in (("context", "list"), ("context", "show"), ("context", "show", "-o", "yaml")):
        result = anvil.ok(*args)
        assert registry.admin_token not in result.stdout + result.stderr


def test_login_with_a_bad_token_exits_1_and_saves_nothing(anvil, registry):
    result = anvil("login", "--url", registry.url, "--token", "not-a-jwt")
    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert "(401 urn:anvil:problem:" in line
    assert not anvil.config.exists()


def test_token_can_come_from_stdin(anvil, registry):
    result = anvil("login", "--url", registry.url, "--token", "-", input=registry.admin_token + "\n")
    assert result.exit_code == 0, result.stderr
    assert json.loads(anvil.config.read_text())["contexts"]["default"]["token"] == registry.admin_token


def test_contexts_switch_hold_defaults_and_yield_to_env_overrides(anvil, registry):
    anvil.ok("login", "--url", registry.url, "--token", registry.admin_token, "--context", "a")
    anvil.ok(
        "login", "--url", registry.url, "--token", registry.admin_token, "--context", "b", "--org", "beta"
    )
    assert anvil.json("context", "show")["name"] == "b"
    anvil.ok("context", "use", "a")
    anvil.ok("context", "set", "--org", "acme", "--project", "web")
    shown = anvil.json("context", "show")
    assert (shown["name"], shown["org"], shown["project"]) == ("a", "acme", "web")
    assert [c["name"] for c in anvil.json("context", "list") if c["current"]] == ["a"]

    assert anvil.json("context", "show", env={"ANVIL_CONTEXT": "b"})["org"] == "beta"
    assert anvil.json("--context", "b", "context", "show")["org"] == "beta"
    overridden = anvil.json("context", "show", env={"ANVIL_URL": "https://anvil.example.com"})
    assert overridden["url"] == "https://anvil.example.com"

    anvil.ok("context", "set", "--org", "")
    assert anvil.json("context", "show")["org"] is None
    anvil.ok("context", "delete", "b")
    assert [c["name"] for c in anvil.json("context", "list")] == ["a"]


def test_an_unknown_context_is_a_usage_error(anvil):
    result = anvil("--context", "nope", "orgs", "list")
    assert result.exit_code == 2
    assert "no context named 'nope'" in one_error_line(result.stderr)
    assert anvil("context", "use", "nope").exit_code == 2


def test_missing_url_or_token_exits_2_with_a_hint(anvil):
    result = anvil("orgs", "list")
    assert result.exit_code == 2
    assert "anvil login" in one_error_line(result.stderr)
    assert result.stdout == ""
    result = anvil("orgs", "list", env={"ANVIL_URL": "http://127.0.0.1:9"})
    assert result.exit_code == 2
    assert "no token" in one_error_line(result.stderr)


def test_missing_org_or_project_exits_2_with_a_hint(anvil, registry):
    anvil.ok("login", "--url", registry.url, "--token", registry.admin_token)
    result = anvil("projects", "list")
    assert result.exit_code == 2
    assert "--org" in one_error_line(result.stderr)
    result = anvil("envs", "list", "--org", "acme")
    assert result.exit_code == 2
    assert "--project" in one_error_line(result.stderr)


def test_plain_http_to_a_non_loopback_host_is_refused_with_exit_2(anvil):
    result = anvil("login", "--url", "http://anvil.invalid", "--token", "x")
    assert result.exit_code == 2
    assert "refusing plain http" in one_error_line(result.stderr)
    assert not anvil.config.exists()

    env = {"ANVIL_URL": "http://anvil.invalid", "ANVIL_TOKEN": "x"}
    result = anvil("orgs", "list", env=env)
    assert result.exit_code == 2
    assert "refusing plain http" in one_error_line(result.stderr)
    assert anvil("orgs", "list", env={**env, "ANVIL_URL": "ftp://anvil.invalid"}).exit_code == 2

    # Explicitly allowed: the request goes out, and an unreachable host is a plain exit 1.
    result = anvil("orgs", "list", env={**env, "ANVIL_ALLOW_HTTP": "1"})
    assert result.exit_code == 1
    assert "cannot reach http://anvil.invalid" in one_error_line(result.stderr)
    assert anvil("--insecure-http", "orgs", "list", env=env).exit_code == 1


def test_insecure_http_at_login_is_remembered_for_that_context_only(anvil):
    anvil.ok("login", "--url", "http://anvil.invalid", "--token", "x", "--insecure-http", "--no-verify")
    assert anvil.json("context", "show")["allow_http"] is True
    result = anvil("orgs", "list")
    assert result.exit_code == 1  # allowed, then unreachable
    assert "cannot reach" in one_error_line(result.stderr)
    result = anvil("orgs", "list", env={"ANVIL_URL": "http://other.invalid"})
    assert result.exit_code == 2
