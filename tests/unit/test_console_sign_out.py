"""Sign-out at the identity provider (RP-initiated logout): the discovery document's
`end_session_endpoint`, kept only when a browser may be sent there, and the URL the console
sends the browser to (the browser flow is tested against a real provider in
tests/browser/test_console_oidc.py)."""

from __future__ import annotations

import ssl
from urllib.parse import parse_qs, urlsplit

import pytest

from domicile.console.oidc import OidcSignIn
from domicile.security.oidc import IssuerKeys
from domicile.security.tokens import TokenVerifier

ISSUER = "https://idp.example"


def discovery(**extra) -> dict:
    return {"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks", "authorization_endpoint": f"{ISSUER}/auth", **extra}


@pytest.mark.parametrize(
    ("endpoint", "kept"),
    [
        (f"{ISSUER}/session/end", f"{ISSUER}/session/end"),
        (None, ""),
        ("javascript:alert(1)", ""),
        ("http://idp.example/logout", ""),  # plain HTTP beyond loopback
        (42, ""),
    ],
)
def test_end_session_endpoint_is_kept_only_when_a_browser_may_go_there(endpoint, kept):
    document = discovery() if endpoint is None else discovery(end_session_endpoint=endpoint)
    assert IssuerKeys(ISSUER)._parse_metadata(document).end_session_endpoint == kept


def sign_in_with(document: dict) -> OidcSignIn:
    keys = IssuerKeys(ISSUER)
    keys._metadata = keys._parse_metadata(document)
    verifier = TokenVerifier([], issuer=ISSUER, audience="domicile", algorithms=["ES256"], leeway_seconds=30)
    return OidcSignIn(
        keys,
        verifier,
        client_id="console",
        client_secret="",
        redirect_uri="https://console.example/signin/callback",
        post_logout_redirect_uri="https://console.example/signedout",
        scopes=["openid"],
        ssl_context=ssl.create_default_context(),
        timeout_seconds=5,
    )


def test_sign_out_sends_the_browser_to_the_idp_with_the_id_token_as_hint():
    url = sign_in_with(discovery(end_session_endpoint=f"{ISSUER}/logout?realm=a")).end_session_url("the.id.token")
    assert url is not None
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{ISSUER}/logout"
    assert parse_qs(parts.query) == {
        "realm": ["a"],
        "id_token_hint": ["the.id.token"],
        "post_logout_redirect_uri": ["https://console.example/signedout"],
        "client_id": ["console"],
    }


def test_without_an_end_session_endpoint_sign_out_stays_local():
    assert sign_in_with(discovery()).end_session_url("the.id.token") is None
    assert sign_in_with(discovery(end_session_endpoint=f"{ISSUER}/logout")).end_session_url("") is None
