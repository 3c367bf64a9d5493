"""An OpenID Connect issuer: its metadata (discovery) and its current signing keys (JWKS).

`IssuerKeys(issuer, ...)` is the one component that talks to the identity provider; the token
verifier of the gRPC/HTTP API takes its keys from it, and so can anything else that must trust
the same issuer (the console's sign-in). What it guarantees:

- **Discovery** (OpenID Connect Discovery 1.0): `{issuer}/.well-known/openid-configuration`
  is fetched over HTTPS, and accepted only when its `issuer` equals the configured issuer
  exactly and its `jwks_uri` is HTTPS too. `metadata` is that document (`IssuerMetadata`).
- **Keys**: the `jwks_uri` key set is fetched over HTTPS; `keys` is the last good set. It is
  fetched again when its `Cache-Control: max-age` runs out (`refresh_seconds` when the IdP
  sends none; never sooner than `min_refresh_seconds`, never later than a day).
- **Unknown key ids**: `refetch()` (called when a token names a key the set lacks, as after a
  rotation at the IdP) fetches at once, at most once per `min_refresh_seconds`; concurrent
  callers share one fetch.
- **Outages**: a failed fetch changes nothing -- the last good keys stay in use, holders of
  valid tokens are not locked out -- and is retried with backoff (1 s doubling to a minute).
  The last good document and keys are also kept in `cache_file`, so a server restarted while
  the IdP is down still starts with them.
- Changes are announced to `subscribe`d callbacks and recorded as `keys_reload` security
  events (outcome `ok` on a new key set, `error` once when the IdP becomes unreachable).

HTTP is accepted instead of HTTPS only for an issuer on a loopback address (a local Keycloak).
Redirects are not followed; responses over 1 MiB are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from domicile.config import is_loopback
from domicile.security import events as ev
from domicile.security.events import SecurityEventLog
from domicile.security.tokens import KeyLoadError, VerificationKey, keys_from_jwks
from domicile.telemetry.metrics import IDP_KEY_FETCHES

log = logging.getLogger(__name__)

DISCOVERY_PATH = "/.well-known/openid-configuration"
MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_CACHE_SECONDS = 24 * 3600
_RETRY_FIRST, _RETRY_MAX = 1.0, 60.0
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-cache|no-store)\s*(?:,|$)", re.IGNORECASE)


class IssuerError(Exception):
    """The identity provider could not be reached or answered something unusable; `reason` is
    an UPPER_SNAKE code for the security event log."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class IssuerMetadata:
    """The issuer's discovery document: the endpoints a relying party needs, and all of it in
    `document` (e.g. `end_session_endpoint`, `scopes_supported`)."""

    issuer: str
    jwks_uri: str
    authorization_endpoint: str = ""
    token_endpoint: str = ""
    # Where a relying party sends the browser to end the IdP's session too (OpenID Connect
    # RP-Initiated Logout); "" when the IdP publishes none (or none that is a valid URL).
    end_session_endpoint: str = ""
    document: dict[str, Any] = field(default_factory=dict, compare=False)


def check_issuer_url(issuer: str) -> None:
    """ValueError unless `issuer` is an https URL (or http on a loopback host) without query or
    fragment, as OpenID Connect Discovery requires of an issuer identifier."""
    _check_url(issuer, "issuer", allow_http=True)
    parts = urlsplit(issuer)
    if parts.query or parts.fragment:
        raise ValueError(f"issuer {issuer!r} must not have a query or fragment")


def _check_url(url: str, what: str, *, allow_http: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and allow_http and is_loopback(parts.hostname):
        return
    raise ValueError(f"{what} {url!r} must be an https:// URL (http:// only on a loopback address)")


def cache_lifetime(cache_control: str | None, *, default: float, minimum: float) -> float:
    """Seconds a response may be used, from its Cache-Control header: `max-age`, 0 for
    `no-cache`/`no-store`, else `default`; always within [minimum, one day]."""
    seconds = default
    if cache_control:
        if _NO_CACHE.search(cache_control):
            seconds = 0.0
        elif match := _MAX_AGE.search(cache_control):
            seconds = float(match.group(1))
    return min(max(seconds, minimum), float(MAX_CACHE_SECONDS))


KeysCallback = Callable[[Sequence[VerificationKey]], None]


class IssuerKeys:
    """The issuer's metadata and current key set; see the module docstring."""

    def __init__(
        self,
        issuer: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        refresh_seconds: float = 3600.0,
        min_refresh_seconds: float = 30.0,
        timeout_seconds: float = 10.0,
        cache_file: Path | None = None,
        events: SecurityEventLog | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_issuer_url(issuer)
        self.issuer = issuer
        self._ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        self._refresh = refresh_seconds
        self._min_refresh = min_refresh_seconds
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._cache_file = cache_file
        self._events = events
        self._clock = clock
        self._metadata: IssuerMetadata | None = None
        self._keys: tuple[VerificationKey, ...] = ()
        self._jwks: list[dict[str, Any]] = []  # the public JWKs of `_keys`, to tell a change
        self._subscribers: list[KeysCallback] = []
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._next_refresh = float("-inf")
        self._last_attempt = float("-inf")
        self._failures = 0
        self.last_success: float | None = None  # wall-clock time of the last good fetch

    # ---- what callers read -------------------------------------------------------------

    @property
    def metadata(self) -> IssuerMetadata | None:
        """The discovery document of the last good fetch; None before the first one."""
        return self._metadata

    @property
    def keys(self) -> tuple[VerificationKey, ...]:
        """The current key set (the last good one; empty before the first)."""
        return self._keys

    def subscribe(self, callback: KeysCallback) -> None:
        """Call `callback(keys)` now if keys are known, and whenever the key set changes."""
        self._subscribers.append(callback)
        if self._keys:
            callback(self._keys)

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Fetch the metadata and keys once (falling back to `cache_file` when the IdP cannot
        be reached), then keep them fresh in the background. Never raises for an unreachable
        IdP: the server starts, without keys if none were ever fetched (every token is then
        refused until the IdP answers)."""
        self._session = aiohttp.ClientSession(
            timeout=self._timeout, connector=aiohttp.TCPConnector(ssl=self._ssl), trust_env=True
        )
        if not await self._fetch():
            self._load_cache()
        self._task = asyncio.create_task(self._follow(), name="oidc-issuer-keys")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- the token verifier's key source (domicile.security.guard.KeySource) ----------

    def check(self) -> None:
        """Nothing to do per token: the key set is refreshed in the background."""

    async def refetch(self) -> bool:
        """Fetch the key set now, unless a fetch started less than `min_refresh_seconds` ago
        (then wait for it if it is still running). True when the key set changed."""
        before = self._jwks
        if self._lock.locked():
            async with self._lock:  # another caller's fetch is under way: share its result
                return self._jwks != before
        if self._clock() - self._last_attempt < self._min_refresh:
            return False
        await self._fetch()
        return self._jwks != before

    # ---- fetching ----------------------------------------------------------------------

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(max(0.0, self._next_refresh - self._clock()))
            if self._clock() >= self._next_refresh:  # a refetch may have moved it meanwhile
                await self._fetch()

    async def _fetch(self) -> bool:
        """One fetch of the discovery document and the key set; True on success."""
        async with self._lock:
            self._last_attempt = self._clock()
            try:
                document, _ = await self._get_json(self.issuer.rstrip("/") + DISCOVERY_PATH, "discovery document")
                metadata = self._parse_metadata(document)
                document, cache_control = await self._get_json(metadata.jwks_uri, "JWKS")
                jwks = _public_jwks(document)
                keys = keys_from_jwks({"keys": jwks}, f"JWKS {metadata.jwks_uri}", skip_unusable=True)
            except KeyLoadError as exc:
                self._failed(IssuerError("INVALID_JWKS", str(exc)))
                return False
            except IssuerError as exc:
                self._failed(exc)
                return False
            lifetime = cache_lifetime(cache_control, default=self._refresh, minimum=self._min_refresh)
            self._next_refresh = self._clock() + lifetime
            self._accept(metadata, keys, jwks)
            return True

    async def _get_json(self, url: str, what: str) -> tuple[Any, str | None]:
        assert self._session is not None, "start() first"
        try:
            async with self._session.get(url, allow_redirects=False, headers={"Accept": "application/json"}) as r:
                if r.status != 200:
                    raise IssuerError("IDP_ERROR", f"{what} {url}: HTTP {r.status}")
                body = await r.content.read(MAX_DOCUMENT_BYTES + 1)
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise IssuerError("IDP_ERROR", f"{what} {url}: larger than {MAX_DOCUMENT_BYTES} bytes")
                cache_control = r.headers.get("Cache-Control")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise IssuerError("IDP_UNREACHABLE", f"{what} {url}: {exc or type(exc).__name__}") from None
        try:
            return json.loads(body), cache_control
        except ValueError:
            raise IssuerError("IDP_ERROR", f"{what} {url}: not JSON") from None

    def _parse_metadata(self, document: Any) -> IssuerMetadata:
        if not isinstance(document, dict):
            raise IssuerError("INVALID_DISCOVERY", "discovery document is not a JSON object")
        if document.get("issuer") != self.issuer:
            raise IssuerError(
                "ISSUER_MISMATCH",
                f"discovery document names issuer {document.get('issuer')!r}, not the configured {self.issuer!r}",
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise IssuerError("INVALID_DISCOVERY", "discovery document has no jwks_uri")
        try:
            _check_url(jwks_uri, "jwks_uri", allow_http=urlsplit(self.issuer).scheme == "http")
        except ValueError as exc:
            raise IssuerError("INVALID_DISCOVERY", str(exc)) from None
        return IssuerMetadata(
            issuer=self.issuer,
            jwks_uri=jwks_uri,
            authorization_endpoint=str(document.get("authorization_endpoint", "")),
            token_endpoint=str(document.get("token_endpoint", "")),
            end_session_endpoint=self._optional_url(document, "end_session_endpoint"),
            document=document,
        )

    def _optional_url(self, document: dict[str, Any], name: str) -> str:
        """An optional endpoint of the discovery document: "" when absent, or when it is no
        URL a browser may be sent to (it is optional: its absence disables a feature)."""
        url = document.get(name)
        if url is None:
            return ""
        try:
            if not isinstance(url, str):
                raise ValueError(f"{name} is not a string")
            _check_url(url, name, allow_http=urlsplit(self.issuer).scheme == "http")
        except ValueError as exc:
            log.warning("identity provider %s: %s; ignored", self.issuer, exc)
            return ""
        return url

    def _accept(self, metadata: IssuerMetadata, keys: list[VerificationKey], jwks: list[dict[str, Any]]) -> None:
        IDP_KEY_FETCHES.labels("ok").inc()
        self._metadata = metadata
        self.last_success = time.time()
        if self._failures:
            log.info("identity provider %s is reachable again after %d failed fetches", self.issuer, self._failures)
            self._failures = 0
        if jwks == self._jwks:
            return
        self._keys, self._jwks = tuple(keys), jwks
        kids = [k.kid for k in keys if k.kid]
        if self._events is not None:
            self._events.record(ev.KEYS_RELOAD, outcome="ok", keys=len(keys), kids=kids, issuer=self.issuer)
        log.info("JWT keys of %s: %d (%s)", self.issuer, len(keys), ", ".join(kids))
        for callback in self._subscribers:
            callback(self._keys)
        self._save_cache(metadata)

    def _failed(self, error: IssuerError) -> None:
        IDP_KEY_FETCHES.labels("error").inc()
        self._failures += 1
        delay = min(_RETRY_FIRST * 2 ** (self._failures - 1), _RETRY_MAX, self._refresh)
        self._next_refresh = self._clock() + delay
        if self._failures == 1:
            # One event and warning per outage; the retries that follow are logged at debug.
            if self._events is not None:
                self._events.record(ev.KEYS_RELOAD, outcome="error", reason=error.reason, error=str(error))
            log.warning(
                "cannot refresh JWT keys from %s (keeping %d last good keys): %s", self.issuer, len(self._keys), error
            )
        else:
            log.debug("JWT key refresh failed again (%d): %s", self._failures, error)

    # ---- the last good key set across restarts -----------------------------------------

    def _save_cache(self, metadata: IssuerMetadata) -> None:
        if self._cache_file is None:
            return
        record = {"issuer": self.issuer, "metadata": metadata.document, "jwks": {"keys": self._jwks}}
        temporary = self._cache_file.with_name(self._cache_file.name + ".tmp")
        try:
            self._cache_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(record, out)
            os.replace(temporary, self._cache_file)
        except OSError as exc:
            log.warning("cannot keep the JWT key set in %s: %s", self._cache_file, exc)

    def _load_cache(self) -> None:
        if self._cache_file is None or not self._cache_file.exists():
            log.error("no JWT keys from %s yet: every token is refused until it answers", self.issuer)
            return
        try:
            record = json.loads(self._cache_file.read_text("utf-8"))
            if record.get("issuer") != self.issuer:
                raise ValueError(f"it is for issuer {record.get('issuer')!r}")
            metadata = self._parse_metadata(record["metadata"])
            jwks = _public_jwks(record["jwks"])
            keys = keys_from_jwks({"keys": jwks}, str(self._cache_file), skip_unusable=True)
        except (OSError, ValueError, KeyError, TypeError, IssuerError, KeyLoadError) as exc:
            log.error("cannot use the cached JWT key set %s: %s", self._cache_file, exc)
            return
        log.warning("identity provider unreachable: using the key set cached in %s", self._cache_file)
        self._metadata = metadata
        self._keys, self._jwks = tuple(keys), jwks
        for callback in self._subscribers:
            callback(self._keys)


def _public_jwks(document: Any) -> list[dict[str, Any]]:
    """The asymmetric key entries of a JWKS without private members. A symmetric (`oct`) key
    published by an IdP would let anyone mint tokens: never used from there."""
    private = {"d", "p", "q", "dp", "dq", "qi", "oth"}
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise KeyLoadError("expected an object with a 'keys' list")
    return [
        {k: v for k, v in entry.items() if k not in private}
        for entry in entries
        if isinstance(entry, dict) and entry.get("kty") != "oct"
    ]
