"""export -> file -> inspect -> verify, and import (dry run, apply, conflicts, strategies, bad
files) through a real instance: registry, bundle-worker API and worker loop as processes."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import zlib
from pathlib import Path

import httpx
import pytest

from anvil_wire import KeySet
from anvil_wire.bundles import read_bundle, write_bundle

ERROR_PREFIX = "error: "


def one_error_line(result, exit_code=1):
    assert result.exit_code == exit_code, (
        f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    )
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(ERROR_PREFIX)
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


def api(instance, method, path, **kwargs):
    with instance.client("registry") as client:
        response = client.request(method, path, **kwargs)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def push(instance, org, name, template, *, project="web", variables=None):
    content = {"template": template, "variables": variables or {}}
    path = f"/v1/orgs/{org}/projects/{project}/prompts/{name}/versions"
    return api(instance, "POST", path, json={"content": content, "message": f"{name}: {template}"})


def prompts_of(instance, org, project="web"):
    try:
        page = api(instance, "GET", f"/v1/orgs/{org}/projects/{project}/prompts")
    except AssertionError:
        return None
    return {p["name"]: p["latest_version"] for p in page["items"]}


def make_org(instance, org, *, project=True):
    api(instance, "POST", "/v1/orgs", json={"slug": org, "name": org.title()})
    if project:
        api(instance, "POST", f"/v1/orgs/{org}/projects", json={"slug": "web", "name": "Web"})


@pytest.fixture
def source(instance, worker_cli, request):
    """An org named after the test: project web with greet (2 versions) and footer, and
    environment staging serving greet."""
    org = "s-" + request.node.name.removeprefix("test_").replace("_", "-")[:30].rstrip("-")
    make_org(instance, org)
    push(instance, org, "greet", "Hello")
    push(instance, org, "greet", "Hello {{name}}", variables={"name": {"default": "you"}})
    push(instance, org, "footer", "Bye")
    worker_cli.ok("envs", "create", "staging", "--org", org, "--project", "web")
    worker_cli.ok("publish", "staging", "-p", "greet", "--org", org, "--project", "web")
    return org


def export(cli, tmp_path, *args, name="out.anvil"):
    path = tmp_path / name
    data = cli.json("export", *args, "-f", str(path))
    assert Path(data["file"]) == path
    return path, data


def test_export_writes_a_bundle_that_inspects_and_verifies(
    worker_cli, instance, source, tmp_path, monkeypatch
):
    path, data = export(worker_cli, tmp_path, "--org", source, "--full-history", "--environments")
    assert data["bundle"].startswith("sha256:")
    assert data["size"] == path.stat().st_size
    assert data["selection"]["kind"] == "organisation"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.anvil"]  # no temporary file left

    info = worker_cli.json("bundle", "inspect", str(path))
    assert info["digest"] == data["bundle"]
    assert info["exporter"]["instance"] == instance.registry_url
    assert info["organisation"]["slug"] == source
    assert info["options"] == {"history": "full", "environments": True}
    assert info["counts"]["projects"] == 1
    assert info["counts"]["prompts"] == 2
    assert info["counts"]["versions"] == 3
    assert info["counts"]["environments"] == 1
    assert info["counts"]["revisions"] == 1
    assert info["seal"]["verified"] is False
    assert info["seal"]["issuer"] == instance.registry_url
    table = worker_cli.ok("bundle", "inspect", str(path)).stdout
    assert "not verified" in table
    assert "the whole organisation" in table

    verified = worker_cli.json("bundle", "verify", str(path))
    assert verified["verified"] is True
    assert verified["bundle"] == data["bundle"]
    assert verified["kid"] == info["seal"]["kid"]
    assert verified["jwks"] == f"{instance.registry_url}/.well-known/jwks.json"
    assert "verified: bundle" in worker_cli.ok("bundle", "verify", str(path)).stdout
    jwks = tmp_path / "jwks.json"
    jwks.write_text(httpx.get(f"{instance.registry_url}/.well-known/jwks.json").text)
    assert worker_cli.json("bundle", "verify", str(path), "--jwks", str(jwks))["verified"] is True

    other = tmp_path / "other-jwks.json"
    other.write_text(json.dumps(KeySet.generate().public_jwks()))
    line = one_error_line(worker_cli("bundle", "verify", str(path), "--jwks", str(other)))
    assert "bundle verification failed" in line
    assert line.endswith("(bundle-untrusted-key)")

    # Without -f: <hex12>.anvil in the current directory; a project selection, latest only.
    monkeypatch.chdir(tmp_path)
    project = worker_cli.json("export", "--project", "web", "--org", source)
    assert project["file"] == str(tmp_path / f"{project['bundle'].removeprefix('sha256:')[:12]}.anvil")
    assert worker_cli.json("bundle", "inspect", project["file"])["counts"]["versions"] == 2
    into = tmp_path / "into"
    into.mkdir()
    again = worker_cli.json("export", "--project", "web", "--org", source, "-f", str(into))
    assert again["file"] == str(into / Path(project["file"]).name)
    assert sorted(p.name for p in into.iterdir()) == [Path(project["file"]).name]


def test_export_refuses_bad_selections_and_dry_run_sends_nothing(worker_cli, source, tmp_path):
    one_error_line(worker_cli("export"), exit_code=2)
    one_error_line(worker_cli("export", "--project", "web", "--prompt", "web/greet", "--org", source), 2)
    one_error_line(worker_cli("export", "--prompt", "greet", "--org", source), 2)
    one_error_line(worker_cli("export", "--project", "web", "--org", source, "-f", "/no/such/dir/x"), 2)

    described = json.loads(
        worker_cli.ok("export", "--org", source, "--prompt", "web/greet", "--dry-run", "-o", "json").stdout
    )
    assert described["method"] == "POST"
    assert described["url"].endswith("/v1/exports")
    assert described["body"]["selection"] == {
        "kind": "prompts",
        "project": None,
        "prompt_set": None,
        "prompts": ["web/greet"],
    }
    assert "authorization" not in described["headers"]
    assert list(tmp_path.iterdir()) == []


def test_an_export_error_is_one_line(worker_cli, source, tmp_path):
    line = one_error_line(worker_cli("export", "--org", "no-such-org", "-f", str(tmp_path / "x.anvil")))
    assert "urn:anvil:problem:" in line
    assert list(tmp_path.iterdir()) == []


def test_import_dry_run_prints_the_plan_and_writes_nothing_then_applies(
    worker_cli, instance, source, tmp_path
):
    path, _ = export(worker_cli, tmp_path, "--project", "web", "--org", source, "--full-history")
    target = source.replace("s-", "t-", 1)
    make_org(instance, target, project=False)

    table = worker_cli.ok("import", str(path), "--org", target, "--dry-run").stdout
    assert "PROMPT" in table
    assert "web/greet" in table
    assert "create" in table
    assert "dry run: nothing was written" in table
    planned = worker_cli.json("import", str(path), "--org", target, "--dry-run")
    assert planned["applicable"] is True
    assert planned["status"] == "rejected"  # a dry run's plan is discarded
    assert [(p["key"], p["status"], p["action"]) for p in planned["plan"]["prompts"]] == [
        ("web/footer", "new", "create"),
        ("web/greet", "new", "create"),
    ]
    assert yaml_has(worker_cli.ok("import", str(path), "--org", target, "--dry-run", "-o", "yaml").stdout)
    assert prompts_of(instance, target) is None  # the project was never created

    applied = worker_cli.json("import", str(path), "--org", target)
    assert applied["status"] == "applied"
    assert applied["result"]["created"]["versions"] == 3
    assert prompts_of(instance, target) == {"footer": 1, "greet": 2}

    again = worker_cli.ok("import", str(path), "--org", target, "--yes")
    assert "nothing to write" in again.stdout
    assert prompts_of(instance, target) == {"footer": 1, "greet": 2}


def yaml_has(text):
    return "applicable: true" in text and "plan:" in text


def diverge(instance, source, target):
    push(instance, source, "greet", "Hello from the source")
    push(instance, target, "greet", "Hello from the target")


def test_conflicts_fail_with_one_line_and_resolve_with_rename_and_overrides(
    worker_cli, instance, source, tmp_path
):
    target = source.replace("s-", "t-", 1)
    make_org(instance, target, project=False)
    first, _ = export(worker_cli, tmp_path, "--project", "web", "--org", source, name="first.anvil")
    worker_cli.ok("import", str(first), "--org", target)
    diverge(instance, source, target)
    second, _ = export(worker_cli, tmp_path, "--project", "web", "--org", source, name="second.anvil")
    before = prompts_of(instance, target)

    result = worker_cli("import", str(second), "--org", target, "--strategy", "fail", "--diff")
    line = one_error_line(result)
    assert "not applicable" in line
    assert "web/greet" in line
    assert "conflict" in result.stdout
    assert "blocked" in result.stdout
    assert "diff web/greet:" in result.stdout
    assert "+" in result.stdout
    as_json = worker_cli("import", str(second), "--org", target, "-o", "json")
    one_error_line(as_json)
    assert json.loads(as_json.stdout)["applicable"] is False
    assert prompts_of(instance, target) == before

    skipped = worker_cli.json("import", str(second), "--org", target, "--override", "web/greet=skip")
    assert skipped["status"] == "applied"
    assert prompts_of(instance, target) == before

    renamed = worker_cli.json("import", str(second), "--org", target, "--strategy", "rename")
    assert renamed["status"] == "applied"
    [item] = [p for p in renamed["plan"]["prompts"] if p["key"] == "web/greet"]
    assert item["action"] == "rename"
    after = prompts_of(instance, target)
    assert after[item["rename_to"]] == 1
    assert after["greet"] == before["greet"]

    one_error_line(worker_cli("import", str(second), "--org", target, "--override", "web/greet"), 2)
    one_error_line(worker_cli("import", str(second), "--org", target, "--override", "web/greet=merge"), 2)


def on_a_terminal(cli, args, *, answer, before_answer=None, timeout=120):
    """Run ``anvil ARGS`` as a process whose stdin is a terminal (a pty); when it asks, run
    ``before_answer``, then type ``answer``. Returns (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANVIL_")}
    env.update(ANVIL_CONFIG=str(cli.config), COLUMNS="200")
    command = [sys.executable, "-c", "from anvil_cli.main import app; app(prog_name='anvil')", *args]
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(
            command, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
    finally:
        os.close(slave)
    try:
        asked = b""
        while b"Apply this plan" not in asked:
            ready, _, _ = select.select([process.stderr], [], [], timeout)
            chunk = os.read(process.stderr.fileno(), 4096) if ready else b""
            if not chunk:
                process.kill()
                out, err = process.communicate()
                raise AssertionError(f"anvil did not ask: {asked + err!r} {out!r}")
            asked += chunk
        if before_answer is not None:
            before_answer()
        os.write(master, answer)
        out, err = process.communicate(timeout=timeout)
    finally:
        os.close(master)
    return process.returncode, out.decode(), (asked + err).decode()


def test_on_a_terminal_it_asks_and_a_target_changed_meanwhile_is_one_line(
    worker_cli, instance, source, tmp_path
):
    path, _ = export(worker_cli, tmp_path, "--project", "web", "--org", source)
    target = source.replace("s-", "t-", 1)
    make_org(instance, target)
    push(instance, target, "other", "Unrelated")

    code, out, err = on_a_terminal(worker_cli, ["import", str(path), "--org", target], answer=b"n\n")
    assert code == 1, (out, err)
    assert "web/greet" in out  # the plan is shown before the question
    # (a terminal would echo the typed answer and its newline; stderr here is a pipe)
    assert err.splitlines()[-1].partition("[y/N]:")[2].strip() == "error: not applied: the plan was discarded"
    assert prompts_of(instance, target) == {"other": 1}

    def change_target():
        push(instance, target, "greet", "Made on the target meanwhile")

    code, out, err = on_a_terminal(
        worker_cli, ["import", str(path), "--org", target], answer=b"y\n", before_answer=change_target
    )
    assert code == 1, (out, err)
    line = err.splitlines()[-1].partition("[y/N]:")[2].strip()
    assert line.startswith("error: The target changed since the plan was made: nothing was written; run")
    assert line.endswith("(409 urn:anvil:problem:import-target-changed)")
    assert "Traceback" not in err
    assert prompts_of(instance, target) == {"other": 1, "greet": 1}

    code, out, err = on_a_terminal(
        worker_cli, ["import", str(path), "--org", target, "--strategy", "rename"], answer=b"y\n"
    )
    assert code == 0, (out, err)
    assert "applied plan" in out


def _unsigned(data):
    """The bundle without its seal member (the body member, then the end of the archive)."""
    from anvil_wire.bundles.archive import END_OF_ARCHIVE, gzip_member

    inflater = zlib.decompressobj(wbits=31)
    inflater.decompress(data)
    return data[: len(data) - len(inflater.unused_data)] + gzip_member([END_OF_ARCHIVE])


def test_bad_files_are_one_line_and_write_nothing(worker_cli, instance, source, tmp_path):
    good, _ = export(worker_cli, tmp_path, "--project", "web", "--org", source)
    target = source.replace("s-", "t-", 1)
    make_org(instance, target, project=False)
    data = good.read_bytes()
    bundle = read_bundle(data, trust=None)
    foreign = write_bundle(bundle.manifest, bundle.contents, KeySet.generate().active).data
    cases = {
        "garbage.anvil": (b"this is not a bundle", "not an importable bundle", "(bundle-malformed)"),
        "empty.anvil": (b"", "the file is empty", "(bundle-malformed)"),
        "truncated.anvil": (data[: len(data) // 2], "urn:anvil:problem:bundle-", ""),
        "unsigned.anvil": (_unsigned(data), "urn:anvil:problem:bundle-unsigned", ""),
        "foreign.anvil": (foreign, "urn:anvil:problem:bundle-untrusted-key", ""),
    }
    for name, (content, expected, ending) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        line = one_error_line(worker_cli("import", str(path), "--org", target))
        assert expected in line, (name, line)
        assert line.endswith(ending), (name, line)
    assert prompts_of(instance, target) is None

    one_error_line(worker_cli("import", str(tmp_path / "missing.anvil"), "--org", target), 2)
    inspected = one_error_line(worker_cli("bundle", "inspect", str(tmp_path / "truncated.anvil")))
    assert "not a readable bundle" in inspected
    assert "unsigned" in worker_cli.ok("bundle", "inspect", str(tmp_path / "unsigned.anvil")).stdout
    assert worker_cli.json("bundle", "inspect", str(tmp_path / "unsigned.anvil"))["seal"] is None
    assert one_error_line(worker_cli("bundle", "verify", str(tmp_path / "unsigned.anvil"))).endswith(
        "(bundle-unsigned)"
    )
    assert one_error_line(worker_cli("bundle", "verify", str(tmp_path / "foreign.anvil"))).endswith(
        "(bundle-untrusted-key)"
    )


def test_progress_goes_to_stderr_and_json_stays_clean(worker_cli, instance, source, tmp_path):
    path = tmp_path / "p.anvil"
    args = ("--project", "web", "--org", source, "-f", str(path), "--progress", "-o", "json")
    assert json.loads(worker_cli.ok("export", *args).stdout)["file"] == str(path)
    target = source.replace("s-", "t-", 1)
    make_org(instance, target, project=False)
    result = worker_cli.ok("import", str(path), "--org", target, "--dry-run", "--progress", "-o", "json")
    assert json.loads(result.stdout)["applicable"] is True


def test_a_missing_worker_url_is_a_usage_error(anvil, instance, operator_token, tmp_path):
    anvil.ok("login", "--url", instance.registry_url, "--token", operator_token)
    for args in (
        ["export", "--org", "acme"],
        ["import", str(tmp_path / "x.anvil"), "--org", "acme"],
        ["peers", "list", "--org", "acme"],
    ):
        line = one_error_line(anvil(*args), exit_code=2)
        assert "no bundle-worker URL" in line
        assert "--worker-url" in line
        assert "ANVIL_WORKER_URL" in line
    shown = anvil.json("context", "show", env={"ANVIL_WORKER_URL": instance.worker_url})
    assert shown["worker_url"] == instance.worker_url
    anvil.ok("context", "set", "--worker-url", instance.worker_url)
    assert anvil.json("context", "list")[0]["worker_url"] == instance.worker_url
    anvil.ok("context", "set", "--worker-url", "")
    assert anvil.json("context", "show")["worker_url"] is None
