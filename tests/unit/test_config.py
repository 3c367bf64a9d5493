"""Settings precedence (file < environment < flags) and validation messages."""

import pytest

from domicile.config import SettingsError, is_loopback, load_settings, split_host_port
from domicile.errors import DomicileError


def test_flags_beat_environment_beat_file(tmp_path, monkeypatch):
    config = tmp_path / "domicile.yaml"
    config.write_text("listen: 127.0.0.1:1111\nrouter:\n  staleness_bound_seconds: 9\n  poll_interval_seconds: 1\n")
    monkeypatch.setenv("DOMICILE_ROUTER__STALENESS_BOUND_SECONDS", "3")
    settings = load_settings(config, listen="127.0.0.1:2222")
    assert settings.listen == "127.0.0.1:2222"
    assert settings.router.staleness_bound_seconds == 3
    assert settings.router.poll_interval_seconds == 1


def test_json_environment_values(monkeypatch):
    monkeypatch.setenv("DOMICILE_LINEAGE__NAMESPACE_REGIONS", '{"s3://bank-eu-*": "aws:eu-central-1"}')
    assert load_settings().lineage.namespace_regions == {"s3://bank-eu-*": "aws:eu-central-1"}


def test_errors_name_the_setting(tmp_path):
    with pytest.raises(SettingsError) as info:
        load_settings(listen="nowhere", max_message_bytes=10, router={"staleness_bound_seconds": -1})
    message = str(info.value)
    assert "listen" in message and "max_message_bytes" in message and "router.staleness_bound_seconds" in message


def test_unknown_setting_in_file_is_an_error(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("lisen: 127.0.0.1:1\n")
    with pytest.raises(SettingsError, match="lisen"):
        load_settings(config)


def test_insecure_only_on_loopback():
    assert load_settings(insecure=True, listen="[::1]:0", http_listen="localhost:0").insecure
    with pytest.raises(SettingsError, match="loopback"):
        load_settings(insecure=True, listen="0.0.0.0:50051")
    with pytest.raises(SettingsError, match="loopback"):
        load_settings(insecure=True, listen="127.0.0.1:1", http_listen="10.1.2.3:80")


def test_host_port_parsing():
    assert split_host_port("[::1]:50051") == ("::1", 50051)
    assert split_host_port("example.org:1") == ("example.org", 1)
    for bad in ("50051", ":1", "h:x", "h:70000"):
        with pytest.raises(ValueError):
            split_host_port(bad)
    assert is_loopback("127.0.0.5") and is_loopback("localhost") and not is_loopback("example.org")


def test_poll_interval_must_fit_the_staleness_bound():
    with pytest.raises(SettingsError, match="poll_interval_seconds"):
        load_settings(router={"poll_interval_seconds": 10, "staleness_bound_seconds": 1})


def test_client_environment_variables_are_not_settings(monkeypatch):
    # The CLI reads these for client commands; `domicile serve` must not choke on them.
    for name, value in (("DOMICILE_TOKEN", "x"), ("DOMICILE_SERVER", "h:1"), ("DOMICILE_CA_CERT", "/ca.pem")):
        monkeypatch.setenv(name, value)
    assert load_settings(insecure=True).insecure


def test_nested_sections_merge_across_sources(tmp_path, monkeypatch):
    config = tmp_path / "c.yaml"
    config.write_text("tls:\n  key_file: /k.pem\n")
    monkeypatch.setenv("DOMICILE_TLS__CERT_FILE", "/c.pem")
    tls = load_settings(config, tls={"reload_interval_seconds": 1}).tls
    assert (str(tls.cert_file), str(tls.key_file), tls.reload_interval_seconds) == ("/c.pem", "/k.pem", 1)


def test_neo4j_password_from_a_file(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    settings = load_settings(neo4j={"user": "domicile", "password_file": secret})
    assert settings.neo4j.resolved_password() == "s3cret"
    with pytest.raises(SettingsError, match="password or password_file"):
        load_settings(neo4j={"password": "x", "password_file": secret})
    missing = load_settings(neo4j={"password_file": tmp_path / "nope"})
    with pytest.raises(DomicileError, match=r"neo4j\.password_file"):
        missing.neo4j.resolved_password()
