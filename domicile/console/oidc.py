"""Production sign-in to the console: the OpenID Connect authorization code flow with PKCE
(RFC 7636, S256), through Authlib, against the issuer whose tokens the API accepts
(`auth.issuer`; its endpoints and keys come from `domicile.security.oidc.IssuerKeys`).

1. `begin`: a pending sign-in (random `state`, PKCE verifier, `nonce`) is kept in server memory
   for `PENDING_SECONDS`; the handler also puts the state in a short-lived cookie and sends the
   browser to the IdP's authorization endpoint.
2. `finish` (the IdP's redirect back): the state must be pending and equal the cookie's (so
   nobody can sign a victim's browser in to the attacker's account); the code is exchanged at
   the token endpoint with the verifier; the ID token must be signed by one of the issuer's
   current keys, for this client, with the pending nonce; the access token is verified exactly
   as the API verifies a bearer token (issuer, audience, keys, `auth.scope_claims`) and its
   scopes become the session's: the console checks them against the same scope table. A
   user granted none of Domicile's scopes is not signed in.

Every failure is an `AuthenticationError` whose reason the console records as an
`auth_failure` security event.

3. `end_session_url` (sign-out): signing out of the console ends its session; when the IdP
   publishes an `end_session_endpoint`, the browser is then sent there with the session's ID
   token as `id_token_hint` and `post_logout_redirect_uri` (OpenID Connect RP-Initiated
   Logout 1.0), so the IdP ends its own session too and the next sign-in asks for the
   password again instead of signing the same user straight back in.
"""

from __future__ import annotations

import hmac
import secrets
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import NamedTuple
from urllib.parse import urlencode, urlsplit

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.httpx_client import AsyncOAuth2Client

from domicile.security.context import Caller
from domicile.security.oidc import IssuerKeys, IssuerMetadata
from domicile.security.scopes import ALL_SCOPES
from domicile.security.tokens import AuthenticationError, TokenVerifier

# How long the browser may take at the identity provider (typing a password, a second factor).
PENDING_SECONDS = 600.0
# Beyond this many unfinished sign-ins the oldest are forgotten: memory stays bounded.
MAX_PENDING = 10_000


class SignedIn(NamedTuple):
    caller: Caller
    id_token: str  # kept with the session: the `id_token_hint` of its sign-out at the IdP


class _Pending(NamedTuple):
    code_verifier: str
    nonce: str
    expires: float  # monotonic


class OidcSignIn:
    """The console's relying party at the identity provider; see the module docstring."""

    def __init__(
        self,
        issuer_keys: IssuerKeys,
        access_tokens: TokenVerifier,
        *,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        post_logout_redirect_uri: str,
        scopes: Sequence[str],
        ssl_context: ssl.SSLContext,
        timeout_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._issuer_keys = issuer_keys
        self._access_tokens = access_tokens
        self._client_id = client_id
        self._client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.post_logout_redirect_uri = post_logout_redirect_uri
        self._scope = " ".join(scopes)
        self._ssl = ssl_context
        self._timeout = timeout_seconds
        self._clock = clock
        # ID tokens: the same issuer and keys as access tokens, but addressed to this client.
        self._id_tokens = TokenVerifier(
            [],
            issuer=access_tokens.issuer,
            audience=client_id,
            algorithms=sorted(access_tokens.algorithms),
            leeway_seconds=access_tokens.leeway,
        )
        issuer_keys.subscribe(self._id_tokens.replace_keys)
        self._pending: OrderedDict[str, _Pending] = OrderedDict()

    @property
    def issuer(self) -> str:
        return self._issuer_keys.issuer

    def _client(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self._client_id,
            client_secret=self._client_secret or None,
            token_endpoint_auth_method="client_secret_basic" if self._client_secret else "none",
            scope=self._scope,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            verify=self._ssl,
            timeout=self._timeout,
            follow_redirects=False,
        )

    def _metadata(self) -> IssuerMetadata:
        metadata = self._issuer_keys.metadata
        if metadata is None or not metadata.authorization_endpoint or not metadata.token_endpoint:
            raise AuthenticationError(
                "IDP_UNAVAILABLE", f"the identity provider {self.issuer} has not answered discovery yet"
            )
        return metadata

    def begin(self) -> tuple[str, str]:
        """Start a sign-in: (the IdP authorization URL to send the browser to, its state)."""
        metadata = self._metadata()
        now = self._clock()
        while self._pending and (
            len(self._pending) >= MAX_PENDING or next(iter(self._pending.values())).expires <= now
        ):
            self._pending.popitem(last=False)
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)  # 86 characters of the unreserved set (RFC 7636 4.1)
        url, _ = self._client().create_authorization_url(
            metadata.authorization_endpoint, state=state, code_verifier=verifier, nonce=nonce
        )
        self._pending[state] = _Pending(verifier, nonce, now + PENDING_SECONDS)
        return url, state

    async def finish(
        self,
        *,
        state: str,
        code: str,
        browser_state: str | None,
        issuer: str = "",
        error: str = "",
        error_description: str = "",
    ) -> SignedIn:
        """The caller the IdP's redirect back signs in (see the module docstring);
        AuthenticationError with a reason otherwise. `issuer` is the answer's `iss` parameter
        (RFC 9207), checked when the IdP sends one."""
        pending = self._pending.pop(state, None) if state else None
        if issuer and issuer != self.issuer:
            raise AuthenticationError("ISSUER_MISMATCH", f"the answer comes from {issuer!r}, not {self.issuer!r}")
        if error:
            detail = f": {error_description}" if error_description else ""
            raise AuthenticationError("IDP_REFUSED", f"the identity provider refused the sign-in ({error}{detail})")
        if not state or browser_state is None or not hmac.compare_digest(state.encode(), browser_state.encode()):
            raise AuthenticationError("STATE_MISMATCH", "this sign-in was not started by this browser")
        if pending is None or pending.expires <= self._clock():
            raise AuthenticationError("SIGN_IN_EXPIRED", "this sign-in expired or was already used; start again")
        if not code:
            raise AuthenticationError("MISSING_CODE", "the identity provider sent no authorization code")
        metadata = self._metadata()
        async with self._client() as client:
            try:
                token = await client.fetch_token(
                    metadata.token_endpoint, code=code, code_verifier=pending.code_verifier
                )
            except (AuthlibBaseError, httpx.HTTPError, ValueError) as exc:
                raise AuthenticationError(
                    "TOKEN_EXCHANGE_FAILED", f"the identity provider did not exchange the code: {exc}"
                ) from None
        id_token, access_token = token.get("id_token"), token.get("access_token")
        if not isinstance(id_token, str) or not isinstance(access_token, str):
            raise AuthenticationError("MISSING_TOKEN", "the identity provider's answer lacks an ID or access token")
        identity = await self._verify(self._id_tokens, id_token, "ID token")
        if identity.claim("nonce") != (pending.nonce,):
            raise AuthenticationError("NONCE_MISMATCH", "the ID token is not the answer to this sign-in")
        caller = await self._verify(self._access_tokens, access_token, "access token")
        if caller.subject != identity.subject:
            raise AuthenticationError("SUBJECT_MISMATCH", "the ID and access tokens name different users")
        scopes = caller.scopes & frozenset(ALL_SCOPES)
        if not scopes:
            raise AuthenticationError("NO_SCOPES", f"{caller.principal} is granted none of Domicile's scopes")
        return SignedIn(Caller(caller.subject, caller.actors, scopes, caller.claims), id_token)

    def end_session_url(self, id_token: str) -> str | None:
        """Where to send the browser after a sign-out so that the IdP ends its session too, then
        sends it back to `post_logout_redirect_uri`; None when the IdP publishes no
        `end_session_endpoint` (see the module docstring)."""
        metadata = self._issuer_keys.metadata
        if metadata is None or not metadata.end_session_endpoint or not id_token:
            return None
        endpoint = metadata.end_session_endpoint
        query = urlencode(
            {
                "id_token_hint": id_token,
                "post_logout_redirect_uri": self.post_logout_redirect_uri,
                "client_id": self._client_id,
            }
        )
        return f"{endpoint}{'&' if urlsplit(endpoint).query else '?'}{query}"

    async def _verify(self, verifier: TokenVerifier, token: str, what: str) -> Caller:
        try:
            try:
                return verifier.verify_uncached(token)[0]
            except AuthenticationError as exc:
                # Signed with a key published since the last fetch (a rotation at the IdP).
                if exc.reason != "UNKNOWN_KEY" or not await self._issuer_keys.refetch():
                    raise
                return verifier.verify_uncached(token)[0]
        except AuthenticationError as exc:
            raise AuthenticationError(exc.reason, f"{what}: {exc}") from None
