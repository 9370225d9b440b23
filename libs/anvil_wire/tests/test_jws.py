"""Signed documents: compact JWS, ES256 only, one ``typ`` per purpose."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from anvil_wire import (
    TYP_BUNDLE_MANIFEST,
    TYP_REVISION_MANIFEST,
    BadSignature,
    JWSError,
    KeySet,
    MalformedJWS,
    SigningKey,
    UnknownKey,
    WrongType,
    sign,
    sign_document,
    verify,
    verify_document,
)
from anvil_wire.b64 import b64url_decode, b64url_encode
from anvil_wire.jws import MAX_JWS_LENGTH

N_P256 = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def keys(key):
    return {key.kid: key.public_key}


def _raw_signature(key: SigningKey, signing_input: bytes) -> bytes:
    r, s = decode_dss_signature(key.private_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def craft(header: dict, payload: bytes, key: SigningKey) -> str:
    """A JWS with any header at all, really signed with ``key`` (what an attacker holding no
    key cannot do, but what a confused signer might)."""
    signing_input = b64url_encode(json.dumps(header).encode()) + "." + b64url_encode(payload)
    return signing_input + "." + b64url_encode(_raw_signature(key, signing_input.encode()))


def _parts(token: str) -> list[str]:
    return token.split(".")


def test_sign_and_verify_round_trip(key, keys):
    token = sign(b'{"hello":"world"}', key, typ=TYP_REVISION_MANIFEST)
    verified = verify(token, keys, typ=TYP_REVISION_MANIFEST)
    assert verified.payload == b'{"hello":"world"}'
    assert verified.header == {"alg": "ES256", "kid": key.kid, "typ": TYP_REVISION_MANIFEST}
    assert verified.kid == key.kid


def test_header_is_canonical_json_and_signature_is_64_raw_bytes(key):
    token = sign(b"x", key, typ=TYP_BUNDLE_MANIFEST)
    header, payload, signature = _parts(token)
    expected = f'{{"alg":"ES256","kid":"{key.kid}","typ":"{TYP_BUNDLE_MANIFEST}"}}'.encode()
    assert b64url_decode(header) == expected
    assert b64url_decode(payload) == b"x"
    assert len(b64url_decode(signature)) == 64


def test_verify_accepts_a_lookup_function_as_well_as_a_mapping(key, keys):
    token = sign(b"x", key, typ=TYP_REVISION_MANIFEST)
    assert verify(token, keys.get, typ=TYP_REVISION_MANIFEST).payload == b"x"


def test_document_round_trip_signs_canonical_json(key, keys):
    token = sign_document({"b": 1, "a": "é"}, key, typ=TYP_BUNDLE_MANIFEST)
    assert b64url_decode(_parts(token)[1]) == '{"a":"é","b":1}'.encode()
    assert verify_document(token, keys, typ=TYP_BUNDLE_MANIFEST) == {"a": "é", "b": 1}


def test_verification_against_a_rotated_key_set_accepts_old_and_new_keys():
    old = KeySet.generate()
    new = old.rotate()
    for signer in (old.active, new.active):
        token = sign(b"x", signer, typ=TYP_REVISION_MANIFEST)
        assert verify(token, new.public_keys(), typ=TYP_REVISION_MANIFEST).kid == signer.kid


@pytest.mark.parametrize(
    ("signed_as", "expected"),
    [
        (TYP_BUNDLE_MANIFEST, TYP_REVISION_MANIFEST),
        (TYP_REVISION_MANIFEST, TYP_BUNDLE_MANIFEST),
        ("JWT", TYP_REVISION_MANIFEST),
        (TYP_REVISION_MANIFEST.upper(), TYP_REVISION_MANIFEST),
    ],
)
def test_a_document_signed_for_another_purpose_is_wrong_type(key, keys, signed_as, expected):
    token = sign(b"{}", key, typ=signed_as)
    with pytest.raises(WrongType):
        verify(token, keys, typ=expected)


def test_a_document_without_typ_is_wrong_type(key, keys):
    token = craft({"alg": "ES256", "kid": key.kid}, b"{}", key)
    with pytest.raises(WrongType):
        verify(token, keys, typ=TYP_REVISION_MANIFEST)


def test_unknown_kid_is_refused_with_the_kid(key):
    token = sign(b"x", key, typ=TYP_REVISION_MANIFEST)
    other = SigningKey.generate()
    with pytest.raises(UnknownKey) as caught:
        verify(token, {other.kid: other.public_key}, typ=TYP_REVISION_MANIFEST)
    assert caught.value.kid == key.kid
    with pytest.raises(UnknownKey):
        verify(token, lambda kid: None, typ=TYP_REVISION_MANIFEST)


@pytest.mark.parametrize("kid", [None, "", 7, ["a"]])
def test_missing_or_non_string_kid_is_malformed(key, keys, kid):
    header = {"alg": "ES256", "typ": TYP_REVISION_MANIFEST}
    if kid is not None:
        header["kid"] = kid
    with pytest.raises(MalformedJWS):
        verify(craft(header, b"x", key), keys, typ=TYP_REVISION_MANIFEST)


def test_same_kid_signed_by_another_key_is_a_bad_signature(key, keys):
    impostor = SigningKey(key.kid, ec.generate_private_key(ec.SECP256R1()), key.created_at)
    token = sign(b'{"revision":99}', impostor, typ=TYP_REVISION_MANIFEST)
    with pytest.raises(BadSignature):
        verify(token, keys, typ=TYP_REVISION_MANIFEST)


def test_tampered_payload_is_a_bad_signature(key, keys):
    header, _, signature = _parts(sign_document({"revision": 1}, key, typ=TYP_REVISION_MANIFEST))
    payload = b64url_encode(b'{"revision":2}')
    forged = f"{header}.{payload}.{signature}"
    with pytest.raises(BadSignature):
        verify(forged, keys, typ=TYP_REVISION_MANIFEST)


def test_tampered_header_is_a_bad_signature(key, keys):
    _, payload, signature = _parts(sign(b"x", key, typ=TYP_REVISION_MANIFEST))
    header = {"alg": "ES256", "kid": key.kid, "typ": TYP_REVISION_MANIFEST, "x": 1}
    forged = f"{b64url_encode(json.dumps(header).encode())}.{payload}.{signature}"
    with pytest.raises(BadSignature):
        verify(forged, keys, typ=TYP_REVISION_MANIFEST)


def test_tampered_signature_is_a_bad_signature(key, keys):
    header, payload, signature = _parts(sign(b"x", key, typ=TYP_REVISION_MANIFEST))
    raw = bytearray(b64url_decode(signature))
    for index in (0, 31, 32, 63):
        flipped = bytearray(raw)
        flipped[index] ^= 0x01
        with pytest.raises(BadSignature):
            verify(f"{header}.{payload}.{b64url_encode(bytes(flipped))}", keys, typ=TYP_REVISION_MANIFEST)


@pytest.mark.parametrize("length", [0, 1, 63, 65, 72, 128])
def test_signature_that_is_not_64_bytes_is_refused(key, keys, length):
    header, payload, signature = _parts(sign(b"x", key, typ=TYP_REVISION_MANIFEST))
    raw = (b64url_decode(signature) * 3)[:length]
    with pytest.raises(BadSignature, match="64 bytes"):
        verify(f"{header}.{payload}.{b64url_encode(raw)}", keys, typ=TYP_REVISION_MANIFEST)


def test_a_der_encoded_signature_is_refused(key, keys):
    signing_input = sign(b"x", key, typ=TYP_REVISION_MANIFEST).rsplit(".", 1)[0]
    der = key.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    with pytest.raises(BadSignature):
        verify(f"{signing_input}.{b64url_encode(der)}", keys, typ=TYP_REVISION_MANIFEST)


@pytest.mark.parametrize(
    "raw",
    [
        bytes(64),  # r = s = 0
        b"\xff" * 64,  # r, s >= the group order
        N_P256.to_bytes(32, "big") * 2,  # r = s = n
    ],
)
def test_out_of_range_signature_values_are_a_bad_signature(key, keys, raw):
    header, payload, _ = _parts(sign(b"x", key, typ=TYP_REVISION_MANIFEST))
    with pytest.raises(BadSignature):
        verify(f"{header}.{payload}.{b64url_encode(raw)}", keys, typ=TYP_REVISION_MANIFEST)


@pytest.mark.parametrize(
    "alg", ["none", "None", "HS256", "ES384", "ES512", "RS256", "PS256", "EdDSA", "", None]
)
def test_an_algorithm_other_than_es256_is_refused(key, keys, alg):
    header = {"kid": key.kid, "typ": TYP_REVISION_MANIFEST}
    if alg is not None:
        header["alg"] = alg
    with pytest.raises(MalformedJWS, match="algorithm"):
        verify(craft(header, b"x", key), keys, typ=TYP_REVISION_MANIFEST)


def test_alg_none_with_an_empty_signature_is_refused(key, keys):
    header = b64url_encode(json.dumps({"alg": "none", "kid": key.kid, "typ": TYP_REVISION_MANIFEST}).encode())
    with pytest.raises(MalformedJWS):
        verify(f"{header}.{b64url_encode(b'x')}.", keys, typ=TYP_REVISION_MANIFEST)


@pytest.mark.parametrize(
    "public_format",
    [
        (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        (serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint),
    ],
)
def test_hs256_forged_with_the_public_key_as_secret_is_refused(key, keys, public_format):
    secret = key.public_key.public_bytes(*public_format)
    header = {"alg": "HS256", "kid": key.kid, "typ": TYP_REVISION_MANIFEST}
    signing_input = b64url_encode(json.dumps(header).encode()) + "." + b64url_encode(b'{"revision":9}')
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(MalformedJWS):
        verify(f"{signing_input}.{b64url_encode(mac)}", keys, typ=TYP_REVISION_MANIFEST)


@pytest.mark.parametrize(
    "extra",
    [
        {"jku": "https://attacker.example/jwks.json"},
        {"x5u": "https://attacker.example/cert.pem"},
        {"jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}},
        {"x5c": ["MIIB"]},
        {"crit": ["exp"]},
    ],
)
def test_headers_that_choose_their_own_key_or_semantics_are_refused(key, keys, extra):
    header = {"alg": "ES256", "kid": key.kid, "typ": TYP_REVISION_MANIFEST, **extra}
    with pytest.raises(MalformedJWS, match="refused"):
        verify(craft(header, b"x", key), keys, typ=TYP_REVISION_MANIFEST)


def test_an_embedded_jwk_of_the_attackers_own_key_is_refused(keys):
    attacker = SigningKey.generate()
    header = {"alg": "ES256", "kid": attacker.kid, "typ": TYP_REVISION_MANIFEST, "jwk": attacker.public_jwk()}
    with pytest.raises(MalformedJWS):
        verify(craft(header, b"x", attacker), keys, typ=TYP_REVISION_MANIFEST)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b",
        "a.b.c.d",
        "a.b.c.d.e",
        "!!.e30.AAAA",
        "e30=.e30.AAAA",
        f"{b64url_encode(b'[1,2]')}.e30.AAAA",
        f"{b64url_encode(b'not json')}.e30.AAAA",
        f"{b64url_encode(bytes([0xFF, 0xFE]))}.e30.AAAA",
        "e30.e30.e30 ",
    ],
)
def test_garbage_is_malformed(keys, token):
    with pytest.raises(MalformedJWS):
        verify(token, keys, typ=TYP_REVISION_MANIFEST)


@pytest.mark.parametrize("token", [None, b"e30.e30.AAAA", 12, ["a", "b", "c"]])
def test_a_non_string_is_malformed(keys, token):
    with pytest.raises(MalformedJWS):
        verify(token, keys, typ=TYP_REVISION_MANIFEST)


def test_an_oversized_token_is_refused_before_parsing(keys):
    with pytest.raises(MalformedJWS):
        verify("e30." + "A" * MAX_JWS_LENGTH + ".AAAA", keys, typ=TYP_REVISION_MANIFEST)


@pytest.mark.parametrize("payload", [b"[1]", b'"text"', b"not json", b"\xff"])
def test_verify_document_needs_a_json_object(key, keys, payload):
    token = sign(payload, key, typ=TYP_BUNDLE_MANIFEST)
    with pytest.raises(MalformedJWS):
        verify_document(token, keys, typ=TYP_BUNDLE_MANIFEST)


def test_every_refusal_is_a_jws_error_and_a_value_error():
    for cls in (MalformedJWS, WrongType, UnknownKey, BadSignature):
        assert issubclass(cls, JWSError)
        assert issubclass(cls, ValueError)
