"""build_security: nothing open by default, --insecure only on loopback and loudly."""

from __future__ import annotations

import logging

import pytest

from domicile.config import SettingsError, load_settings
from domicile.errors import DomicileError, ErrorCode
from domicile.security import build_security
from domicile.security.dev_credentials import ensure_dev_credentials


def test_without_tls_configuration_the_server_refuses_to_start(tmp_path):
    with pytest.raises(DomicileError) as info:
        build_security(load_settings(data_dir=tmp_path))
    assert info.value.code is ErrorCode.FAILED_PRECONDITION and "--insecure" in str(info.value)


def test_tls_without_issuer_and_audience_is_refused(tmp_path):
    paths, _ = ensure_dev_credentials(tmp_path)
    explicit = load_settings(
        data_dir=tmp_path,
        tls={"cert_file": paths.server_cert, "key_file": paths.server_key},
        auth={"jwks_file": paths.jwks},
    )
    with pytest.raises(DomicileError, match="issuer"):
        build_security(explicit)
    broken = load_settings(
        data_dir=tmp_path,
        tls={"cert_file": paths.server_cert, "key_file": paths.client_key},
        auth={"jwks_file": paths.jwks, "issuer": "i", "audience": "a"},
    )
    with pytest.raises(DomicileError, match="does not match"):
        build_security(broken)


def test_without_key_files_the_issuer_must_be_a_url_for_discovery(tmp_path):
    paths, _ = ensure_dev_credentials(tmp_path)
    for issuer, problem in (("bank-idp", "https"), ("http://idp.bank.example/realms/bank", "https")):
        settings = load_settings(
            data_dir=tmp_path,
            tls={"cert_file": paths.server_cert, "key_file": paths.server_key},
            auth={"issuer": issuer, "audience": "a"},
        )
        with pytest.raises(DomicileError, match=f"auth.issuer.*{problem}.*auth.jwks_file"):
            build_security(settings)
    missing_ca = load_settings(
        data_dir=tmp_path,
        tls={"cert_file": paths.server_cert, "key_file": paths.server_key},
        auth={"issuer": "https://idp.bank.example/realms/bank", "audience": "a", "ca_file": tmp_path / "nope.pem"},
    )
    with pytest.raises(DomicileError, match=r"auth\.ca_file"):
        build_security(missing_ca)


async def test_explicit_configuration_builds_mtls_and_auth(tmp_path):
    paths, _ = ensure_dev_credentials(tmp_path)
    settings = load_settings(
        data_dir=tmp_path,
        tls={"cert_file": paths.server_cert, "key_file": paths.server_key, "client_ca_file": paths.ca_cert},
        auth={"public_key_files": [paths.jwt_public_key], "issuer": "i", "audience": "a"},
    )
    security = build_security(settings)
    try:
        assert security.server_credentials is not None and security.http_ssl_context is not None
        assert security.certificates.mutual and len(security.interceptors) == 1 and len(security.http_middlewares) == 1
    finally:
        await security.close()


def test_insecure_warns_and_serves_plaintext_on_loopback_only(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="domicile.security"):
        security = build_security(load_settings(data_dir=tmp_path, insecure=True, listen="[::1]:0"))
    assert security.server_credentials is None and security.events is None
    # No authentication, but every caller spends the anonymous principal's budgets.
    assert [type(i).__name__ for i in security.interceptors] == ["AnonymousInterceptor"]
    assert security.budgets is not None
    assert any("WITHOUT TLS" in record.getMessage() for record in caplog.records)
    for address in ("0.0.0.0:50051", "10.1.2.3:50051", "[::]:50051", "db.example:50051"):
        with pytest.raises(SettingsError, match="loopback"):
            load_settings(data_dir=tmp_path, insecure=True, listen=address)
    with pytest.raises(SettingsError, match="loopback"):
        load_settings(data_dir=tmp_path, insecure=True, http_listen="0.0.0.0:8080")
