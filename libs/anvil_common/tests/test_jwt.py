"""JWTs, hardened: every way a token can be wrong is a 401 problem, never a 500.

Forged tokens are crafted by hand (hmac, hashlib, cryptography, python-jose with chosen
headers), so each attack is real rather than simulated.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
import types
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jose import jwt as jose_jwt

import anvil_common.jwt as jwt_module
from anvil_common.jwt import Claims, TokenExpired, TokenInvalid, TokenIssuer, TokenVerifier
from anvil_common.problems import Unauthorized
from anvil_wire import TYP_REVISION_MANIFEST, KeySet, SigningKey, sign
from anvil_wire.b64 import b64url_decode, b64url_encode

ISSUER = "https://registry.example"
AUDIENCE = "anvil-registry"


@pytest.fixture(scope="module")
def keyset() -> KeySet:
    return KeySet.generate()


@pytest.fixture(scope="module")
def key(keyset) -> SigningKey:
    return keyset.active


@pytest.fixture
def verifier(keyset) -> TokenVerifier:
    return TokenVerifier.for_keyset(keyset, issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture(scope="module")
def issuer(key) -> TokenIssuer:
    return TokenIssuer(key, issuer=ISSUER)


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims; ``name=None`` removes a claim."""
    now = int(time.time())
    doc: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "ops@acme",
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
        "kind": "operator",
        "scopes": ["prompts:read", "revisions:publish"],
        "org": "acme",
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


def private_pem(key: SigningKey) -> str:
    return key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def jose_token(key: SigningKey, body: dict[str, Any], **headers: Any) -> str:
    """Correctly signed (ES256, the real key) by python-jose, with any extra header."""
    return jose_jwt.encode(
        body, private_pem(key), algorithm="ES256", headers={"kid": key.kid, "typ": "JWT", **headers}
    )


def _b64json(value: Any) -> str:
    return b64url_encode(json.dumps(value).encode())


def es256_token(key: SigningKey, header: dict[str, Any], body: dict[str, Any]) -> str:
    """Sign any header with ES256 by hand (raw r||s), whatever the header claims."""
    signing_input = f"{_b64json(header)}.{_b64json(body)}"
    r, s = decode_dss_signature(key.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{b64url_encode(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def hs256_token(secret: bytes, header: dict[str, Any], body: dict[str, Any]) -> str:
    signing_input = f"{_b64json(header)}.{_b64json(body)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url_encode(mac)}"


def assert_refused(
    verifier: TokenVerifier, token: Any, expected: type[TokenInvalid] = TokenInvalid
) -> TokenInvalid:
    with pytest.raises(TokenInvalid) as caught:
        verifier.verify(token)
    problem = caught.value
    assert type(problem) is expected
    assert isinstance(problem, Unauthorized)
    assert problem.status == 401
    assert problem.headers["WWW-Authenticate"].startswith("Bearer")
    body = problem.to_json()
    assert body["status"] == 401
    assert body["type"] == f"urn:anvil:problem:{expected.code}"
    return problem


# -- accepted ------------------------------------------------------------------------------------


def test_valid_token_is_accepted_with_typed_claims(verifier, key):
    body = claims(project="web", environment="prod", scopes=["b", "a", "a"])
    verified = verifier.verify(jose_token(key, body))
    assert isinstance(verified, Claims)
    assert verified.jti == body["jti"]
    assert (verified.subject, verified.kind, verified.issuer) == ("ops@acme", "operator", ISSUER)
    assert verified.audience == (AUDIENCE,)
    assert (verified.expires_at, verified.issued_at) == (body["exp"], body["iat"])
    assert verified.scopes == frozenset({"a", "b"})
    assert (verified.org, verified.project, verified.environment) == ("acme", "web", "prod")
    assert verified.has("a")
    assert not verified.has("tokens:admin")


def test_issued_token_verifies_to_the_claims_the_issuer_returned(verifier, issuer, key):
    token, issued = issuer.issue(
        subject="svc",
        kind="client",
        audience=[AUDIENCE, "anvil-push-gateway"],
        scopes=["config:read"],
        ttl_seconds=300,
        org="acme",
        project="web",
        environment="prod",
    )
    verified = verifier.verify(token)
    assert verified == issued
    assert verified.audience == ("anvil-push-gateway", AUDIENCE)
    header = json.loads(b64url_decode(token.split(".")[0]))
    assert header == {"alg": "ES256", "kid": key.kid, "typ": "JWT"}


def test_instance_admin_token_without_org_is_accepted(verifier, key):
    verified = verifier.verify(jose_token(key, claims(org=None)))
    assert verified.org is None


def test_issuer_refuses_unknown_kind_and_non_expiring_tokens(issuer):
    with pytest.raises(ValueError):
        issuer.issue(subject="s", kind="root", audience=AUDIENCE, scopes=[], ttl_seconds=60)
    for ttl in (0, -1):
        with pytest.raises(ValueError):
            issuer.issue(subject="s", kind="operator", audience=AUDIENCE, scopes=[], ttl_seconds=ttl)


def test_key_rotation_accepts_tokens_of_the_old_and_the_new_key():
    old = KeySet.generate()
    old_token, _ = TokenIssuer(old.active, issuer=ISSUER).issue(
        subject="s", kind="operator", audience=AUDIENCE, scopes=[], ttl_seconds=600
    )
    rotated = old.rotate()
    new_token, _ = TokenIssuer(rotated.active, issuer=ISSUER).issue(
        subject="s", kind="operator", audience=AUDIENCE, scopes=[], ttl_seconds=600
    )
    verifier = TokenVerifier(json.loads(json.dumps(rotated.public_jwks())), issuer=ISSUER, audience=AUDIENCE)
    assert verifier.verify(old_token).subject == "s"
    assert verifier.verify(new_token).subject == "s"
    # A verifier that never saw the new key refuses its tokens.
    assert_refused(TokenVerifier.for_keyset(old, issuer=ISSUER, audience=AUDIENCE), new_token)


# -- required claims, time, issuer, audience ------------------------------------------------------


def test_token_without_aud_is_refused(verifier, key):
    assert_refused(verifier, jose_token(key, claims(aud=None)))


def test_token_without_exp_is_refused(verifier, key):
    assert_refused(verifier, jose_token(key, claims(exp=None)))


@pytest.mark.parametrize("missing", ["iss", "iat", "jti", "sub", "kind", "scopes"])
def test_token_without_another_required_claim_is_refused(verifier, key, missing):
    assert_refused(verifier, jose_token(key, claims(**{missing: None})))


def test_expired_token_is_refused_as_expired(verifier, issuer):
    token, _ = issuer.issue(
        subject="s",
        kind="operator",
        audience=AUDIENCE,
        scopes=[],
        ttl_seconds=60,
        now=int(time.time()) - 3600,
    )
    problem = assert_refused(verifier, token, TokenExpired)
    assert problem.to_json()["title"] == "Token expired"


def test_a_cached_token_is_refused_once_it_expires(verifier, issuer, monkeypatch):
    token, issued = issuer.issue(subject="s", kind="operator", audience=AUDIENCE, scopes=[], ttl_seconds=60)
    assert verifier.verify(token) == issued
    later = issued.expires_at + verifier.leeway + 1
    monkeypatch.setattr(jwt_module, "time", types.SimpleNamespace(time=lambda: later))
    assert_refused(verifier, token, TokenExpired)


def test_token_not_yet_valid_is_refused(verifier, key):
    future = int(time.time()) + 3600
    assert_refused(verifier, jose_token(key, claims(nbf=future, iat=future, exp=future + 600)))


def test_wrong_issuer_is_refused(verifier, key):
    assert_refused(verifier, jose_token(key, claims(iss="https://evil.example")))
    assert_refused(verifier, jose_token(key, claims(iss=ISSUER + "/")))


def test_wrong_audience_is_refused(verifier, key):
    assert_refused(verifier, jose_token(key, claims(aud="anvil-push-gateway")))
    assert_refused(verifier, jose_token(key, claims(aud=["anvil-push-gateway", "anvil-bundle-worker"])))
    assert_refused(verifier, jose_token(key, claims(aud=[])))


def test_audience_list_containing_ours_is_accepted(verifier, key):
    verified = verifier.verify(jose_token(key, claims(aud=["anvil-push-gateway", AUDIENCE])))
    assert AUDIENCE in verified.audience


# -- algorithm and key confusion ---------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_refused(verifier, key, alg):
    header = {"alg": alg, "typ": "JWT", "kid": key.kid}
    assert_refused(verifier, f"{_b64json(header)}.{_b64json(claims())}.")
    # ... also with a signature part that is not empty
    assert_refused(verifier, f"{_b64json(header)}.{_b64json(claims())}.{b64url_encode(b'x')}")


@pytest.mark.parametrize(
    "encoding",
    [
        pytest.param((serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), id="pem"),
        pytest.param((serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo), id="der"),
        pytest.param(
            (serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint), id="raw-point"
        ),
    ],
)
def test_hs256_forged_with_the_public_key_as_hmac_secret_is_refused(verifier, key, encoding):
    secret = key.public_key.public_bytes(*encoding)
    for header in ({"alg": "HS256", "typ": "JWT", "kid": key.kid}, {"alg": "HS256", "typ": "JWT"}):
        assert_refused(verifier, hs256_token(secret, header, claims(scopes=["tokens:admin"])))


def test_hs256_forged_with_the_jwks_json_as_secret_is_refused(verifier, keyset, key):
    for secret in (json.dumps(keyset.public_jwks()).encode(), json.dumps(key.public_jwk()).encode()):
        assert_refused(
            verifier, hs256_token(secret, {"alg": "HS256", "typ": "JWT", "kid": key.kid}, claims())
        )


def test_hs256_signed_with_an_empty_key_is_refused(verifier, key):
    assert_refused(verifier, hs256_token(b"", {"alg": "HS256", "typ": "JWT", "kid": key.kid}, claims()))


def test_es256_signature_under_a_header_that_says_es384_is_refused(verifier, key):
    assert_refused(verifier, es256_token(key, {"alg": "ES384", "typ": "JWT", "kid": key.kid}, claims()))
    assert_refused(verifier, jose_token(key, claims(), alg="ES384"))


def test_a_verifier_refuses_keys_that_are_not_es256():
    jwk = KeySet.generate().active.public_jwk()
    for bad in (
        {**jwk, "alg": "ES384"},
        {**jwk, "alg": "HS256"},
        {"kty": "oct", "k": "c2VjcmV0", "kid": "k", "alg": "HS256"},
        {**jwk, "crv": "P-384"},
        {k: v for k, v in jwk.items() if k != "kid"},
        {**jwk, "kid": ""},
    ):
        with pytest.raises(ValueError):
            TokenVerifier({"keys": [bad]}, issuer=ISSUER, audience=AUDIENCE)


def test_empty_key_material_is_refused():
    jwk = KeySet.generate().active.public_jwk()
    with pytest.raises(ValueError):
        TokenVerifier({"keys": [{**jwk, "x": "", "y": ""}]}, issuer=ISSUER, audience=AUDIENCE)


def test_a_verifier_with_no_keys_refuses_every_token(issuer):
    token, _ = issuer.issue(subject="s", kind="operator", audience=AUDIENCE, scopes=[], ttl_seconds=60)
    for jwks in ({"keys": []}, {}):
        assert_refused(TokenVerifier(jwks, issuer=ISSUER, audience=AUDIENCE), token)


def test_unknown_kid_is_refused(verifier):
    stranger = SigningKey.generate()
    assert_refused(verifier, jose_token(stranger, claims()))


@pytest.mark.parametrize("kid", [None, "", 7, ["k"], {"kid": "k"}])
def test_missing_or_malformed_kid_is_refused(verifier, key, kid):
    header = {"alg": "ES256", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    assert_refused(verifier, es256_token(key, header, claims()))


def test_our_kid_on_a_token_signed_by_another_key_is_refused(verifier, key):
    impostor = SigningKey(key.kid, ec.generate_private_key(ec.SECP256R1()), "")
    assert_refused(verifier, jose_token(impostor, claims()))


# -- tampering --------------------------------------------------------------------------------------


def test_tampered_payload_is_refused(verifier, key):
    body = claims()
    header, _, signature = jose_token(key, body).split(".")
    for flip in (
        {"scopes": ["tokens:admin"]},
        {"org": "globex"},
        {"exp": body["exp"] + 10**6},
        {"kind": "peer"},
    ):
        assert_refused(verifier, f"{header}.{_b64json({**body, **flip})}.{signature}")


def test_tampered_header_is_refused(verifier, key):
    _, payload, signature = jose_token(key, claims()).split(".")
    header = {"alg": "ES256", "kid": key.kid, "typ": "JWT", "cty": "x"}
    assert_refused(verifier, f"{_b64json(header)}.{payload}.{signature}")


def test_tampered_signature_is_refused(verifier, key):
    header, payload, signature = jose_token(key, claims()).split(".")
    raw = bytearray(b64url_decode(signature))
    raw[10] ^= 0x40
    assert_refused(verifier, f"{header}.{payload}.{b64url_encode(bytes(raw))}")
    assert_refused(verifier, f"{header}.{payload}.{b64url_encode(bytes(raw[:32]))}")


def test_another_spelling_of_the_same_signature_is_refused(verifier, key):
    """The last base64url character of a 64-byte signature carries 2 unused bits."""
    header, payload, signature = jose_token(key, claims()).split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    twin = signature[:-1] + alphabet[last | 1]
    assert twin != signature
    assert_refused(verifier, f"{header}.{payload}.{twin}")
    assert_refused(verifier, f"{header}.{payload}.{signature}==")


# -- headers that pick their own key or purpose ----------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"jku": "https://attacker.example/jwks.json"}, id="jku"),
        pytest.param({"x5u": "https://attacker.example/cert.pem"}, id="x5u"),
        pytest.param({"x5c": ["MIIBszCCAVmgAwIBAgIU"]}, id="x5c"),
        pytest.param({"crit": ["exp"]}, id="crit"),
    ],
)
def test_headers_pointing_at_other_keys_are_refused_even_when_correctly_signed(verifier, key, extra):
    assert_refused(verifier, jose_token(key, claims(), **extra))


def test_an_embedded_jwk_of_the_attackers_key_is_refused(verifier):
    attacker = SigningKey.generate()
    assert_refused(verifier, jose_token(attacker, claims(), jwk=attacker.public_jwk()))


@pytest.mark.parametrize(
    "typ", [TYP_REVISION_MANIFEST, "anvil-bundle-manifest+jws", "at+jwt", "jwt", "", None]
)
def test_a_token_with_another_typ_is_refused(verifier, key, typ):
    header = {"alg": "ES256", "kid": key.kid}
    if typ is not None:
        header["typ"] = typ
    assert_refused(verifier, es256_token(key, header, claims()))
    if typ:
        assert_refused(verifier, jose_token(key, claims(), typ=typ))


def test_a_signed_revision_manifest_carrying_claims_is_not_a_token(verifier, key):
    document = sign(json.dumps(claims()).encode(), key, typ=TYP_REVISION_MANIFEST)
    assert_refused(verifier, document)


# -- malformed claims: 401, never a crash ---------------------------------------------------------


MALFORMED_CLAIMS = {
    "scopes-string": {"scopes": "prompts:read revisions:publish"},
    "scopes-object": {"scopes": {"prompts:read": True}},
    "scopes-non-strings": {"scopes": ["a", 1]},
    "exp-numeric-string": {"exp": str(int(time.time()) + 600)},
    "exp-word": {"exp": "soon"},
    "exp-float": {"exp": time.time() + 600},
    "exp-list": {"exp": [1]},
    "exp-object": {"exp": {"t": 1}},
    "iat-string": {"iat": "now"},
    "iat-list": {"iat": [1]},
    "nbf-string": {"nbf": "later"},
    "kind-unknown": {"kind": "superuser"},
    "kind-number": {"kind": 1},
    "kind-empty": {"kind": ""},
    "sub-number": {"sub": 42},
    "jti-number": {"jti": 42},
    "iss-list": {"iss": [ISSUER]},
    "aud-number": {"aud": 5},
    "aud-list-of-numbers": {"aud": [1, 2]},
    "org-empty": {"org": ""},
    "org-number": {"org": 3},
    "project-list": {"project": ["web"]},
    "environment-object": {"environment": {"name": "prod"}},
}


@pytest.mark.parametrize("override", MALFORMED_CLAIMS.values(), ids=MALFORMED_CLAIMS.keys())
def test_malformed_claims_are_invalid_not_a_crash(verifier, key, override):
    assert_refused(verifier, jose_token(key, claims(**override)))


@pytest.mark.parametrize("body", [[1, 2], "claims", 3, None])
def test_claims_that_are_not_an_object_are_refused(verifier, key, body):
    assert_refused(verifier, es256_token(key, {"alg": "ES256", "typ": "JWT", "kid": key.kid}, body))


# -- not a token at all -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param(None, id="none"),
        pytest.param(b"eyJ.eyJ.sig", id="bytes"),
        pytest.param(12, id="int"),
        pytest.param({"token": "x"}, id="dict"),
        pytest.param(["a", "b", "c"], id="list"),
        pytest.param("Bearer x", id="bearer-prefix"),
        pytest.param("a.b", id="two-parts"),
        pytest.param("a.b.c.d.e", id="five-parts-jwe"),
        pytest.param("..", id="empty-parts"),
        pytest.param("e30.e30.e30" + "A" * 9000, id="oversized"),
        pytest.param("ey\u00e9.e30.AAAA", id="non-ascii"),
        pytest.param("\x00\x00.\x00.\x00", id="nul-bytes"),
    ],
)
def test_empty_or_non_string_token_is_refused(verifier, token):
    assert_refused(verifier, token)


def test_header_that_is_not_an_object_is_refused(verifier, key):
    assert_refused(verifier, f"{_b64json([1])}.{_b64json(claims())}.{b64url_encode(bytes(64))}")
    assert_refused(verifier, f"{b64url_encode(b'{not json')}.{_b64json(claims())}.{b64url_encode(bytes(64))}")


def test_random_input_never_raises_anything_but_token_invalid(verifier, key):
    """Property: whatever arrives in an Authorization header, the answer is a 401 problem."""
    rng = random.Random(20261125)
    valid = jose_token(key, claims())
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ "

    def random_b64json() -> str:
        header: dict[str, Any] = {}
        for name in rng.sample(["alg", "kid", "typ", "jku", "crit", "x"], rng.randint(0, 4)):
            header[name] = rng.choice(["ES256", "none", "HS256", "JWT", key.kid, "", 0, None, [], {}])
        return _b64json(header)

    def mutate(token: str) -> str:
        chars = list(token)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(chars))
            chars[i] = rng.choice(alphabet.replace(chars[i], ""))
        return "".join(chars)

    generators = [
        lambda: bytes(rng.randrange(256) for _ in range(rng.randint(0, 80))),
        lambda: bytes(rng.randrange(256) for _ in range(rng.randint(0, 80))).decode("latin-1"),
        lambda: "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120))),
        lambda: ".".join(b64url_encode(rng.randbytes(rng.randint(0, 40))) for _ in range(rng.randint(1, 5))),
        lambda: f"{random_b64json()}.{_b64json(claims())}.{b64url_encode(rng.randbytes(64))}",
        lambda: mutate(valid),
    ]
    seen = 0
    for _ in range(600):
        token = rng.choice(generators)()
        try:
            verifier.verify(token)
        except TokenInvalid:
            seen += 1
        # Any other exception fails the test with its traceback.
    assert seen == 600
