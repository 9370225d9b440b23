"""The fast canonical encoder must write exactly what the reference RFC 8785 encoder writes."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from anvil_wire.bundles import BundleMalformed, assemble_manifest, parse_plain, parse_plain_spliced
from anvil_wire.bundles.fastjson import canonical_bytes, parse_canonical, plain_bytes
from anvil_wire.canonical import _plain
from anvil_wire.canonical import canonical_json_reference as canonical_json

ALPHABET = 'az AZ09"\\/\b\f\n\r\t\x00\x1f\x7f é€ \u2028 \ud7ff \ue000 \uffff 😀 𝄞'
FLOATS = [
    0.1,
    1e-7,
    1.5e-5,
    1e-4,
    0.5,
    1.0,
    2.5,
    1e15,
    1e16,
    123456789.125,
    1e21,
    1e22,
    5e-324,
    1.7976931348623157e308,
]


def random_string(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(6)))


def random_number(rng: random.Random) -> int | float:
    pick = rng.randrange(4)
    if pick == 0:
        return rng.choice([0, 1, -1, 2**53 - 1, -(2**53 - 1), 2**53, 2**64, 10**16])
    if pick == 1:
        return rng.randrange(-(10**6), 10**6)
    if pick == 2:
        return rng.choice(FLOATS) * rng.choice([1, -1])
    return rng.uniform(-1e6, 1e6) * 10 ** rng.randrange(-10, 25)


def random_value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(9 if depth < 4 else 6)
    if pick == 0:
        return rng.choice([None, True, False])
    if pick in (1, 2, 3):
        return random_string(rng)
    if pick in (4, 5):
        return random_number(rng)
    if pick in (6, 7):
        return {random_string(rng): random_value(rng, depth + 1) for _ in range(rng.randrange(5))}
    return [random_value(rng, depth + 1) for _ in range(rng.randrange(5))]


def reference(value: Any) -> bytes | type[Exception]:
    try:
        return canonical_json(value)
    except (TypeError, ValueError) as exc:
        return type(exc)


def fast(value: Any) -> bytes | type[Exception]:
    try:
        return canonical_bytes(value)
    except (TypeError, ValueError) as exc:
        return type(exc)


@pytest.mark.parametrize("seed", range(8))
def test_canonical_bytes_agrees_with_the_reference_encoder(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(400):
        value = random_value(rng)
        assert fast(value) == reference(value), value


@pytest.mark.parametrize(
    "value",
    [
        {"\ue000": 1, "😀": 2},  # UTF-16 order differs from code point order
        {"b": 1, "a": {"\uffff": [], "𝄞": None}},
        [1.0, -0.0, 1e21, 1e-7, 2.5e-5, 0.1],
        [2**53 - 1, -(2**53 - 1)],
        {"tuple": (1, 2), "subclass": type("D", (dict,), {})(a=1)},
        "\u2028\u2029\x7f\x1f",
    ],
)
def test_values_off_the_fast_path_still_encode_canonically(value: Any) -> None:
    assert canonical_bytes(value) == canonical_json(value)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (2**53, ValueError),
        ({1: "a"}, TypeError),
        ({"a": {None: 1}}, TypeError),
        ({"a": b"bytes"}, TypeError),
        ({"set": {1}}, TypeError),
    ],
)
def test_what_canonical_json_refuses_is_refused(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        canonical_bytes(value)


def test_plain_bytes_of_a_validated_manifest_are_canonical(
    snapshot: dict[str, Any], exporter: dict[str, str]
) -> None:
    manifest, _ = assemble_manifest(snapshot, exporter=exporter)
    assert plain_bytes(manifest) == canonical_json(manifest)


@pytest.mark.parametrize(
    "text",
    [
        b'{"a":1}',
        b'{"a":[1,2.5,"x",null,true,false],"b":{}}',
        '{"é":"\u2028","😀":"\\u001f"}'.encode(),
        b'"\\"\\\\"',
    ],
)
def test_parse_canonical_accepts_canonical_json(text: bytes) -> None:
    assert canonical_json(parse_canonical(text, "it")) == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (b'{"a": 1}', "not canonical JSON"),
        (b'{"b":1,"a":2}', "not canonical JSON"),
        (b'{"a":1,"a":1}', "not canonical JSON"),
        (b"[1.0]", "not canonical JSON"),
        (b"[1E2]", "not canonical JSON"),
        (b'["\\u0041"]', "not canonical JSON"),
        (b'["\\/"]', "not canonical JSON"),
        (b"[NaN]", "not canonical JSON"),
        (b"[9007199254740992]", "not canonical JSON"),
        (b'{"a":1}\n', "not canonical JSON"),
        (b"\xef\xbb\xbf{}", "not canonical JSON"),
        (b"{", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        ('{"a":1}'.encode("utf-16"), "not canonical JSON"),
    ],
)
def test_parse_canonical_refuses_anything_else(text: bytes, why: str) -> None:
    with pytest.raises(BundleMalformed, match=f"^it is {why}"):
        parse_canonical(text, "it")


@pytest.mark.parametrize("seed", range(6))
def test_parse_plain_parses_as_json_loads_and_says_plain_only_of_plain_values(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        value = random_value(rng)
        try:
            text = json.dumps(value, ensure_ascii=rng.random() < 0.3)
        except ValueError:
            continue
        parsed, plain = parse_plain(text.encode())
        assert json.dumps(parsed) == json.dumps(json.loads(text))
        if plain:
            assert _plain(parsed), text
            assert json.dumps(parsed, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode() == (
                canonical_json(parsed)
            )
        elif "\\" not in text and text.isascii():
            assert not _plain(parsed), text  # only an escape or a character from U+D800 is a false alarm


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "b": [2.5, "x", null, true]}',
        '{"é": "\u4e2d", "n": -9007199254740991}',
        "[]",
    ],
)
def test_parse_plain_says_plain(text: str) -> None:
    assert parse_plain(text.encode()) == (json.loads(text), True)


@pytest.mark.parametrize(
    "text",
    [
        '{"n": 9007199254740992}',
        '{"n": -9007199254740992}',
        '{"f": 1.0}',
        '{"f": 1e21}',
        '{"f": 1e-7}',
        '{"f": NaN}',
        '{"f": -Infinity}',
        '{"\ue000": 1}',
        '{"\U0001f600": 1}',
        '{"\\ue000": 1}',
        '{"k": "\\ud800"}',
    ],
)
def test_parse_plain_says_not_plain(text: str) -> None:
    value, plain = parse_plain(text.encode("utf-8", "surrogatepass"))
    assert not plain
    assert json.dumps(value) == json.dumps(json.loads(text.encode("utf-8", "surrogatepass")))


@pytest.mark.parametrize("data", [b"", b"{", b'{"a": 01}', b"\xff\xfe{", b'{"a": "\xff"}', b"\xef\xbb\xbf{}"])
def test_parse_plain_fails_as_json_loads(data: bytes) -> None:
    try:
        expected: Any = json.loads(data)
    except ValueError as exc:
        with pytest.raises(type(exc)):
            parse_plain(data)
    else:
        assert parse_plain(data)[0] == expected


@pytest.mark.parametrize("seed", range(4))
def test_parse_plain_spliced_parses_as_parse_plain_and_gives_each_members_text(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(200):
        members = {f"k{i}": random_value(rng) for i in range(rng.randrange(4))}
        outer = {"head": random_value(rng), "contents": members, "tail": random_value(rng)}
        try:
            text = json.dumps(outer, ensure_ascii=rng.random() < 0.3, indent=rng.choice([None, 1]))
        except ValueError:
            continue
        value, plain, texts = parse_plain_spliced(text.encode(), "contents")
        assert (value, plain) == parse_plain(text.encode())
        assert set(texts) == set(members)
        for key, raw in texts.items():
            assert json.dumps(json.loads(raw)) == json.dumps(members[key])
            assert raw in text


@pytest.mark.parametrize(
    ("text", "texts"),
    [
        ('{"contents": {"a": {"x": [1, 2]}, "b": "s"}}', {"a": '{"x": [1, 2]}', "b": '"s"'}),
        (' {"contents":{}} ', {}),
        ('{"contents": 5}', {}),  # not an object: nothing to splice
        ("[1, 2]", {}),
        ('{"contents": {"a": 1}, "contents": {"b": 2}}', {"b": "2"}),  # the last one counts
        ('{"other": {"a": 1}}', {}),
    ],
)
def test_parse_plain_spliced_texts(text: str, texts: dict[str, str]) -> None:
    assert parse_plain_spliced(text, "contents") == (*parse_plain(text), texts)


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b'{"contents": {"a": 01}}', b'{"contents": {"a": 1}} x', b"\xef\xbb\xbf{}", b'{"a" 1}'],
)
def test_parse_plain_spliced_fails_as_json_loads(data: bytes) -> None:
    try:
        expected: Any = json.loads(data)
    except ValueError as exc:
        with pytest.raises(type(exc)):
            parse_plain_spliced(data, "contents")
    else:
        assert parse_plain_spliced(data, "contents")[0] == expected
