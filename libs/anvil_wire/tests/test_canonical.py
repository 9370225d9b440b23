"""Canonical JSON, content digests and strict base64url."""

from __future__ import annotations

import base64
import hashlib
import random

import pytest

from anvil_wire import canonical_json, digest_of, is_digest, sha256_digest
from anvil_wire.b64 import b64url_decode, b64url_encode


def test_object_keys_are_sorted_by_code_point_without_whitespace():
    value = {"b": 1, "a": {"z": [1, 2], "y": None}, "B": True, "é": "x", "aa": False}
    assert canonical_json(value) == '{"B":true,"a":{"y":null,"z":[1,2]},"aa":false,"b":1,"é":"x"}'.encode()


def test_non_ascii_is_written_as_utf8_not_escaped():
    assert canonical_json({"k": "héllo ☃ 𝄞"}) == '{"k":"héllo ☃ 𝄞"}'.encode()
    assert b"\\u" not in canonical_json("日本語")


def test_control_characters_and_quotes_are_escaped_the_json_way():
    assert canonical_json('a"b\\c\n\t\x01') == b'"a\\"b\\\\c\\n\\t\\u0001"'


def test_integers_stay_integers_even_when_huge():
    assert canonical_json([0, -1, 10**30]) == b"[0,-1,1000000000000000000000000000000]"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.1, b"0.1"),
        (2.5, b"2.5"),
        (1e21, b"1e+21"),
        (1.5e-7, b"1.5e-07"),
        (0.30000000000000004, b"0.30000000000000004"),
    ],
)
def test_floats_are_written_in_their_shortest_round_trip_form(value, expected):
    assert canonical_json(value) == expected


def test_random_floats_round_trip_through_their_canonical_form():
    rng = random.Random(7638)
    for _ in range(500):
        value = rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-30, 30)
        encoded = canonical_json(value)
        assert float(encoded) == value
        assert encoded == repr(value).encode()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), {"x": [float("nan")]}])
def test_nan_and_infinities_are_refused(bad):
    with pytest.raises(ValueError):
        canonical_json(bad)


def test_differently_ordered_dicts_have_the_same_bytes_and_digest():
    one = {"template": "hi", "variables": {"b": {"default": None}, "a": {"default": "x"}}, "model": None}
    two = {"model": None, "variables": {"a": {"default": "x"}, "b": {"default": None}}, "template": "hi"}
    assert list(one) != list(two)
    assert canonical_json(one) == canonical_json(two)
    assert digest_of(one) == digest_of(two)


def test_digest_is_sha256_of_the_canonical_bytes():
    value = {"b": [1, "é"], "a": 1}
    expected = "sha256:" + hashlib.sha256('{"a":1,"b":[1,"é"]}'.encode()).hexdigest()
    assert digest_of(value) == expected
    assert sha256_digest(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_a_different_value_has_a_different_digest():
    assert digest_of({"a": 1}) != digest_of({"a": 1.0})
    assert digest_of({"a": "1"}) != digest_of({"a": 1})


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("sha256:" + "0" * 64, True),
        ("sha256:" + "a" * 64, True),
        ("sha256:" + "A" * 64, False),
        ("sha256:" + "0" * 63, False),
        ("sha256:" + "0" * 65, False),
        ("sha512:" + "0" * 64, False),
        ("0" * 64, False),
        (None, False),
        (42, False),
    ],
)
def test_is_digest_accepts_only_lowercase_sha256(value, ok):
    assert is_digest(value) is ok


def test_b64url_round_trips_every_length_without_padding():
    rng = random.Random(4648)
    for length in range(70):
        data = bytes(rng.randrange(256) for _ in range(length))
        text = b64url_encode(data)
        assert "=" not in text
        assert "+" not in text
        assert "/" not in text
        assert text == base64.urlsafe_b64encode(data).decode().rstrip("=")
        assert b64url_decode(text) == data


@pytest.mark.parametrize(
    "bad",
    [
        "Zg==",  # padding
        "Zg=",
        "Z",  # impossible length
        "Zm9v YmFy",  # whitespace
        "Zm9v\n",
        "Zm+v",  # standard alphabet, not url-safe
        "Zm/v",
        "Zé",
        "Zh",  # non-zero trailing bits: a second spelling of "Zg"
        "Zm9=",
    ],
)
def test_b64url_decode_refuses_padding_foreign_characters_and_non_canonical_forms(bad):
    with pytest.raises(ValueError):
        b64url_decode(bad)


def test_b64url_decode_refuses_non_strings():
    with pytest.raises(ValueError):
        b64url_decode(b"Zg")  # type: ignore[arg-type]
