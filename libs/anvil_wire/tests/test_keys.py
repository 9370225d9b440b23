"""Instance key sets: JWKs, RFC 7638 key ids, rotation, and the key file on disk."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from anvil_wire import (
    KeyError_,
    KeySet,
    SigningKey,
    jwk_thumbprint,
    public_key_from_jwk,
    public_keys_from_jwks,
)
from anvil_wire.b64 import b64url_encode

# RFC 7517, Appendix A.1/A.2: the example P-256 key.
RFC7517_EC = {
    "kty": "EC",
    "crv": "P-256",
    "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
    "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM",
    "d": "870MB6gfuTJ4HtUnUvYMyJpr5eUZNP4Bk43bVdj3eAE",
}
# Its RFC 7638 thumbprint, as published by other implementations' test suites.
RFC7517_EC_THUMBPRINT = "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s"


def _b64(value: int, size: int = 32) -> str:
    return b64url_encode(value.to_bytes(size, "big"))


def test_thumbprint_of_the_rfc7517_key_matches_the_published_value():
    key = SigningKey.from_private_jwk(RFC7517_EC)
    assert key.kid == RFC7517_EC_THUMBPRINT
    assert jwk_thumbprint(key.public_key) == RFC7517_EC_THUMBPRINT


def test_thumbprint_is_sha256_of_the_rfc7638_member_string():
    """RFC 7638 section 3: required members only, lexicographic order, no whitespace."""
    key = SigningKey.generate()
    jwk = key.public_jwk()
    members = f'{{"crv":"P-256","kty":"EC","x":"{jwk["x"]}","y":"{jwk["y"]}"}}'
    expected = base64.urlsafe_b64encode(hashlib.sha256(members.encode()).digest()).decode().rstrip("=")
    assert key.kid == expected


def test_public_jwk_has_kid_alg_use_and_no_private_member():
    key = SigningKey.generate()
    jwk = key.public_jwk()
    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("EC", "P-256", "ES256", "sig")
    assert "d" not in jwk


def test_private_jwk_round_trips_to_the_same_key():
    key = SigningKey.generate()
    doc = json.loads(json.dumps(key.private_jwk()))
    again = SigningKey.from_private_jwk(doc)
    assert again.kid == key.kid
    assert again.status == "active"
    assert again.created_at == key.created_at
    assert again.private_key.private_numbers() == key.private_key.private_numbers()
    assert public_key_from_jwk(key.public_jwk()).public_numbers() == key.public_key.public_numbers()


def test_kid_is_stable_across_save_and_load(tmp_path):
    keyset = KeySet.generate()
    path = tmp_path / "keys.json"
    keyset.save(path)
    loaded = KeySet.load(path)
    assert loaded.active.kid == keyset.active.kid == jwk_thumbprint(loaded.active.public_key)
    assert loaded.public_jwks() == keyset.public_jwks()


def test_save_writes_mode_0600_even_over_a_world_readable_file(tmp_path):
    path = tmp_path / "keys" / "instance.json"
    path.parent.mkdir()
    path.write_text("old")
    path.chmod(0o644)
    KeySet.generate().save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_bytes())["keys"][0]["d"]


def test_save_is_atomic_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "instance.json"
    old = KeySet.generate()
    old.save(path)
    before = path.read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        KeySet.generate().save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["instance.json"]
    assert KeySet.load(path).active.kid == old.active.kid


def test_load_or_generate_creates_once_then_loads_the_same_keys(tmp_path):
    path = tmp_path / "data" / "keys" / "instance.json"
    first = KeySet.load_or_generate(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = KeySet.load_or_generate(path)
    assert second.active.kid == first.active.kid


def test_loading_a_missing_file_is_a_key_error(tmp_path):
    with pytest.raises(KeyError_, match="cannot read key set"):
        KeySet.load(tmp_path / "absent.json")


def test_rotate_keeps_old_keys_as_retired_and_publishes_both(tmp_path):
    keyset = KeySet.generate()
    rotated = keyset.rotate()
    assert rotated.active.kid != keyset.active.kid
    statuses = {k.kid: k.status for k in rotated.keys}
    assert statuses == {rotated.active.kid: "active", keyset.active.kid: "retired"}
    assert {k["kid"] for k in rotated.public_jwks()["keys"]} == {rotated.active.kid, keyset.active.kid}
    assert all("d" not in k for k in rotated.public_jwks()["keys"])
    assert set(rotated.public_keys()) == set(statuses)
    twice = rotated.rotate()
    assert len(twice.keys) == 3
    assert [k.status for k in twice.keys].count("active") == 1
    path = tmp_path / "keys.json"
    twice.save(path)
    loaded = KeySet.load(path)
    assert {k.kid: k.status for k in loaded.keys} == {k.kid: k.status for k in twice.keys}
    assert loaded.active.kid == twice.active.kid


def _keyset_json(*jwks: dict) -> bytes:
    return json.dumps({"keys": list(jwks)}).encode()


def test_from_json_refuses_a_p384_key():
    private = ec.generate_private_key(ec.SECP384R1())
    numbers = private.private_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-384",
        "x": _b64(numbers.public_numbers.x, 48),
        "y": _b64(numbers.public_numbers.y, 48),
        "d": _b64(numbers.private_value, 48),
    }
    with pytest.raises(KeyError_, match="P-256"):
        KeySet.from_json(_keyset_json(jwk))
    with pytest.raises(KeyError_):
        KeySet.from_json(_keyset_json({**jwk, "crv": "P-256"}))  # lying about the curve


@pytest.mark.parametrize(
    "change",
    [
        {"kty": "RSA"},
        {"kty": "oct"},
        {"alg": "ES384"},
        {"alg": "HS256"},
        {"x": "AAAA"},
        {"y": 5},
        {"x": RFC7517_EC["y"]},  # not on the curve
        {"d": _b64(0)},
        {"d": "not base64!"},
        {"anvil_status": "compromised"},
    ],
)
def test_from_json_refuses_an_unusable_key(change):
    with pytest.raises(KeyError_):
        KeySet.from_json(_keyset_json({**RFC7517_EC, **change}))


def test_from_json_refuses_a_private_value_of_another_key():
    other = SigningKey.generate().private_jwk()
    with pytest.raises(KeyError_, match="does not match"):
        KeySet.from_json(_keyset_json({**RFC7517_EC, "d": other["d"]}))


@pytest.mark.parametrize("doc", [b"not json", b"[]", b'{"keys": []}', b'{"keys": {}}', b"{}"])
def test_from_json_refuses_a_document_that_is_not_a_key_set(doc):
    with pytest.raises(KeyError_):
        KeySet.from_json(doc)


def test_a_key_set_needs_exactly_one_active_key_and_unique_kids():
    one, two = SigningKey.generate(), SigningKey.generate()
    with pytest.raises(KeyError_, match="exactly one active"):
        KeySet(keys=(one, two))
    with pytest.raises(KeyError_, match="exactly one active"):
        KeySet(keys=())
    with pytest.raises(KeyError_, match="duplicate"):
        KeySet(keys=(one, SigningKey(one.kid, one.private_key, one.created_at, "retired")))


def test_public_keys_from_jwks_maps_kid_to_key_and_refuses_bad_documents():
    keyset = KeySet.generate().rotate()
    keys = public_keys_from_jwks(keyset.public_jwks())
    assert {kid: k.public_numbers() for kid, k in keys.items()} == {
        k.kid: k.public_key.public_numbers() for k in keyset.keys
    }
    jwk = keyset.active.public_jwk()
    for bad in (
        {},
        {"keys": {}},
        {"keys": [{**jwk, "kid": ""}]},
        {"keys": [{k: v for k, v in jwk.items() if k != "kid"}]},
    ):
        with pytest.raises(KeyError_):
            public_keys_from_jwks(bad)
    with pytest.raises(KeyError_):
        public_key_from_jwk(["not", "a", "jwk"])  # type: ignore[arg-type]
