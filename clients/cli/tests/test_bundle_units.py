"""The bundle commands' offline parts: ``bundle inspect|verify`` on files written here with the
reference writer (the golden example's inputs), selections and overrides, following a job, and
the peer token never shown by a dry run. httpx.MockTransport stands in for the worker in the
job tests; nothing here starts a service."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import httpx
import pytest

from anvil_cli.commands.bundles import parse_overrides, selection_of
from anvil_cli.errors import ApiError, Failure, UsageProblem
from anvil_cli.progress import Steps
from anvil_cli.worker import WorkerClient, follow_job
from anvil_wire import KeySet
from anvil_wire.bundles import assemble_manifest, write_bundle
from anvil_wire.bundles.archive import END_OF_ARCHIVE, gzip_member

EXAMPLE_INPUT = Path(__file__).resolve().parents[3] / "tests" / "contract" / "bundles" / "example-input.json"
EXAMPLE_DIGEST = EXAMPLE_INPUT.with_name("example-digest.txt")


def one_error_line(result, exit_code=1):
    assert result.exit_code == exit_code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def keys():
    return KeySet.generate()


def bundle_bytes(keys, instance=None):
    example = json.loads(EXAMPLE_INPUT.read_text(encoding="utf-8"))
    exporter = dict(example["exporter"])
    if instance:
        exporter["instance"] = instance
    manifest, contents = assemble_manifest(example["snapshot"], exporter=exporter)
    return write_bundle(manifest, contents, keys.active)


@pytest.fixture
def files(tmp_path, keys):
    written = bundle_bytes(keys)
    good = tmp_path / "good.anvil"
    good.write_bytes(written.data)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(keys.public_jwks()))
    other = tmp_path / "other.json"
    other.write_text(json.dumps(KeySet.generate().public_jwks()))
    return {"good": good, "jwks": jwks, "other": other, "digest": written.digest, "data": written.data}


def test_inspect_shows_the_manifest_offline_and_says_the_seal_is_not_verified(anvil, files, keys):
    info = anvil.json("bundle", "inspect", str(files["good"]))
    assert info["digest"] == files["digest"] == EXAMPLE_DIGEST.read_text().strip()
    assert info["exporter"] == {
        "instance": "https://anvil.acme.example",
        "software": "anvil-bundle-worker/0.1.0",
    }
    assert info["selection"]["kind"] == "project"
    assert info["organisation"]["slug"] == "acme"
    assert info["counts"]["projects"] == len(info["projects"])
    assert info["counts"]["objects"] >= info["counts"]["versions"] > 0
    assert info["seal"] == {
        "verified": False,
        "kid": keys.active.kid,
        "issuer": "https://anvil.acme.example",
        "created_at": info["seal"]["created_at"],
        "readable": True,
    }
    table = anvil.ok("bundle", "inspect", str(files["good"])).stdout
    assert "(not verified)" in table
    assert "project support" in table
    assert "anvil.bundle 1.0" in table


def test_verify_with_a_jwks_file_and_refusals_with_their_code(anvil, files, keys, tmp_path):
    verified = anvil.json("bundle", "verify", str(files["good"]), "--jwks", str(files["jwks"]))
    assert verified["verified"] is True
    assert verified["kid"] == keys.active.kid
    assert verified["issuer"] == "https://anvil.acme.example"
    assert verified["created_at"].endswith("Z")

    line = one_error_line(anvil("bundle", "verify", str(files["good"]), "--jwks", str(files["other"])))
    assert line.startswith(f"error: bundle verification failed: {files['good']}: ")
    assert line.endswith("(bundle-untrusted-key)")

    data = files["data"]
    inflater = zlib.decompressobj(wbits=31)
    inflater.decompress(data)
    unsigned = tmp_path / "unsigned.anvil"
    unsigned.write_bytes(data[: len(data) - len(inflater.unused_data)] + gzip_member([END_OF_ARCHIVE]))
    assert anvil.json("bundle", "inspect", str(unsigned))["seal"] is None
    assert "unsigned" in anvil.ok("bundle", "inspect", str(unsigned)).stdout
    line = one_error_line(anvil("bundle", "verify", str(unsigned), "--jwks", str(files["jwks"])))
    assert line.endswith("(bundle-unsigned)")

    bad_jwks = tmp_path / "bad.json"
    bad_jwks.write_text("{}")
    assert "not usable" in one_error_line(
        anvil("bundle", "verify", str(files["good"]), "--jwks", str(bad_jwks))
    )
    one_error_line(anvil("bundle", "verify", str(files["good"]), "--jwks", str(tmp_path / "no.json")), 2)


def test_the_default_jwks_url_needs_https_off_loopback(anvil, keys, tmp_path):
    path = tmp_path / "plain.anvil"
    path.write_bytes(bundle_bytes(keys, instance="http://anvil.invalid").data)
    line = one_error_line(anvil("bundle", "verify", str(path)), exit_code=2)
    assert "refusing plain http to anvil.invalid" in line
    line = one_error_line(anvil("bundle", "verify", str(path), "--insecure-http"))
    assert "cannot fetch the JWKS from http://anvil.invalid/.well-known/jwks.json" in line


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"not a bundle at all", "(bundle-malformed)"),
        (b"\x1f\x8b\x08\x00" + b"\x00" * 20, "(bundle-malformed)"),
    ],
)
def test_unreadable_files_are_one_line_exit_1(anvil, tmp_path, content, message):
    path = tmp_path / "bad.anvil"
    path.write_bytes(content)
    for command in ("inspect", "verify"):
        line = one_error_line(anvil("bundle", command, str(path)))
        assert message in line
    assert one_error_line(anvil("bundle", "inspect", str(tmp_path / "missing.anvil")), 2).startswith(
        "error: cannot read"
    )


def test_a_later_major_format_version_is_refused_with_a_readable_message(anvil, tmp_path):
    from anvil_wire.bundles.archive import tar_entry

    version = json.dumps({"format": "anvil.bundle", "version": "2.1"}, separators=(",", ":")).encode()
    path = tmp_path / "future.anvil"
    path.write_bytes(gzip_member([*tar_entry("anvil-bundle.json", version), END_OF_ARCHIVE]))
    line = one_error_line(anvil("bundle", "inspect", str(path)))
    assert "2.1" in line
    assert line.endswith("(bundle-version-unsupported)")
    result = anvil(
        "import",
        str(path),
        "--org",
        "acme",
        env={"ANVIL_WORKER_URL": "http://127.0.0.1:9", "ANVIL_TOKEN": "x"},
    )
    assert "not an importable bundle" in one_error_line(result)


def test_selections_take_exactly_one_kind():
    whole = selection_of(whole_org=True, project=None, prompt_set=None, prompts=None)
    assert whole == {"kind": "organisation", "project": None, "prompt_set": None, "prompts": None}
    assert selection_of(whole_org=True, project="web", prompt_set=None, prompts=None)["kind"] == "project"
    assert selection_of(whole_org=False, project=None, prompt_set="web/onboarding/v2", prompts=None) == {
        "kind": "prompt_set",
        "project": "web",
        "prompt_set": "onboarding/v2",
        "prompts": None,
    }
    chosen = selection_of(whole_org=False, project=None, prompt_set=None, prompts=["web/b", "api/a", "web/b"])
    assert chosen["prompts"] == ["api/a", "web/b"]
    for kwargs in (
        {"whole_org": False, "project": None, "prompt_set": None, "prompts": None},
        {"whole_org": True, "project": "web", "prompt_set": "web/x", "prompts": None},
        {"whole_org": False, "project": None, "prompt_set": None, "prompts": ["greet"]},
        {"whole_org": False, "project": "Web!", "prompt_set": None, "prompts": None},
        {"whole_org": False, "project": None, "prompt_set": "web", "prompts": None},
    ):
        with pytest.raises(UsageProblem):
            selection_of(**kwargs)


def test_overrides_are_checked_before_anything_is_sent():
    assert parse_overrides(["web/b=skip", "api/a/x=rename"]) == {"api/a/x": "rename", "web/b": "skip"}
    assert parse_overrides(None) == {}
    for bad in (["web/b"], ["b=skip"], ["web/b=merge"], ["web/b=skip", "web/b=fail"]):
        with pytest.raises(UsageProblem):
            parse_overrides(bad)


def worker_answering(jobs):
    """A WorkerClient whose GET /v1/jobs/{id} answers the given job states in turn (then the last)."""
    states = list(jobs)

    def handler(request: httpx.Request) -> httpx.Response:
        state = states.pop(0) if len(states) > 1 else states[0]
        return httpx.Response(200, json=state)

    return WorkerClient("https://worker.test", "t", transport=httpx.MockTransport(handler))


JOB = {"id": "j1", "kind": "export", "attempts": 0, "max_attempts": 5, "error": None, "result": None}


def test_following_a_job_until_it_succeeds_fails_or_times_out():
    queued, running = {**JOB, "status": "queued"}, {**JOB, "status": "running", "attempts": 1}
    done = {**JOB, "status": "succeeded", "attempts": 1, "result": {"bundle": "sha256:ab", "size": 3}}
    with worker_answering([running, done]) as worker:
        followed = follow_job(
            worker, queued, steps=Steps(False), what="exporting", timeout=60, sleep=lambda s: None
        )
    assert followed["result"] == {"bundle": "sha256:ab", "size": 3}

    problem = {
        "type": "urn:anvil:problem:bundle-malformed",
        "title": "Bundle malformed",
        "status": 422,
        "detail": "no",
    }
    failed = {**JOB, "status": "failed", "attempts": 1, "error": problem}
    with worker_answering([failed]) as worker, pytest.raises(ApiError) as raised:
        follow_job(worker, queued, steps=Steps(False), what="exporting", timeout=60, sleep=lambda s: None)
    assert raised.value.line() == "error: Bundle malformed: no (422 urn:anvil:problem:bundle-malformed)"

    with worker_answering([running]) as worker, pytest.raises(Failure, match="still running"):
        follow_job(worker, queued, steps=Steps(False), what="exporting", timeout=0.01, sleep=lambda s: None)


def test_a_dry_run_never_shows_the_peer_token(anvil, tmp_path):
    env = {
        "ANVIL_WORKER_URL": "http://127.0.0.1:9",
        "ANVIL_TOKEN": "bearer-secret",
        "ANVIL_URL": "http://127.0.0.1:9",
    }
    args = [
        "peers",
        "add",
        "prod",
        "--org",
        "acme",
        "--issuer",
        "https://prod.example",
        "--token",
        "peer-secret",
    ]
    result = anvil(*args, "--dry-run", "-o", "json", env=env)
    assert result.exit_code == 0, result.stderr
    described = json.loads(result.stdout)
    assert described["url"] == "http://127.0.0.1:9/v1/peers"
    assert described["body"]["token"] == "(hidden)"
    assert described["body"]["issuer"] == "https://prod.example"
    assert "peer-secret" not in result.stdout + result.stderr
    assert "bearer-secret" not in result.stdout + result.stderr

    one_error_line(anvil(*args, "--token-file", str(tmp_path / "t"), "--dry-run", env=env), 2)
    stdin = [a if a != "peer-secret" else "-" for a in args]
    result = anvil(*stdin, "--dry-run", "-o", "json", env=env, input="peer-secret\n")
    assert json.loads(result.stdout)["body"]["token"] == "(hidden)"
    assert "peer-secret" not in result.stdout + result.stderr
    one_error_line(anvil(*stdin, "--dry-run", env=env, input="\n"), 2)  # an empty token
    removed = json.loads(
        anvil("peers", "remove", "prod", "--org", "acme", "--dry-run", "-o", "json", env=env).stdout
    )
    assert (removed["method"], removed["url"]) == ("DELETE", "http://127.0.0.1:9/v1/peers/acme/prod")
    transfer = json.loads(
        anvil(
            "transfer",
            "--to",
            "prod",
            "--org",
            "acme",
            "--project",
            "web",
            "--override",
            "web/a=skip",
            "--dry-run",
            "-o",
            "json",
            env=env,
        ).stdout
    )
    assert transfer["url"] == "http://127.0.0.1:9/v1/peers/acme/prod/push"
    assert transfer["body"] == {
        "selection": {"kind": "project", "project": "web", "prompt_set": None, "prompts": None},
        "history": "latest",
        "environments": False,
        "strategy": "fail",
        "overrides": {"web/a": "skip"},
    }
