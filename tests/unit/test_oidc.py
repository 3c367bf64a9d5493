"""The pure parts of domicile.security.oidc (the fetching is tested against a real provider in
tests/e2e/test_identity_provider.py)."""

from __future__ import annotations

import pytest

from domicile.security.oidc import MAX_CACHE_SECONDS, cache_lifetime, check_issuer_url


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, 3600),
        ("public, max-age=600", 600),
        ('max-age="900", must-revalidate', 900),
        ("MAX-AGE=120", 120),
        ("s-maxage=999", 3600),  # for shared caches only
        ("no-cache", 30),
        ("private, no-store", 30),
        ("max-age=5", 30),  # never more often than the minimum
        ("max-age=999999999", MAX_CACHE_SECONDS),
        ("max-age=oops", 3600),
    ],
)
def test_cache_lifetime_honours_cache_control_within_bounds(header, expected):
    assert cache_lifetime(header, default=3600, minimum=30) == expected


@pytest.mark.parametrize(
    "issuer",
    [
        "https://login.example.com/tenant/v2.0",
        "https://idp.bank.example/realms/bank",
        "http://127.0.0.1:8080/realms/dev",
    ],
)
def test_issuer_urls_accepted(issuer):
    check_issuer_url(issuer)


@pytest.mark.parametrize(
    "issuer",
    [
        "domicile-dev",
        "http://idp.bank.example/realms/bank",
        "https://idp.example/?x=1",
        "https://idp.example/#f",
        "ftp://x",
    ],
)
def test_issuer_urls_refused(issuer):
    with pytest.raises(ValueError):
        check_issuer_url(issuer)
