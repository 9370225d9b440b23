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


def test_integers_stay_integers_up_to_the_interoperable_limit():
    assert canonical_json([0, -1, 2**53 - 1, -(2**53 - 1)]) == b"[0,-1,9007199254740991,-9007199254740991]"


@pytest.mark.parametrize("bad", [2**53, -(2**53), 10**30])
def test_integers_no_json_parser_reads_exactly_are_refused(bad):
    with pytest.raises(ValueError, match="interoperable"):
        canonical_json({"seed": bad})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.1, b"0.1"),
        (2.5, b"2.5"),
        (1e21, b"1e+21"),
        (1.5e-7, b"1.5e-7"),
        (0.30000000000000004, b"0.30000000000000004"),
        # RFC 8785 appendix B / section 3.2.2.3 (ECMAScript Number::toString)
        (333333333.33333329, b"333333333.3333333"),
        (1e30, b"1e+30"),
        (4.50, b"4.5"),
        (2e-3, b"0.002"),
        (0.000000000000000000000000001, b"1e-27"),
        (-0.0, b"0"),
        (1e20, b"100000000000000000000"),
        (1e-6, b"0.000001"),
        (1e-7, b"1e-7"),
        (5e-324, b"5e-324"),
        (1.7976931348623157e308, b"1.7976931348623157e+308"),
        (1.0, b"1"),
        (-100.0, b"-100"),
    ],
)
def test_floats_are_written_the_rfc_8785_way(value, expected):
    assert canonical_json(value) == expected


def test_random_floats_round_trip_through_their_canonical_form():
    rng = random.Random(7638)
    for _ in range(500):
        value = rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-30, 30)
        encoded = canonical_json(value)
        assert float(encoded) == value


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
    assert digest_of({"a": 1}) != digest_of({"a": 1.5})
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


def test_an_integral_float_is_the_same_number_as_the_integer():
    # JSON has one number type: 1 and 1.0 are the same value, so they hash the same.
    assert digest_of({"temperature": 1}) == digest_of({"temperature": 1.0})


def test_keys_are_sorted_by_utf16_code_units_as_rfc_8785_requires():
    value = {"\u20ac": "Euro", "\r": "CR", "\U0001f600": "Smiley", "\ufb33": "Hebrew", "1": "One"}
    expected = '{"\\r":"CR","1":"One","\u20ac":"Euro","\U0001f600":"Smiley","\ufb33":"Hebrew"}'
    assert canonical_json(value) == expected.encode()


def test_non_string_keys_are_refused():
    with pytest.raises(TypeError):
        canonical_json({1: "a"})


HOSTILE = [
    0.0,
    -0.0,
    [-0.0, 0.0, 1.0, -1.0, 1e16, 1e-4, 9.999999999999999e-5, 1e21, 1e-7, 5e-324, 1.7976931348623157e308],
    {"f": 0.1 + 0.2, "g": -123456789.125, "h": 1e15 + 0.5},
    [2**53 - 1, -(2**53 - 1), 2**53, -(2**53), 10**30],
    {"big": {"deep": [2**63]}},
    ['\u0000\u001f\u007f\u2028\u2029"\\/', "\ud7ff\ue000\uffff\U0001f600"],
    {"\ue000": 1, "\U0001f600": 2, "\uffff": 3, "a": 4},
    {"ok": "\ud800"},  # a lone surrogate: not Unicode
    ["\udfff\ud800"],
    {"\ud800": 1},
    [float("nan")],
    {"x": [float("-inf")]},
    {1: "int key"},
    {"k": (1, 2.5, "t")},
    type("D", (dict,), {})(z=1, a=-0.0),
    [True, False, None, {}, []],
    {"b": b"bytes"},
]


def _outcome(encode, value):
    try:
        return encode(value)
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        return (type(exc), str(exc))


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_the_fast_path_gives_the_reference_bytes_and_errors(value):
    from anvil_wire.canonical import canonical_json_reference

    assert _outcome(canonical_json, value) == _outcome(canonical_json_reference, value)


def test_a_cycle_is_refused_by_both_encoders():
    from anvil_wire.canonical import canonical_json_reference

    loop: list[object] = []
    loop.append(loop)
    for encode in (canonical_json, canonical_json_reference):
        with pytest.raises(RecursionError):
            encode(loop)
