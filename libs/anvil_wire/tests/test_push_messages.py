"""Push protocol messages (docs/push-protocol.md section 2): encoding, reading, and a corpus of
invalid messages that the parser and the JSON Schemas both refuse."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from anvil_wire import canonical_json
from anvil_wire.push import (
    BEARER_PREFIX,
    CLIENT_BUG_CODES,
    NACK_CODES,
    PERSON_CODES,
    RECONNECT_CODES,
    SUBPROTOCOL,
    Ack,
    CloseCode,
    Current,
    Delta,
    Hello,
    Holds,
    Nack,
    PromptSetScope,
    ProtocolError,
    Resync,
    Sdk,
    Snapshot,
    Subscription,
    Welcome,
    encode,
    message_schema,
    parse_client_message,
    parse_server_message,
    should_reconnect,
)

DOC = (Path(__file__).resolve().parents[3] / "docs" / "push-protocol.md").read_text(encoding="utf-8")
ENV = "e628f1b3-0242-4e58-a186-e7cf92b75c90"
CLIENT = "eedd3430-78fa-41d1-ae03-c06dc4ce0df4"
SESSION = "0b7d5c1e-2f43-4d8e-8a41-5b0e5b9c7a21"
DIGEST = "sha256:" + "a" * 64
OTHER_DIGEST = "sha256:" + "b" * 64
KINDS = ("hello", "ack", "nack", "resync", "welcome", "snapshot", "delta")

HELLO = Hello(
    client_id=CLIENT,
    sdk=Sdk("anvil-python-runtime", "0.1.0"),
    subscription=Subscription("acme", "web", "prod", "checkout"),
    holds=Holds(ENV, 7, DIGEST),
    labels={"app": "checkout-web", "k8s.io/pod": "web-1"},
)
ACK = Ack(ENV, 8, DIGEST)
NACK = Nack(ENV, 8, DIGEST, code="invalid-prompt", detail="prompt 'farewell' uses an undeclared variable")
WELCOME = Welcome(
    session=SESSION,
    environment_id=ENV,
    environment_name="prod",
    current=Current(8, DIGEST),
    heartbeat_seconds=20,
    max_message_bytes=65536,
)
DOCUMENT = {"format": "anvil.revision.v1", "manifest": "h.p.s", "contents": {DIGEST: {"template": "Hi"}}}
SNAPSHOT = Snapshot(
    environment_id=ENV,
    revision=8,
    manifest_digest=DIGEST,
    prompt_set=PromptSetScope("checkout", ("farewell", "greeting")),
    document=DOCUMENT,
)
DELTA = Delta(
    environment_id=ENV,
    revision=8,
    manifest_digest=DIGEST,
    base_revision=7,
    manifest="h.p.s",
    contents={OTHER_DIGEST: {"template": "Bye"}},
    removed=("support/triage",),
)
MESSAGES = {"hello": HELLO, "ack": ACK, "nack": NACK, "resync": Resync()}
MESSAGES |= {"welcome": WELCOME, "snapshot": SNAPSHOT, "delta": DELTA}
CLIENT_KINDS = {"hello", "ack", "nack", "resync"}


def parse(kind: str, data: str | bytes) -> Any:
    return parse_client_message(data) if kind in CLIENT_KINDS else parse_server_message(data)


def valid_for_schema(kind: str, doc: Any) -> bool:
    return bool(Draft202012Validator(message_schema(kind)).is_valid(doc))


# --- names and codes -----------------------------------------------------------------------------


def _table_rows(header: str) -> list[list[str]]:
    """The body rows of the markdown table whose header line starts with ``header``."""
    lines = DOC.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_the_subprotocol_and_bearer_prefix_are_the_documented_ones():
    assert SUBPROTOCOL == "anvil.push.v1"
    assert BEARER_PREFIX == "anvil.bearer."
    assert f"`{SUBPROTOCOL}`" in DOC
    assert f"`{BEARER_PREFIX}<token>`" in DOC


def test_close_codes_match_the_documented_table():
    rows = _table_rows("| code | name | meaning | client reconnects |")
    documented = {int(row[0]): re.sub(r"[- ]", "_", row[1]).upper() for row in rows}
    assert documented == {code.value: code.name for code in CloseCode}


def test_reconnect_codes_are_the_table_rows_that_say_yes():
    rows = _table_rows("| code | name | meaning | client reconnects |")
    assert {int(row[0]) for row in rows if row[3].startswith("yes")} == RECONNECT_CODES
    assert {int(row[0]) for row in rows if row[3] == "no: a client bug"} == CLIENT_BUG_CODES
    assert set(CloseCode) == RECONNECT_CODES | CLIENT_BUG_CODES | PERSON_CODES
    assert not RECONNECT_CODES & (CLIENT_BUG_CODES | PERSON_CODES)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        *[(1000, True), (1006, True), (1012, True), (4001, True), (4007, True), (4999, True), (None, True)],
        *[(1009, False), (4000, False), (4002, False), (4003, False), (4004, False), (4005, False)],
    ],
)
def test_should_reconnect_follows_section_5_1(code: int | None, expected: bool):
    assert should_reconnect(code) is expected


def test_nack_codes_match_the_documented_table():
    rows = _table_rows("| `reason.code` |")
    assert {row[0].strip("`") for row in rows} == NACK_CODES


# --- encoding and reading ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_message_survives_encode_and_parse(kind: str):
    message = MESSAGES[kind]
    data = encode(message)
    assert data == canonical_json(json.loads(data))
    assert parse(kind, data) == message
    assert parse(kind, data.decode()) == message
    assert json.loads(data)["type"] == kind == message.type


@pytest.mark.parametrize("kind", KINDS)
def test_what_encode_writes_fits_the_schema(kind: str):
    assert valid_for_schema(kind, json.loads(encode(MESSAGES[kind])))


def test_a_reader_accepts_whitespace_member_order_and_unknown_members():
    doc = json.loads(encode(HELLO))
    doc["future"] = {"anything": [1, 2]}
    doc["subscription"]["region"] = "eu"
    text = json.dumps(dict(reversed(list(doc.items()))), indent=3)
    assert valid_for_schema("hello", json.loads(text))
    assert parse_client_message(text) == HELLO
    assert encode(parse_client_message(text)) == encode(HELLO)


def test_an_integral_number_reads_as_an_integer_as_json_schema_says():
    doc = json.loads(encode(ACK)) | {"revision": 8.0}
    assert valid_for_schema("ack", doc)
    ack = parse_client_message(json.dumps(doc))
    assert ack == ACK
    assert type(ack.revision) is int
    assert encode(ack) == encode(ACK)


def test_unsorted_prompt_names_are_read_and_written_sorted():
    doc = json.loads(encode(DELTA))
    doc["removed"] = ["z", "a"]
    doc["prompt_set"] = {"name": "checkout", "prompts": ["greeting", "farewell"]}
    assert valid_for_schema("delta", doc)
    delta = parse_server_message(json.dumps(doc))
    assert isinstance(delta, Delta)
    assert delta.removed == ("a", "z")
    assert delta.prompt_set == PromptSetScope("checkout", ("farewell", "greeting"))
    assert json.loads(encode(delta))["removed"] == ["a", "z"]


def test_a_client_ignores_a_server_message_of_an_unknown_type():
    assert parse_server_message('{"type": "fleet-hint", "text": "hi"}') is None
    assert parse_server_message('{"type": "hello"}') is None


def test_a_gateway_refuses_a_client_message_of_an_unknown_type():
    with pytest.raises(ProtocolError) as caught:
        parse_client_message('{"type": "welcome"}')
    assert str(caught.value) == "unknown client message type 'welcome'"
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(json.dumps({"type": "x" * 1000}))
    assert str(caught.value) == f"unknown client message type {'x' * 40!r}"


def test_a_snapshot_encodes_its_document_without_copying_it():
    assert SNAPSHOT.to_json()["document"] is SNAPSHOT.document
    assert encode(SNAPSHOT).endswith(b',"revision":8,"type":"snapshot"}')


def test_a_hello_without_holds_labels_or_prompt_set_encodes_nulls_and_an_empty_object():
    hello = Hello(client_id=CLIENT, sdk=Sdk("sdk", "1"), subscription=Subscription("acme", "web", "prod"))
    doc = json.loads(encode(hello))
    assert doc["holds"] is None
    assert doc["labels"] == {}
    assert doc["subscription"]["prompt_set"] is None


def test_ack_and_nack_of_a_message_take_its_members():
    assert Ack.of(DELTA) == Ack(ENV, 8, DIGEST)
    nack = Nack.of(SNAPSHOT, "digest-mismatch", "x" * 5000)
    assert (nack.environment_id, nack.revision, nack.manifest_digest) == (ENV, 8, DIGEST)
    assert nack.code == "digest-mismatch"
    assert nack.detail == "x" * 1000


def test_constructing_an_invalid_message_names_the_member():
    with pytest.raises(ProtocolError) as caught:
        Nack(ENV, 8, DIGEST, code="invalid-prompt", detail="x" * 1001)
    assert str(caught.value) == "reason.detail must be a string of 0 to 1000 characters"
    with pytest.raises(ProtocolError) as caught:
        Nack(ENV, 8, DIGEST, code="nope")
    assert str(caught.value) == "reason.code must be one of " + ", ".join(sorted(NACK_CODES))
    with pytest.raises(ProtocolError) as caught:
        PromptSetScope("checkout", ("a", "a"))
    assert str(caught.value) == "prompt_set.prompts must be an array of distinct prompt names"


def test_prompt_set_scope_serves_the_members_the_revision_serves():
    scope = PromptSetScope.serving(
        "checkout", ["greeting", "gone", "farewell"], {"farewell": 1, "greeting": 2}
    )
    assert scope == PromptSetScope("checkout", ("farewell", "greeting"))


def test_message_schema_returns_a_fresh_copy_and_knows_only_message_types():
    schema = message_schema("ack")
    schema["required"].clear()
    assert message_schema("ack")["required"] == ["type", "environment_id", "revision", "manifest_digest"]
    with pytest.raises(KeyError):
        message_schema("keys")


def test_the_schemas_share_one_definition_of_each_common_form():
    seen: dict[str, Any] = {}
    for kind in KINDS:
        schema = message_schema(kind)
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["properties"]["type"] == {"const": kind}
        for name, definition in schema.get("$defs", {}).items():
            assert seen.setdefault(name, definition) == definition, name


# --- what is not a message -----------------------------------------------------------------------

NOT_MESSAGES = [
    (b"\xff\xfe{}", "message is not UTF-8 text"),
    ("{", "message is not JSON"),
    ("", "message is not JSON"),
    ('\ufeff{"type": "resync"}', "message is not JSON"),
    ('{"type": "ack", "revision": NaN}', "message is not JSON"),
    ('{"type": "ack", "revision": -Infinity}', "message is not JSON"),
    ('{"type": "ack", "revision": 1e999}', "message is not JSON"),
    ("[" * 100_000 + "]" * 100_000, "message is not JSON"),
    ('{"type": "resync", "note": "\\udc00"}', "message is not JSON (a string holds a lone surrogate)"),
    ('{"type": "resync", "\\ud800": 1}', "message is not JSON (a string holds a lone surrogate)"),
    ('{"type": "resync", "note": "\udc00"}', "message is not JSON (a string holds a lone surrogate)"),
    ('[{"type": "resync"}]', "message must be a JSON object"),
    ('"resync"', "message must be a JSON object"),
    ('{"kind": "resync"}', "message must have a string member 'type'"),
    ('{"type": null}', "message must have a string member 'type'"),
]


@pytest.mark.parametrize(("data", "error"), NOT_MESSAGES)
def test_text_that_is_not_a_message_is_a_protocol_error(data: str | bytes, error: str):
    for read in (parse_client_message, parse_server_message):
        with pytest.raises(ProtocolError) as caught:
            read(data)
        assert str(caught.value) == error


def test_a_surrogate_pair_escape_is_valid_text():
    assert parse_client_message('{"type": "resync", "note": "\\ud83d\\ude00"}') == Resync()


# --- invalid messages: the parser and the schemas agree ------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def put(path: str, value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for part in parents:
            doc = doc[part]
        doc[last] = value

    return mutate


def drop(path: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for part in parents:
            doc = doc[part]
        del doc[last]

    return mutate


UUID_ERROR = "must be a lowercase hyphenated uuid"
DIGEST_ERROR = "must be 'sha256:' and 64 lowercase hex digits"
REVISION_ERROR = "must be a revision number (an integer from 1 to 2^53-1)"
LABEL_KEY_ERROR = "must be an object whose keys are 1 to 63 characters of a-z 0-9 . _ - /"
CONTENTS_ERROR = "must be an object mapping digests to content objects"
DOCUMENT_ERROR = "must be an object with exactly format, manifest and contents"

INVALID = [
    ("hello", drop("client_id"), "hello: client_id is missing"),
    ("hello", put("client_id", CLIENT.upper()), f"hello: client_id {UUID_ERROR}"),
    ("hello", put("client_id", CLIENT.replace("-", "")), f"hello: client_id {UUID_ERROR}"),
    ("hello", put("client_id", 7), f"hello: client_id {UUID_ERROR}"),
    ("hello", drop("sdk"), "hello: sdk is missing"),
    ("hello", put("sdk", "anvil 1.0"), "hello: sdk must be an object"),
    ("hello", drop("sdk.version"), "hello: sdk.version is missing"),
    ("hello", put("sdk.name", ""), "hello: sdk.name must be a string of 1 to 64 characters"),
    ("hello", put("sdk.version", "1" * 65), "hello: sdk.version must be a string of 1 to 64 characters"),
    ("hello", drop("labels"), "hello: labels is missing"),
    ("hello", put("labels", ["app"]), "hello: labels must be an object"),
    (
        "hello",
        put("labels", {f"k{i}": "v" for i in range(17)}),
        "hello: labels must be an object of at most 16 labels",
    ),
    ("hello", put("labels.App", "x"), f"hello: labels {LABEL_KEY_ERROR}"),
    ("hello", put("labels.", "x"), f"hello: labels {LABEL_KEY_ERROR}"),
    ("hello", put("labels", {"a" * 64: "x"}), f"hello: labels {LABEL_KEY_ERROR}"),
    ("hello", put("labels", {"a b": "x"}), f"hello: labels {LABEL_KEY_ERROR}"),
    (
        "hello",
        put("labels.app", "x" * 257),
        "hello: labels must be an object of strings of at most 256 characters",
    ),
    ("hello", put("labels.app", 1), "hello: labels must be an object of strings of at most 256 characters"),
    ("hello", drop("subscription"), "hello: subscription is missing"),
    ("hello", put("subscription", None), "hello: subscription must be an object"),
    ("hello", put("subscription.organisation", "Acme"), "hello: subscription.organisation must be a slug"),
    ("hello", put("subscription.project", "1web"), "hello: subscription.project must be a slug"),
    ("hello", drop("subscription.environment"), "hello: subscription.environment is missing"),
    ("hello", drop("subscription.prompt_set"), "hello: subscription.prompt_set is missing"),
    (
        "hello",
        put("subscription.prompt_set", "Check Out"),
        "hello: subscription.prompt_set must be a prompt name",
    ),
    ("hello", put("subscription.prompt_set", 5), "hello: subscription.prompt_set must be a prompt name"),
    ("hello", drop("holds"), "hello: holds is missing"),
    ("hello", put("holds", 7), "hello: holds must be an object"),
    ("hello", drop("holds.environment_id"), "hello: holds.environment_id is missing"),
    ("hello", put("holds.revision", 0), f"hello: holds.revision {REVISION_ERROR}"),
    ("hello", put("holds.revision", 2**53), f"hello: holds.revision {REVISION_ERROR}"),
    ("hello", put("holds.revision", 1.5), f"hello: holds.revision {REVISION_ERROR}"),
    ("hello", put("holds.revision", True), f"hello: holds.revision {REVISION_ERROR}"),
    ("hello", put("holds.revision", "7"), f"hello: holds.revision {REVISION_ERROR}"),
    ("hello", put("holds.manifest_digest", DIGEST.upper()), f"hello: holds.manifest_digest {DIGEST_ERROR}"),
    (
        "hello",
        put("holds.manifest_digest", "sha1:" + "a" * 40),
        f"hello: holds.manifest_digest {DIGEST_ERROR}",
    ),
    ("ack", drop("revision"), "ack: revision is missing"),
    ("ack", put("revision", -1), f"ack: revision {REVISION_ERROR}"),
    ("ack", put("environment_id", "prod"), f"ack: environment_id {UUID_ERROR}"),
    ("ack", put("manifest_digest", DIGEST[:-1]), f"ack: manifest_digest {DIGEST_ERROR}"),
    ("ack", put("manifest_digest", None), f"ack: manifest_digest {DIGEST_ERROR}"),
    ("nack", drop("reason"), "nack: reason is missing"),
    ("nack", put("reason", "rollback"), "nack: reason must be an object"),
    ("nack", drop("reason.code"), "nack: reason.code is missing"),
    (
        "nack",
        put("reason.code", "Rollback"),
        "nack: reason.code must be one of " + ", ".join(sorted(NACK_CODES)),
    ),
    (
        "nack",
        put("reason.code", ["rollback"]),
        "nack: reason.code must be one of " + ", ".join(sorted(NACK_CODES)),
    ),
    ("nack", drop("reason.detail"), "nack: reason.detail is missing"),
    ("nack", put("reason.detail", None), "nack: reason.detail must be a string of 0 to 1000 characters"),
    (
        "nack",
        put("reason.detail", "x" * 1001),
        "nack: reason.detail must be a string of 0 to 1000 characters",
    ),
    ("nack", put("revision", 0), f"nack: revision {REVISION_ERROR}"),
    ("welcome", drop("session"), "welcome: session is missing"),
    ("welcome", put("session", "s-1"), f"welcome: session {UUID_ERROR}"),
    ("welcome", drop("environment"), "welcome: environment is missing"),
    ("welcome", put("environment", ENV), "welcome: environment must be an object"),
    ("welcome", drop("environment.name"), "welcome: environment.name is missing"),
    ("welcome", put("environment.id", ENV.upper()), f"welcome: environment.id {UUID_ERROR}"),
    ("welcome", put("environment.name", "Prod"), "welcome: environment.name must be a slug"),
    ("welcome", drop("current"), "welcome: current is missing"),
    ("welcome", put("current", 8), "welcome: current must be an object"),
    ("welcome", put("current.revision", 0), f"welcome: current.revision {REVISION_ERROR}"),
    ("welcome", drop("current.manifest_digest"), "welcome: current.manifest_digest is missing"),
    ("welcome", put("heartbeat_seconds", 0), "welcome: heartbeat_seconds must be a number above 0"),
    ("welcome", put("heartbeat_seconds", -20), "welcome: heartbeat_seconds must be a number above 0"),
    ("welcome", put("heartbeat_seconds", "20"), "welcome: heartbeat_seconds must be a number above 0"),
    ("welcome", put("heartbeat_seconds", True), "welcome: heartbeat_seconds must be a number above 0"),
    ("welcome", drop("max_message_bytes"), "welcome: max_message_bytes is missing"),
    (
        "welcome",
        put("max_message_bytes", 0),
        "welcome: max_message_bytes must be an integer from 1 to 2^53-1",
    ),
    (
        "welcome",
        put("max_message_bytes", 1.5),
        "welcome: max_message_bytes must be an integer from 1 to 2^53-1",
    ),
    ("snapshot", drop("environment_id"), "snapshot: environment_id is missing"),
    ("snapshot", put("revision", None), f"snapshot: revision {REVISION_ERROR}"),
    ("snapshot", drop("prompt_set"), "snapshot: prompt_set is missing"),
    ("snapshot", put("prompt_set", "checkout"), "snapshot: prompt_set must be an object"),
    ("snapshot", drop("prompt_set.name"), "snapshot: prompt_set.name is missing"),
    ("snapshot", put("prompt_set.name", "Checkout"), "snapshot: prompt_set.name must be a prompt name"),
    ("snapshot", drop("prompt_set.prompts"), "snapshot: prompt_set.prompts is missing"),
    (
        "snapshot",
        put("prompt_set.prompts", ["greeting", "greeting"]),
        "snapshot: prompt_set.prompts must be an array of distinct prompt names",
    ),
    (
        "snapshot",
        put("prompt_set.prompts", ["Greeting"]),
        "snapshot: prompt_set.prompts must be an array of prompt names",
    ),
    (
        "snapshot",
        put("prompt_set.prompts", {"greeting": 1}),
        "snapshot: prompt_set.prompts must be an array of prompt names",
    ),
    (
        "snapshot",
        put("prompt_set.prompts", "greeting"),
        "snapshot: prompt_set.prompts must be an array of prompt names",
    ),
    ("snapshot", drop("document"), "snapshot: document is missing"),
    ("snapshot", put("document", "{}"), "snapshot: document must be an object"),
    ("snapshot", put("document.signature", "x"), f"snapshot: document {DOCUMENT_ERROR}"),
    ("snapshot", drop("document.contents"), f"snapshot: document {DOCUMENT_ERROR}"),
    (
        "snapshot",
        put("document.format", "anvil.revision.v2"),
        "snapshot: document.format must be 'anvil.revision.v1'",
    ),
    (
        "snapshot",
        put("document.manifest", {"alg": "none"}),
        "snapshot: document.manifest must be a string (a compact JWS)",
    ),
    ("snapshot", put("document.contents", []), "snapshot: document.contents must be an object"),
    ("snapshot", put("document.contents", {"greeting": {}}), f"snapshot: document.contents {CONTENTS_ERROR}"),
    ("snapshot", put(f"document.contents.{DIGEST}", "Hi"), f"snapshot: document.contents {CONTENTS_ERROR}"),
    ("delta", drop("base_revision"), "delta: base_revision is missing"),
    ("delta", put("base_revision", 0), f"delta: base_revision {REVISION_ERROR}"),
    ("delta", drop("manifest"), "delta: manifest is missing"),
    ("delta", put("manifest", None), "delta: manifest must be a string (a compact JWS)"),
    ("delta", drop("contents"), "delta: contents is missing"),
    ("delta", put("contents", None), "delta: contents must be an object"),
    ("delta", put("contents", {"sha256:00": {}}), f"delta: contents {CONTENTS_ERROR}"),
    ("delta", drop("removed"), "delta: removed is missing"),
    ("delta", put("removed", "support/triage"), "delta: removed must be an array of prompt names"),
    ("delta", put("removed", ["a", "a"]), "delta: removed must be an array of distinct prompt names"),
    ("delta", put("removed", ["/a"]), "delta: removed must be an array of prompt names"),
    ("delta", put("manifest_digest", "sha256:"), f"delta: manifest_digest {DIGEST_ERROR}"),
]


@pytest.mark.parametrize(
    ("kind", "mutate", "error"), INVALID, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(INVALID)]
)
def test_an_invalid_message_is_refused_by_the_parser_and_its_schema(kind: str, mutate: Mutation, error: str):
    doc = copy.deepcopy(json.loads(encode(MESSAGES[kind])))
    mutate(doc)
    assert not valid_for_schema(kind, doc)
    with pytest.raises(ProtocolError) as caught:
        parse(kind, json.dumps(doc))
    assert str(caught.value) == error


@pytest.mark.parametrize("kind", KINDS)
def test_a_message_of_another_type_fails_the_schema_and_reads_as_that_type(kind: str):
    doc = json.loads(encode(MESSAGES[kind])) | {"type": kind.upper()}
    assert not valid_for_schema(kind, doc)
    if kind in CLIENT_KINDS:
        with pytest.raises(ProtocolError) as caught:
            parse_client_message(json.dumps(doc))
        assert str(caught.value) == f"unknown client message type {kind.upper()!r}"
    else:
        assert parse_server_message(json.dumps(doc)) is None


def test_from_json_refuses_a_document_of_another_type():
    with pytest.raises(ProtocolError) as caught:
        Ack.from_json(json.loads(encode(NACK)))
    assert str(caught.value) == "expected a message of type 'ack'"
