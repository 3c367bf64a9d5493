"""JWT verification: algorithms, keys, registered claims, scopes, delegation, certificate binding."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from domicile.config import SettingsError, load_settings
from domicile.security.tokens import (
    AuthenticationError,
    KeyLoadError,
    TokenVerifier,
    VerificationKey,
    certificate_thumbprint,
    load_verification_keys,
    mint_token,
)

ISSUER, AUDIENCE = "https://idp.bank.example", "domicile"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
OTHER_EC_KEY = ec.generate_private_key(ec.SECP256R1())
ALGORITHMS = ("RS256", "ES256", "EdDSA")


def verifier(*private_keys, algorithms=ALGORITHMS, leeway=30.0, kids=None) -> TokenVerifier:
    kids = kids or [None] * len(private_keys)
    keys = [VerificationKey(k.public_key(), kid, "test") for k, kid in zip(private_keys, kids, strict=True)]
    return TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE, algorithms=algorithms, leeway_seconds=leeway)


def token(key=EC_KEY, algorithm="ES256", **overrides) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "svc-a", "iat": now, "exp": now + 300, "scope": "catalog:read"}
    claims.update(overrides)
    headers = claims.pop("_headers", None)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def reason_of(call) -> str:
    with pytest.raises(AuthenticationError) as info:
        call()
    return info.value.reason


@pytest.mark.parametrize(("key", "algorithm"), [(RSA_KEY, "RS256"), (EC_KEY, "ES256"), (ED_KEY, "EdDSA")])
def test_each_asymmetric_algorithm_verifies(key, algorithm):
    caller = verifier(key).verify(token(key, algorithm))
    assert caller.subject == "svc-a"
    assert caller.scopes == {"catalog:read"}


def test_unsigned_token_is_refused():
    unsigned = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60}, None, algorithm="none"
    )
    assert reason_of(lambda: verifier(EC_KEY).verify(unsigned)) == "ALGORITHM_NOT_ALLOWED"


def test_hmac_signed_with_the_public_key_is_refused():
    # The classic algorithm-confusion attack: HS256 keyed with the server's public key PEM.
    public_pem = RSA_KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(
        json.dumps({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60}).encode()
    ).rstrip(b"=")
    signature = base64.urlsafe_b64encode(hmac.new(public_pem, header + b"." + body, hashlib.sha256).digest()).rstrip(
        b"="
    )
    forged = (header + b"." + body + b"." + signature).decode()
    assert reason_of(lambda: verifier(RSA_KEY).verify(forged)) == "ALGORITHM_NOT_ALLOWED"
    # Even when HS256 is configured, an RSA key never verifies an HMAC token.
    assert reason_of(lambda: verifier(RSA_KEY, algorithms=("RS256", "HS256")).verify(forged)) == "UNKNOWN_KEY"


def test_hmac_only_when_configured_with_an_oct_key(tmp_path):
    secret = b"s" * 32
    jwks = tmp_path / "jwks.json"
    jwks.write_text(
        json.dumps({"keys": [{"kty": "oct", "k": base64.urlsafe_b64encode(secret).rstrip(b"=").decode(), "kid": "h1"}]})
    )
    keys = load_verification_keys(jwks, [])
    hs = token(secret, "HS256", _headers={"kid": "h1"})
    strict = TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE, algorithms=ALGORITHMS, leeway_seconds=0)
    assert reason_of(lambda: strict.verify(hs)) == "ALGORITHM_NOT_ALLOWED"
    allowed = TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE, algorithms=("HS256",), leeway_seconds=0)
    assert allowed.verify(hs).subject == "svc-a"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        # exp/nbf are given relative to now and resolved when the test runs (parameters are
        # built at collection time, which may be minutes earlier).
        ({"exp": -120}, "TOKEN_EXPIRED"),
        ({"nbf": +120}, "TOKEN_NOT_YET_VALID"),
        ({"aud": "someone-else"}, "WRONG_AUDIENCE"),
        ({"iss": "https://evil.example"}, "WRONG_ISSUER"),
        ({"exp": None}, "MISSING_CLAIM"),
        ({"sub": None}, "MISSING_CLAIM"),
        ({"aud": None}, "MISSING_CLAIM"),
        ({"act": "not-an-object"}, "MALFORMED_TOKEN"),
    ],
)
def test_registered_claims_are_enforced(overrides, reason):
    now = int(time.time())
    overrides = {k: now + v if k in ("exp", "nbf") and isinstance(v, int) else v for k, v in overrides.items()}
    assert reason_of(lambda: verifier(EC_KEY).verify(token(**overrides))) == reason


def test_small_clock_skew_is_tolerated():
    skewed = token(exp=int(time.time()) - 5, nbf=int(time.time()) + 5)
    assert verifier(EC_KEY, leeway=30).verify(skewed).subject == "svc-a"
    assert reason_of(lambda: verifier(EC_KEY, leeway=0).verify(skewed)) in {"TOKEN_EXPIRED", "TOKEN_NOT_YET_VALID"}


def test_bad_signature_and_garbage():
    assert reason_of(lambda: verifier(EC_KEY).verify(token(OTHER_EC_KEY))) == "BAD_SIGNATURE"
    assert reason_of(lambda: verifier(EC_KEY).verify("not.a.jwt")) == "MALFORMED_TOKEN"


def test_kid_selects_among_keys_and_unknown_kid_is_refused():
    both = verifier(EC_KEY, OTHER_EC_KEY, kids=["k1", "k2"])
    assert both.verify(token(OTHER_EC_KEY, _headers={"kid": "k2"})).subject == "svc-a"
    assert reason_of(lambda: both.verify(token(OTHER_EC_KEY, _headers={"kid": "k1"}))) == "BAD_SIGNATURE"
    assert reason_of(lambda: both.verify(token(_headers={"kid": "k9"}))) == "UNKNOWN_KEY"
    # Without kids every fitting key is tried.
    assert verifier(EC_KEY, OTHER_EC_KEY).verify(token(OTHER_EC_KEY)).subject == "svc-a"


def test_scopes_from_scope_and_scp_claims():
    caller = verifier(EC_KEY).verify(token(scope="catalog:read lineage:write", scp=["audit:read"]))
    assert caller.scopes == {"catalog:read", "lineage:write", "audit:read"}
    # Claims not configured grant nothing; configured ones do (Entra ID application tokens).
    assert verifier(EC_KEY).verify(token(scope=None, roles=["catalog:write"])).scopes == frozenset()
    entra = TokenVerifier(
        [VerificationKey(EC_KEY.public_key(), None, "test")],
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithms=ALGORITHMS,
        leeway_seconds=30,
        scope_claims=("scp", "roles"),
    )
    assert entra.verify(token(scope="policy:admin", roles=["catalog:write"])).scopes == {"catalog:write"}


def test_delegation_chain_current_actor_first():
    caller = verifier(EC_KEY).verify(token(sub="alice", act={"sub": "airflow", "act": {"sub": "gateway"}}))
    assert caller.actors == ("airflow", "gateway")
    assert caller.principal == "alice (via airflow > gateway)"
    minted = mint_token(
        EC_KEY,
        algorithm="ES256",
        issuer=ISSUER,
        audience=AUDIENCE,
        subject="alice",
        scopes=["catalog:write"],
        ttl_seconds=60,
        actors=("airflow", "gateway"),
    )
    assert verifier(EC_KEY).verify(minted).actors == ("airflow", "gateway")


def test_certificate_bound_token():
    cert_der, other_der = b"certificate-one", b"certificate-two"
    bound = mint_token(
        EC_KEY,
        algorithm="ES256",
        issuer=ISSUER,
        audience=AUDIENCE,
        subject="svc-a",
        scopes=["catalog:read"],
        ttl_seconds=60,
        certificate_der=cert_der,
    )
    v = verifier(EC_KEY)
    assert v.verify(bound, cert_der).subject == "svc-a"
    assert reason_of(lambda: v.verify(bound, other_der)) == "CERTIFICATE_MISMATCH"
    assert reason_of(lambda: v.verify(bound, None)) == "CERTIFICATE_REQUIRED"
    assert jwt.decode(bound, options={"verify_signature": False})["cnf"] == {
        "x5t#S256": certificate_thumbprint(cert_der)
    }
    # A confirmation method this server cannot check is not downgraded to a bearer token.
    assert reason_of(lambda: v.verify(token(cnf={"jkt": "abc"}), cert_der)) == "UNSUPPORTED_CONFIRMATION"
    # Unbound tokens work with or without a client certificate.
    assert v.verify(token(), cert_der).subject == "svc-a"


def test_jwks_loading_skips_encryption_keys_and_ignores_private_parts(tmp_path):
    signing = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(EC_KEY))  # includes the private "d"
    encryption = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(OTHER_EC_KEY.public_key())) | {"use": "enc"}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [signing | {"kid": "s"}, encryption | {"kid": "e"}]}))
    keys = load_verification_keys(path, [])
    assert [k.kid for k in keys] == ["s"]
    assert isinstance(keys[0].key, ec.EllipticCurvePublicKey)


def test_key_files_errors_name_the_file(tmp_path):
    with pytest.raises(KeyLoadError, match="no JWT verification keys"):
        load_verification_keys(None, [])
    bad = tmp_path / "key.pem"
    bad.write_text("garbage")
    with pytest.raises(KeyLoadError, match=r"key\.pem"):
        load_verification_keys(None, [bad])
    with pytest.raises(KeyLoadError, match=r"missing\.json"):
        load_verification_keys(tmp_path / "missing.json", [])


@pytest.mark.parametrize("algorithms", [["none"], ["RS256", "none"], ["XS1"]])
def test_settings_refuse_unsupported_algorithms(algorithms, tmp_path):
    with pytest.raises(SettingsError, match=r"auth\.algorithms"):
        load_settings(data_dir=tmp_path, auth={"algorithms": algorithms})


def test_verified_tokens_are_remembered_only_while_valid_and_with_the_same_keys():
    v = verifier(EC_KEY, leeway=0)
    short = token(exp=int(time.time()) + 1)
    assert v.verify(short).subject == "svc-a"
    assert v.verify(short).subject == "svc-a"  # from memory
    time.sleep(1.1)
    assert reason_of(lambda: v.verify(short)) == "TOKEN_EXPIRED"
    lasting = token()
    v.verify(lasting)
    v.replace_keys([VerificationKey(OTHER_EC_KEY.public_key(), None, "rotated")])
    assert reason_of(lambda: v.verify(lasting)) == "BAD_SIGNATURE"
    bound = mint_token(
        EC_KEY,
        algorithm="ES256",
        issuer=ISSUER,
        audience=AUDIENCE,
        subject="s",
        scopes=[],
        ttl_seconds=60,
        certificate_der=b"one",
    )
    v.replace_keys([VerificationKey(EC_KEY.public_key(), None, "back")])
    v.verify(bound, b"one")
    assert reason_of(lambda: v.verify(bound, b"two")) == "CERTIFICATE_MISMATCH"


def test_a_token_living_longer_than_the_maximum_lifetime_is_refused():
    now = int(time.time())
    strict = TokenVerifier(
        [VerificationKey(EC_KEY.public_key(), None, "test")],
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithms=ALGORITHMS,
        leeway_seconds=30,
        max_lifetime_seconds=3600,
    )
    assert strict.verify(token(iat=now, exp=now + 3600)).subject == "svc-a"
    assert reason_of(lambda: strict.verify(token(iat=now, exp=now + 7200))) == "TOKEN_LIFETIME_EXCEEDED"
    # Without `iat`, the lifetime left is what counts.
    assert strict.verify(token(iat=None, exp=now + 600)).subject == "svc-a"
    assert reason_of(lambda: strict.verify(token(iat=None, exp=now + 7200))) == "TOKEN_LIFETIME_EXCEEDED"
    # The default maximum is 24 hours.
    assert reason_of(lambda: verifier(EC_KEY).verify(token(iat=now, exp=now + 25 * 3600))) == "TOKEN_LIFETIME_EXCEEDED"


class Later(int):
    """Seconds from the moment the test runs (parameters are built when tests are collected)."""


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        pytest.param({"exp": 1e300}, "MALFORMED_TOKEN", id="exp-1e300"),
        pytest.param({"exp": Later(10 * 365 * 86400)}, "TOKEN_LIFETIME_EXCEEDED", id="exp-in-ten-years"),
        pytest.param({"exp": 2.0**53}, "MALFORMED_TOKEN", id="exp-past-year-9999"),
        pytest.param({"iat": -5}, "MALFORMED_TOKEN", id="iat-negative"),
        pytest.param({"iat": "yesterday"}, "MALFORMED_TOKEN", id="iat-text"),
        pytest.param({"iat": Later(3600)}, "TOKEN_NOT_YET_VALID", id="iat-in-the-future"),
        pytest.param({"nbf": Later(400), "exp": Later(300)}, "TOKEN_NOT_YET_VALID", id="nbf"),
    ],
)
def test_time_claims_must_make_sense(claims, reason):
    now = int(time.time())
    claims = {name: now + value if isinstance(value, Later) else value for name, value in claims.items()}
    assert reason_of(lambda: verifier(EC_KEY).verify(token(**claims))) == reason


def test_max_token_lifetime_setting():
    assert load_settings().auth.max_token_lifetime.total_seconds() == 24 * 3600
    assert load_settings(auth={"max_token_lifetime": "PT8H"}).auth.max_token_lifetime.total_seconds() == 8 * 3600
    assert load_settings(auth={"max_token_lifetime": 600}).auth.max_token_lifetime.total_seconds() == 600
    with pytest.raises(SettingsError, match=r"auth\.max_token_lifetime"):
        load_settings(auth={"max_token_lifetime": 0})
