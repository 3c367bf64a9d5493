"""JWT bearer tokens: verification keys, verification, and minting (for dev credentials).

Verification guarantees, for a token to become a `Caller`:
- its header `alg` is one of the configured algorithms (never `none`; HS* only when
  configured explicitly) and fits the type of the key that verifies it (an RSA key never
  verifies an HS256 token: no algorithm confusion);
- its signature verifies with a configured key (the one named by `kid` when both sides have
  key ids);
- `exp`, `iss`, `aud` and `sub` are present; `exp`/`nbf` hold within the configured leeway;
  `iss` and `aud` equal the configured values;
- `exp`, `nbf` and `iat` are numbers of seconds since the epoch before year 10000, `iat` is
  not in the future, and the token lives no longer than the configured maximum: `exp - iat`
  (or `exp - now` without `iat`), within the leeway. A token valid for decades is a stolen
  credential that never expires;
- when it carries `cnf` (RFC 8705), `cnf.x5t#S256` equals the SHA-256 thumbprint of the
  client certificate of the connection it arrived on. Any other confirmation method is refused,
  since a proof of possession that is not checked must not be treated as a bearer token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.exceptions import PyJWTError

from domicile.security.context import Caller

ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
SUPPORTED_ALGORITHMS = ASYMMETRIC_ALGORITHMS | HMAC_ALGORITHMS
CERT_THUMBPRINT_CLAIM = "x5t#S256"
# A delegation chain deeper than this is refused rather than walked.
MAX_ACTOR_DEPTH = 16
DEFAULT_MAX_LIFETIME_SECONDS = 24 * 3600
# The last second a JWT NumericDate may name here (9999-12-31T23:59:59Z).
_LAST_NUMERIC_DATE = 253_402_300_799
VERIFIED_CACHE_SIZE = 10_000


class AuthenticationError(Exception):
    """The credentials presented do not authenticate a caller. `reason` is an UPPER_SNAKE
    code for the error details and the security event log; the message is safe to return to
    the client (it never contains the token)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class KeyLoadError(Exception):
    """A key file could not be read or holds no usable verification key."""


@dataclass(frozen=True)
class VerificationKey:
    """One key that may verify tokens; `kid` None when the source gives no key id."""

    key: Any  # a cryptography public key, or bytes for HMAC keys from a JWKS
    kid: str | None
    source: str


def load_verification_keys(jwks_file: Path | None, public_key_files: Iterable[Path]) -> list[VerificationKey]:
    """Keys from a JWKS file (keys with `use: enc` are skipped) and PEM public-key files.
    Raises KeyLoadError naming the file when one is unreadable, invalid or holds no key."""
    keys: list[VerificationKey] = []
    if jwks_file is not None:
        keys.extend(_load_jwks(jwks_file))
    for path in public_key_files:
        try:
            key = load_pem_public_key(path.read_bytes())
        except OSError as exc:
            raise KeyLoadError(f"JWT public key {path}: {exc.strerror}") from None
        except ValueError:
            raise KeyLoadError(f"JWT public key {path}: not a PEM public key") from None
        keys.append(VerificationKey(key=key, kid=None, source=str(path)))
    if not keys:
        raise KeyLoadError("no JWT verification keys configured (auth.jwks_file or auth.public_key_files)")
    return keys


def _load_jwks(path: Path) -> list[VerificationKey]:
    try:
        document = json.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise KeyLoadError(f"JWKS file {path}: {exc.strerror}") from None
    except ValueError:
        raise KeyLoadError(f"JWKS file {path}: not valid JSON") from None
    return keys_from_jwks(document, f"JWKS file {path}")


def keys_from_jwks(document: Any, source: str, *, skip_unusable: bool = False) -> list[VerificationKey]:
    """The signature verification keys of a parsed JWKS document (keys with `use: enc` are
    skipped, private members ignored). KeyLoadError naming `source` when the document is not a
    key set, a key is invalid (unless `skip_unusable`: an identity provider may publish key
    types this server cannot use beside the ones it signs with), or no key is left."""
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise KeyLoadError(f"{source}: expected an object with a 'keys' list")
    keys = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or entry.get("use") == "enc":
            continue
        # Only public material is needed; never load a private key by accident.
        public = {k: v for k, v in entry.items() if k not in {"d", "p", "q", "dp", "dq", "qi"}}
        try:
            jwk = jwt.PyJWK(public)
        except PyJWTError as exc:
            if skip_unusable:
                continue
            raise KeyLoadError(f"{source}: key #{index}: {exc}") from None
        keys.append(VerificationKey(key=jwk.key, kid=jwk.key_id, source=f"{source}#{index}"))
    if not keys:
        raise KeyLoadError(f"{source}: no signature verification keys")
    return keys


def check_algorithms(algorithms: Sequence[str]) -> None:
    """ValueError unless every algorithm is supported; `none` never is."""
    for name in algorithms:
        if name not in SUPPORTED_ALGORITHMS:
            raise ValueError(
                f"JWT algorithm {name!r} is not accepted (supported: {', '.join(sorted(SUPPORTED_ALGORITHMS))})"
            )


_EC_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}


def key_fits(algorithm: str, key: Any) -> bool:
    """True when `key` is of the type `algorithm` needs (the guard against algorithm confusion)."""
    if algorithm[:2] in ("RS", "PS"):
        return isinstance(key, rsa.RSAPublicKey)
    if algorithm in _EC_CURVES:
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, _EC_CURVES[algorithm])
    if algorithm == "EdDSA":
        return isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey))
    if algorithm in HMAC_ALGORITHMS:
        return isinstance(key, bytes)
    return False


def certificate_thumbprint(certificate_der: bytes) -> str:
    """RFC 8705 `x5t#S256`: base64url (unpadded) SHA-256 of the DER certificate."""
    digest = hashlib.sha256(certificate_der).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


DEFAULT_SCOPE_CLAIMS = ("scope", "scp")


def scopes_of(claims: dict[str, Any], names: Sequence[str] = DEFAULT_SCOPE_CLAIMS) -> frozenset[str]:
    """Granted scopes, from the claims `names`: by default `scope` (space-separated string,
    RFC 8693/9068) and/or `scp` (list or string, as several identity providers issue); each
    claim may be a space-separated string or a list of strings (e.g. Entra ID's `roles`)."""
    granted: set[str] = set()
    for name in names:
        value = claims.get(name)
        if isinstance(value, str):
            granted.update(value.split())
        elif isinstance(value, list):
            granted.update(item for item in value if isinstance(item, str))
    return frozenset(granted)


def text_claims(claims: dict[str, Any]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The claims whose value is text or a list of text (the text items), sorted by name: what
    `Caller.claim` answers (configuration may grant by claim, e.g. lineage namespace owners)."""
    found: list[tuple[str, tuple[str, ...]]] = []
    for name, value in sorted(claims.items()):
        if isinstance(value, str):
            found.append((name, (value,)))
        elif isinstance(value, list):
            found.append((name, tuple(item for item in value if isinstance(item, str))))
    return tuple(found)


def actors_of(claims: dict[str, Any]) -> tuple[str, ...]:
    """The delegation chain of the `act` claim (RFC 8693 section 4.1), current actor first.
    AuthenticationError when the claim is malformed or too deep."""
    actors: list[str] = []
    act = claims.get("act")
    while act is not None:
        if not isinstance(act, dict) or not isinstance(act.get("sub"), str) or not act["sub"]:
            raise AuthenticationError("MALFORMED_TOKEN", "token 'act' claim must be an object with a 'sub'")
        if len(actors) == MAX_ACTOR_DEPTH:
            raise AuthenticationError("MALFORMED_TOKEN", "token delegation chain is too deep")
        actors.append(act["sub"])
        act = act.get("act")
    return tuple(actors)


class TokenVerifier:
    """Verifies bearer tokens against configured keys, issuer and audience (see module doc)."""

    def __init__(
        self,
        keys: Sequence[VerificationKey],
        *,
        issuer: str,
        audience: str,
        algorithms: Sequence[str],
        leeway_seconds: float,
        scope_claims: Sequence[str] = DEFAULT_SCOPE_CLAIMS,
        max_lifetime_seconds: float = DEFAULT_MAX_LIFETIME_SECONDS,
    ) -> None:
        check_algorithms(algorithms)
        if not issuer or not audience:
            raise ValueError("JWT issuer and audience must both be configured")
        self.keys = list(keys)
        self.issuer = issuer
        self.audience = audience
        self.algorithms = frozenset(algorithms)
        self.leeway = leeway_seconds
        self.scope_claims = tuple(scope_claims)
        self.max_lifetime = max_lifetime_seconds
        # (token, client certificate) -> (caller, exp). Services reuse one token for many calls;
        # a signature check costs far more than the routing decision it guards.
        self._verified: dict[tuple[str, bytes | None], tuple[Caller, float]] = {}

    def replace_keys(self, keys: Sequence[VerificationKey]) -> None:
        """Use `keys` for tokens verified from now on (key rotation); forgets every token
        verified with the previous keys."""
        self.keys = list(keys)
        self._verified = {}

    def verify(self, token: str, client_certificate_der: bytes | None = None) -> Caller:
        """The caller a token authenticates; AuthenticationError otherwise. A token that
        verified before over the same certificate is answered from memory until it expires."""
        cache_key = (token, client_certificate_der)
        hit = self._verified.get(cache_key)
        if hit is not None:
            if time.time() < hit[1] + self.leeway:
                return hit[0]
            del self._verified[cache_key]
        caller, expires = self._verify(token, client_certificate_der)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()  # bounded memory; refilled by the next calls
        self._verified[cache_key] = (caller, expires)
        return caller

    def verify_uncached(self, token: str) -> tuple[Caller, float]:
        """The caller and the expiry (epoch seconds) of a token without a certificate binding,
        always checked anew: for one-time tokens, which must not be answered from memory."""
        return self._verify(token, None)

    def _verify(self, token: str, client_certificate_der: bytes | None) -> tuple[Caller, float]:
        try:
            header = jwt.get_unverified_header(token)
        except PyJWTError:
            raise AuthenticationError("MALFORMED_TOKEN", "bearer token is not a JWT") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            raise AuthenticationError("ALGORITHM_NOT_ALLOWED", f"token algorithm {algorithm!r} is not accepted")
        candidates = self._candidates(algorithm, header.get("kid"))
        if not candidates:
            raise AuthenticationError("UNKNOWN_KEY", "no configured key can verify this token")
        claims = self._decode(token, algorithm, candidates)
        self._check_times(claims)
        actors = actors_of(claims)
        self._check_confirmation(claims, client_certificate_der)
        scopes = scopes_of(claims, self.scope_claims)
        caller = Caller(subject=claims["sub"], actors=actors, scopes=scopes, claims=text_claims(claims))
        return caller, float(claims["exp"])

    def _candidates(self, algorithm: str, kid: Any) -> list[VerificationKey]:
        fitting = [k for k in self.keys if key_fits(algorithm, k.key)]
        if isinstance(kid, str):
            named = [k for k in fitting if k.kid == kid]
            # Keys without an id (PEM files) stay candidates: a kid cannot rule them out.
            return named or [k for k in fitting if k.kid is None]
        return fitting

    def _decode(self, token: str, algorithm: str, candidates: list[VerificationKey]) -> dict[str, Any]:
        for candidate in candidates:
            try:
                claims = jwt.decode(
                    token,
                    candidate.key,
                    algorithms=[algorithm],
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=self.leeway,
                    options={"require": ["exp", "iss", "aud", "sub"]},
                )
            except jwt.InvalidSignatureError:
                continue  # another configured key may have signed it
            except jwt.ExpiredSignatureError:
                raise AuthenticationError("TOKEN_EXPIRED", "token has expired") from None
            except jwt.ImmatureSignatureError:
                raise AuthenticationError("TOKEN_NOT_YET_VALID", "token is not valid yet (nbf/iat)") from None
            except jwt.InvalidAudienceError:
                raise AuthenticationError("WRONG_AUDIENCE", "token audience does not name this service") from None
            except jwt.InvalidIssuerError:
                raise AuthenticationError("WRONG_ISSUER", "token issuer is not trusted") from None
            except jwt.MissingRequiredClaimError as exc:
                raise AuthenticationError("MISSING_CLAIM", f"token lacks the {exc.claim!r} claim") from None
            except PyJWTError:
                raise AuthenticationError("MALFORMED_TOKEN", "token could not be decoded") from None
            if not isinstance(claims.get("sub"), str) or not claims["sub"]:
                raise AuthenticationError("MISSING_CLAIM", "token 'sub' must be a non-empty string")
            return claims
        raise AuthenticationError("BAD_SIGNATURE", "token signature does not verify")

    def _check_times(self, claims: dict[str, Any]) -> None:
        """The time claims' sanity and the lifetime bound (see the module docstring); the
        signature and `exp`/`nbf` against the clock were checked by PyJWT already."""
        times: dict[str, float] = {}
        for name in ("exp", "nbf", "iat"):
            value = claims.get(name)
            if value is None:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 <= value <= _LAST_NUMERIC_DATE  # also refuses NaN and infinities
            ):
                raise AuthenticationError("MALFORMED_TOKEN", f"token {name!r} claim is not a time")
            times[name] = float(value)
        start = times.get("iat", time.time())
        if times["exp"] - start > self.max_lifetime + self.leeway:
            raise AuthenticationError(
                "TOKEN_LIFETIME_EXCEEDED",
                f"token lives longer than the {self.max_lifetime:g} s this server accepts (auth.max_token_lifetime)",
            )

    @staticmethod
    def _check_confirmation(claims: dict[str, Any], client_certificate_der: bytes | None) -> None:
        confirmation = claims.get("cnf")
        if confirmation is None:
            return
        if not isinstance(confirmation, dict) or not isinstance(confirmation.get(CERT_THUMBPRINT_CLAIM), str):
            raise AuthenticationError(
                "UNSUPPORTED_CONFIRMATION",
                "token 'cnf' claim has no x5t#S256 certificate binding this server can check",
            )
        if client_certificate_der is None:
            raise AuthenticationError(
                "CERTIFICATE_REQUIRED", "certificate-bound token presented without a client certificate"
            )
        expected = confirmation[CERT_THUMBPRINT_CLAIM].encode("ascii", "replace")
        actual = certificate_thumbprint(client_certificate_der).encode("ascii")
        if not hmac.compare_digest(expected, actual):
            raise AuthenticationError("CERTIFICATE_MISMATCH", "token is bound to a different client certificate")


def mint_token(
    private_key: Any,
    *,
    algorithm: str,
    issuer: str,
    audience: str,
    subject: str,
    scopes: Iterable[str],
    ttl_seconds: float,
    kid: str | None = None,
    certificate_der: bytes | None = None,
    actors: Sequence[str] = (),
    now: float | None = None,
    token_id: str | None = None,
) -> str:
    """A signed JWT with `iss`, `aud`, `sub`, `iat`, `nbf`, `exp`, `scope` and, when given, a
    certificate binding (`cnf.x5t#S256`), a delegation chain (`act`, current actor first) and
    a token id (`jti`)."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(ttl_seconds),
        "scope": " ".join(sorted(set(scopes))),
    }
    if token_id is not None:
        claims["jti"] = token_id
    if certificate_der is not None:
        claims["cnf"] = {CERT_THUMBPRINT_CLAIM: certificate_thumbprint(certificate_der)}
    act: dict[str, Any] | None = None
    for actor in reversed(actors):
        act = {"sub": actor, **({"act": act} if act else {})}
    if act is not None:
        claims["act"] = act
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, private_key, algorithm=algorithm, headers=headers)
