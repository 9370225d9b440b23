"""The golden messages of docs/push-protocol.md (tests/contract/push): read and written byte for
byte, valid for their schemas, and real signed revisions. These tests only read the files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from anvil_wire import KeySet, public_keys_from_jwks
from anvil_wire.push import (
    Ack,
    Delta,
    Hello,
    Nack,
    PromptSetScope,
    PushRefused,
    Resync,
    Snapshot,
    Welcome,
    encode,
    make_delta,
    make_snapshot,
    message_schema,
    narrow_document,
    parse_client_message,
    parse_server_message,
    rebuild_document,
    unverified_manifest,
    verify_message,
    verify_pushed,
)

GOLDEN = Path(__file__).resolve().parents[3] / "tests" / "contract" / "push"
CLIENT_FILES = {"hello": Hello, "hello-minimal": Hello, "ack": Ack, "nack": Nack, "resync": Resync}
SERVER_FILES = {
    "welcome": Welcome,
    "welcome-no-revision": Welcome,
    "snapshot": Snapshot,
    "snapshot-prompt-set": Snapshot,
    "delta": Delta,
}


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def server(name: str) -> Any:
    message = parse_server_message(golden(f"{name}.json"))
    assert isinstance(message, SERVER_FILES[name])
    return message


@pytest.fixture(scope="module")
def keys():
    return public_keys_from_jwks(json.loads(golden("keys.jwks.json")))


def sums() -> dict[str, str]:
    lines = golden("SHA256SUMS").decode("ascii").splitlines()
    return {name: digest for digest, name in (line.split("  ", 1) for line in lines)}


# --- the files themselves ------------------------------------------------------------------------


def test_every_golden_file_matches_its_sha256sum():
    for name, digest in sums().items():
        assert hashlib.sha256(golden(name)).hexdigest() == digest, f"{name} changed"


def test_every_golden_file_is_listed_in_sha256sums():
    present = {path.name for path in GOLDEN.iterdir()} - {"SHA256SUMS"}
    expected = {f"{name}.json" for name in (*CLIENT_FILES, *SERVER_FILES)} | {"keys.jwks.json", "README.md"}
    assert present == expected
    assert set(sums()) == present


# --- read and written byte for byte --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CLIENT_FILES))
def test_a_client_golden_reads_and_writes_byte_for_byte(name: str):
    data = golden(f"{name}.json")
    message = parse_client_message(data)
    assert isinstance(message, CLIENT_FILES[name])
    assert encode(message) == data
    assert parse_client_message(data.decode("utf-8")) == message


@pytest.mark.parametrize("name", sorted(SERVER_FILES))
def test_a_server_golden_reads_and_writes_byte_for_byte(name: str):
    data = golden(f"{name}.json")
    message = server(name)
    assert encode(message) == data
    assert parse_server_message(data.decode("utf-8")) == message


@pytest.mark.parametrize("name", sorted({**CLIENT_FILES, **SERVER_FILES}))
def test_a_golden_is_valid_for_its_schema_only(name: str):
    doc = json.loads(golden(f"{name}.json"))
    kinds = ("hello", "ack", "nack", "resync", "welcome", "snapshot", "delta")
    valid = {kind for kind in kinds if Draft202012Validator(message_schema(kind)).is_valid(doc)}
    assert valid == {doc["type"]}


def test_the_minimal_hello_has_no_labels_no_prompt_set_and_holds_nothing():
    hello = parse_client_message(golden("hello-minimal.json"))
    assert isinstance(hello, Hello)
    assert (hello.labels, hello.subscription.prompt_set, hello.holds) == ({}, None, None)


def test_the_goldens_tell_one_story():
    hello = parse_client_message(golden("hello.json"))
    ack, nack = parse_client_message(golden("ack.json")), parse_client_message(golden("nack.json"))
    welcome, snapshot, delta = server("welcome"), server("snapshot"), server("delta")
    assert isinstance(hello, Hello)
    assert hello.holds is not None
    assert hello.holds == type(hello.holds)(
        snapshot.environment_id, snapshot.revision, snapshot.manifest_digest
    )
    assert welcome.environment_id == snapshot.environment_id == delta.environment_id
    assert welcome.current is not None
    assert (welcome.current.revision, welcome.current.manifest_digest) == (
        delta.revision,
        delta.manifest_digest,
    )
    assert server("welcome-no-revision").current is None
    assert delta.base_revision == snapshot.revision
    assert ack == Ack.of(delta)
    assert isinstance(nack, Nack)
    assert nack == Nack.of(delta, nack.code, nack.detail)


# --- real signed revisions -----------------------------------------------------------------------


def test_the_snapshot_verifies_with_the_published_keys(keys):
    snapshot = server("snapshot")
    verified = verify_pushed(
        snapshot.document,
        keys,
        environment_id=snapshot.environment_id,
        prompts=None,
        expected=(snapshot.revision, snapshot.manifest_digest),
    )
    assert verified.manifest.revision == 7
    assert sorted(verified.manifest.prompts) == ["farewell", "greeting", "support/triage"]
    assert list(verified.manifest.dependencies) == ["shared:footer@2"]
    assert verified.render("greeting", {"name": "Ada"}) == "Hello Ada!\nQuestions? Reply to this message."


def test_the_prompt_set_snapshot_is_the_snapshot_narrowed_and_verifies(keys):
    whole, narrowed = server("snapshot"), server("snapshot-prompt-set")
    manifest = unverified_manifest(whole.document["manifest"])
    assert narrowed.prompt_set == PromptSetScope("checkout", ("farewell", "greeting"))
    assert len(narrowed.document["contents"]) == 3 < len(whole.document["contents"]) == 4
    assert manifest.prompts["support/triage"].digest not in narrowed.document["contents"]
    assert narrowed.document == narrow_document(whole.document, manifest, ["farewell", "greeting"])
    assert narrowed == make_snapshot(whole.document, manifest, prompt_set=narrowed.prompt_set)
    verified = verify_message(narrowed, keys, environment_id=whole.environment_id, prompt_set="checkout")
    assert verified.render("greeting", {"name": "Ada"}) == "Hello Ada!\nQuestions? Reply to this message."


def test_the_delta_rebuilds_from_the_snapshot_into_revision_8_which_verifies(keys):
    snapshot, delta = server("snapshot"), server("delta")
    base = unverified_manifest(snapshot.document["manifest"])
    document = rebuild_document(delta, snapshot.revision, snapshot.document["contents"], None)
    verified = verify_pushed(
        document,
        keys,
        environment_id=delta.environment_id,
        prompts=None,
        expected=(delta.revision, delta.manifest_digest),
    )
    assert verified.manifest.revision == 8
    assert sorted(verified.manifest.prompts) == ["farewell", "greeting", "onboarding/welcome"]
    assert delta.removed == ("support/triage",)
    assert verified.render("farewell", {"name": "Ada"}) == "Goodbye, Ada. See you soon!"
    assert delta == make_delta(
        snapshot.document["contents"],
        snapshot.revision,
        base.prompts,
        document,
        verified.manifest,
        environment_id=delta.environment_id,
        prompt_set=None,
    )


def test_a_golden_revision_does_not_verify_with_other_keys():
    snapshot = server("snapshot")
    with pytest.raises(PushRefused) as caught:
        verify_message(snapshot, KeySet.generate().public_keys(), environment_id=snapshot.environment_id)
    assert caught.value.code == "bad-signature"
