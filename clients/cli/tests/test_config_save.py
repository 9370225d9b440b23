"""``anvil config ENV --save FILE``: the environment's signed revision document, verified like
``--verify``, written atomically as canonical JSON (a runtime SDK's bootstrap file); nothing is
written when the verification or the write fails."""

from __future__ import annotations

import errno
import json
import os
import uuid

import pytest

from anvil_wire import KeySet, canonical_json, public_keys_from_jwks, verify_revision


@pytest.fixture
def project(logged_in, registry, tmp_path_factory):
    """A fresh org with project web and environment staging serving prompts greet and bye at
    revision 1, set as the context's defaults."""
    org = f"save-{uuid.uuid4().hex[:12]}"
    logged_in.ok("orgs", "create", org)
    logged_in.ok("projects", "create", "web", "--org", org)
    logged_in.ok("context", "set", "--org", org, "--project", "web")
    logged_in.ok("envs", "create", "staging")
    for name, text in (("greet", "Hello {{name}}"), ("bye", "Goodbye {{name}}")):
        source = tmp_path_factory.mktemp("prompts") / f"{name}.txt"
        source.write_text(text)
        logged_in.ok("prompts", "push", name, "-f", str(source), "--var", "name")
    logged_in.ok("publish", "staging", "-p", "greet", "-p", "bye")
    return org


def served(registry, org):
    """The registry's document for org/web/staging, its JWKS and the environment's id."""
    path = f"/v1/orgs/{org}/projects/web/environments/staging"
    document = registry.api("GET", f"{path}/config").json()
    jwks = registry.api("GET", "/.well-known/jwks.json").json()
    return document, jwks, registry.api("GET", path).json()["id"]


def test_save_writes_the_registry_document_as_canonical_json_that_verifies(
    logged_in, registry, project, tmp_path
):
    target = tmp_path / "bootstrap.json"
    result = logged_in.ok("config", "staging", "--save", str(target))
    assert result.stdout.strip() == (
        f"saved verified revision 1 of {project}/web/staging (2 prompts) to {target}"
    )

    document, jwks, environment_id = served(registry, project)
    assert target.read_bytes() == canonical_json(document)  # no trailing newline
    verified = verify_revision(
        json.loads(target.read_bytes()), public_keys_from_jwks(jwks), environment_id=environment_id
    )
    assert (verified.manifest.revision, sorted(verified.manifest.prompts)) == (1, ["bye", "greet"])
    assert verified.content("greet")["template"] == "Hello {{name}}"
    assert os.listdir(tmp_path) == ["bootstrap.json"]  # no temporary file left beside it
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()

    # Saving again replaces the file with the newer revision; -o json says what was saved.
    logged_in.ok("publish", "staging", "--remove", "bye")
    saved = logged_in.json("config", "staging", "--save", str(target))
    assert saved == {
        "saved": str(target),
        "organisation": project,
        "project": "web",
        "environment": "staging",
        "revision": 2,
        "prompts": 1,
        "kid": verified.kid,
    }
    document, _, _ = served(registry, project)
    assert target.read_bytes() == canonical_json(document)
    assert os.listdir(tmp_path) == ["bootstrap.json"]


def test_save_with_a_jwks_file_verifies_against_it(logged_in, registry, project, tmp_path):
    _, jwks, _ = served(registry, project)
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(jwks))
    target = tmp_path / "bootstrap.json"
    saved = logged_in.json("config", "staging", "--verify", "--save", str(target), "--jwks", str(keys))
    assert (saved["revision"], saved["prompts"]) == (1, 2)
    assert target.is_file()


def test_a_failing_verification_writes_nothing(logged_in, project, tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps(KeySet.generate().public_jwks()))
    target = tmp_path / "out" / "bootstrap.json"
    target.parent.mkdir()

    result = logged_in("config", "staging", "--save", str(target), "--jwks", str(other))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: revision verification failed")
    assert len(result.stderr.splitlines()) == 1
    assert result.stdout == ""
    assert os.listdir(target.parent) == []

    # An earlier bootstrap file stays as it was.
    target.write_bytes(b"earlier")
    assert logged_in("config", "staging", "--save", str(target), "--jwks", str(other)).exit_code == 1
    assert target.read_bytes() == b"earlier"
    assert os.listdir(target.parent) == ["bootstrap.json"]


def test_a_path_that_cannot_be_a_file_is_refused_before_anything_is_fetched(logged_in, project, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for target, why in (
        (blocker / "bootstrap.json", "is not a directory"),
        (tmp_path / "missing" / "bootstrap.json", "is not a directory"),
        (tmp_path, "it is a directory"),
    ):
        result = logged_in("config", "staging", "--save", str(target))
        assert result.exit_code == 2, result.stderr
        assert result.stderr.startswith(f"error: cannot save to {target}: ")
        assert why in result.stderr
        assert len(result.stderr.splitlines()) == 1
    assert os.listdir(tmp_path) == ["a-file"]


@pytest.mark.parametrize(
    ("call", "failure"),
    [
        ("mkstemp", PermissionError(errno.EACCES, "Permission denied")),  # an unwritable directory
        ("fsync", OSError(errno.ENOSPC, "No space left on device")),  # the disk fills up mid-write
        ("replace", OSError(errno.EIO, "Input/output error")),  # the rename fails
    ],
)
def test_a_failing_write_exits_1_with_one_line_and_leaves_no_partial_file(
    logged_in, project, tmp_path, monkeypatch, call, failure
):
    import tempfile

    def fail(*args, **kwargs):
        raise failure

    target = tmp_path / "bootstrap.json"
    target.write_bytes(b"earlier")
    monkeypatch.setattr(tempfile if call == "mkstemp" else os, call, fail)
    result = logged_in("config", "staging", "--save", str(target))
    monkeypatch.undo()

    assert result.exit_code == 1
    assert result.stderr == f"error: cannot save to {target}: {failure.strerror}\n"
    assert result.stdout == ""
    assert os.listdir(tmp_path) == ["bootstrap.json"]  # the temporary file is gone
    assert target.read_bytes() == b"earlier"


def test_jwks_alone_is_still_refused(logged_in, project, tmp_path):
    result = logged_in("config", "staging", "--jwks", str(tmp_path / "jwks.json"))
    assert result.exit_code == 2
    assert result.stderr == "error: --jwks goes with --verify or --save\n"


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
