"""The CLI's own pieces without a registry: URL policy, problem lines, dry-run requests, the
config file, prompt files and durations. httpx.MockTransport stands in for the network here."""

from __future__ import annotations

import json
import os
import stat

import httpx
import pytest

from anvil_cli.client import AnvilClient, DryRun, check_url
from anvil_cli.commands.prompts import load_content
from anvil_cli.commands.tokens import parse_ttl
from anvil_cli.config import Config, Context, load_config, resolve, save_config
from anvil_cli.errors import ApiError, Failure, UsageProblem

SECRET = "header.payload.signature"


@pytest.mark.parametrize(
    "url",
    [
        "https://anvil.example.com",
        "http://127.0.0.1:8000",
        "http://127.9.9.9",
        "http://[::1]:8000",
        "http://localhost:8000/",
        "http://api.localhost",
    ],
)
def test_https_and_loopback_urls_are_accepted(url):
    assert check_url(url, allow_http=False) == url.rstrip("/")


@pytest.mark.parametrize("url", ["http://anvil.example.com", "http://10.0.0.1", "http://[::2]"])
def test_plain_http_elsewhere_needs_the_explicit_flag(url):
    with pytest.raises(UsageProblem, match="refusing plain http"):
        check_url(url, allow_http=False)
    assert check_url(url, allow_http=True) == url


@pytest.mark.parametrize("url", ["ftp://anvil.example.com", "anvil.example.com", "https://", ""])
def test_non_http_urls_are_usage_errors(url):
    with pytest.raises(UsageProblem):
        check_url(url, allow_http=True)


def client_answering(response: httpx.Response, seen: list[httpx.Request] | None = None) -> AnvilClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return response

    return AnvilClient("https://anvil.test", SECRET, transport=httpx.MockTransport(handler))


def test_a_problem_becomes_one_line_with_title_detail_status_and_type():
    problem = {
        "type": "urn:anvil:problem:precondition-failed",
        "title": "Precondition failed",
        "status": 412,
        "detail": 'the resource changed:\n its ETag is "rev-2"',
    }
    response = httpx.Response(412, json=problem, headers={"content-type": "application/problem+json"})
    with client_answering(response) as client, pytest.raises(ApiError) as caught:
        client.list_orgs()
    assert caught.value.line() == (
        'error: Precondition failed: the resource changed: its ETag is "rev-2" '
        "(412 urn:anvil:problem:precondition-failed)"
    )


def test_a_bare_error_page_still_gives_one_line():
    response = httpx.Response(502, text="<html>\n<body>Bad gateway</body>\n</html>")
    with client_answering(response) as client, pytest.raises(ApiError) as caught:
        client.list_orgs()
    line = caught.value.line()
    assert "\n" not in line
    assert line.startswith("error: Bad Gateway: <html> <body>Bad gateway</body> </html>")
    assert line.endswith("(502 about:blank)")


def test_redirects_are_not_followed_so_the_token_stays_home():
    seen: list[httpx.Request] = []
    response = httpx.Response(307, headers={"location": "https://elsewhere.test/v1/orgs"})
    with client_answering(response, seen) as client, pytest.raises(Failure, match="redirected"):
        client.list_orgs()
    assert [str(r.url.host) for r in seen] == ["anvil.test"]


def test_a_dry_run_builds_the_request_without_sending_or_showing_the_token():
    seen: list[httpx.Request] = []
    with client_answering(httpx.Response(200, json={}), seen) as client:
        client.dry_run = True
        with pytest.raises(DryRun) as caught:
            client.create_org(slug="acme", name="Acme")
    assert seen == []
    described = caught.value.describe()
    assert (described["method"], described["url"]) == ("POST", "https://anvil.test/v1/orgs")
    assert described["body"] == {"slug": "acme", "name": "Acme"}
    assert "authorization" not in described["headers"]
    assert SECRET not in json.dumps(described)


def test_lists_follow_next_page_tokens_up_to_the_limit():
    pages = {None: {"items": [{"n": 1}, {"n": 2}], "next_page_token": "p2"}, "p2": {"items": [{"n": 3}]}}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=pages[request.url.params.get("page_token")])

    with AnvilClient("https://anvil.test", SECRET, transport=httpx.MockTransport(handler)) as client:
        assert [i["n"] for i in client.list_orgs()] == [1, 2, 3]
        assert [i["n"] for i in client.list_orgs(limit=2)] == [1, 2]


def test_config_is_written_atomically_with_mode_0600(tmp_path):
    path = tmp_path / "deep" / "config.json"
    save_config(Config(current="a", contexts={"a": Context(url="https://x", token=SECRET, org="acme")}), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["config.json"]
    assert load_config(path).contexts["a"].org == "acme"


def test_a_malformed_config_file_is_a_usage_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(UsageProblem):
        load_config(path)
    path.write_text(json.dumps({"contexts": {"a": {"url": "https://x"}}}))
    with pytest.raises(UsageProblem, match="malformed"):
        load_config(path)


def test_env_overrides_win_and_allow_http_stays_with_its_url(monkeypatch):
    config = Config(current="a", contexts={"a": Context(url="http://dev.test", token="t", allow_http=True)})
    for name in ("ANVIL_URL", "ANVIL_TOKEN", "ANVIL_CONTEXT", "ANVIL_ALLOW_HTTP"):
        monkeypatch.delenv(name, raising=False)
    assert resolve(config, None).allow_http is True
    monkeypatch.setenv("ANVIL_URL", "http://other.test")
    monkeypatch.setenv("ANVIL_TOKEN", "u")
    resolved = resolve(config, None)
    assert (resolved.url, resolved.token, resolved.allow_http) == ("http://other.test", "u", False)


def test_prompt_files_json_yaml_and_text_with_declared_variables(tmp_path):
    (tmp_path / "p.yaml").write_text("template: Hi {{who}}\nvariables:\n  who: {default: you}\n")
    assert load_content(tmp_path / "p.yaml", []) == {
        "template": "Hi {{who}}",
        "variables": {"who": {"default": "you"}},
    }
    (tmp_path / "p.txt").write_text("Hi {{who}} from {{me}}\n")
    assert load_content(tmp_path / "p.txt", ["who", "me=anvil"]) == {
        "template": "Hi {{who}} from {{me}}",
        "variables": {"who": {}, "me": {"default": "anvil"}},
    }
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(UsageProblem, match="must hold an object"):
        load_content(tmp_path / "list.json", [])
    (tmp_path / "broken.yaml").write_text("template: [unclosed\n")
    with pytest.raises(UsageProblem, match="not valid YAML"):
        load_content(tmp_path / "broken.yaml", [])


@pytest.mark.parametrize(
    ("text", "seconds"), [("3600", 3600), ("90m", 5400), ("12h", 43200), ("30d", 2592000), ("2w", 1209600)]
)
def test_ttl_durations(text, seconds):
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "1y", "-5", "12 h"])
def test_bad_ttl_is_a_usage_error(text):
    with pytest.raises(UsageProblem):
        parse_ttl(text)
