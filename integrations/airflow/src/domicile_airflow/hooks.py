"""`DomicileHook`: a Domicile SDK client built from an Airflow connection of type `domicile`.

The connection holds what `domicile.client.ConnectionSettings` holds: host and port (the gRPC
address), the password (a bearer token) and, in its extra, the credential files and options.
Credentials are found as the SDK finds them: with no files given, the development
credentials of `data_dir` / DOMICILE_HOME / `~/.config/domicile`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook, Connection

from domicile.client import Client, ConnectionSettings, ServingStatus, TokenProvider
from domicile.connection import DEFAULT_TIMEOUT_SECONDS, ConnectionConfigError

DEFAULT_PORT = 50051
# The extra's keys, each a `ConnectionSettings` field of the same name.
_PATH_EXTRAS = ("ca_cert", "client_cert", "client_key", "data_dir")
_FLAG_EXTRAS = ("insecure", "dev")
EXTRA_KEYS = (*_PATH_EXTRAS, *_FLAG_EXTRAS, "timeout")


def settings_from_connection(
    host: str | None, port: int | None, token: str | None, extra: Mapping[str, Any]
) -> ConnectionSettings:
    """The SDK's settings for a connection's fields; ConnectionConfigError naming what is wrong."""
    unknown = sorted(set(extra) - set(EXTRA_KEYS))
    if unknown:
        raise ConnectionConfigError(f"unknown key(s) {', '.join(unknown)} in the extra; known: {', '.join(EXTRA_KEYS)}")
    if not host:
        raise ConnectionConfigError("the connection has no host (the Domicile server's gRPC address)")
    values: dict[str, Any] = {"server": f"{host}:{port or DEFAULT_PORT}", "token": token or None}
    for key in _PATH_EXTRAS:
        if extra.get(key):
            values[key] = Path(str(extra[key])).expanduser()
    for key in _FLAG_EXTRAS:
        flag = extra.get(key, False)
        if isinstance(flag, str):
            flag = flag.strip().lower() in ("1", "true", "yes", "on")
        values[key] = bool(flag)
    timeout = extra.get("timeout", DEFAULT_TIMEOUT_SECONDS)
    try:
        values["timeout"] = float(timeout)
    except (TypeError, ValueError):
        values["timeout"] = -1.0
    if not values["timeout"] > 0:
        raise ConnectionConfigError(f"timeout {timeout!r} in the extra: expected a positive number of seconds")
    return ConnectionSettings(**values)


class DomicileHook(BaseHook):
    """A Domicile client (`domicile.client.Client`) for the connection `domicile_conn_id`.

    `token_provider` (a callable returning the token to send, called before every call)
    replaces the connection's password, for tokens that expire during long tasks."""

    conn_name_attr = "domicile_conn_id"
    default_conn_name = "domicile_default"
    conn_type = "domicile"
    hook_name = "Domicile"

    def __init__(self, domicile_conn_id: str = default_conn_name, *, token_provider: TokenProvider | None = None):
        super().__init__()
        self.domicile_conn_id = domicile_conn_id
        self._token_provider = token_provider
        self._client: Client | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "login"],
            "relabeling": {"host": "Server host", "port": "gRPC port", "password": "Bearer token"},
            "placeholders": {
                "host": "domicile.bank.example",
                "port": str(DEFAULT_PORT),
                "extra": json.dumps(
                    {
                        "ca_cert": "/etc/domicile/ca.pem",
                        "client_cert": "/etc/domicile/client.pem",
                        "client_key": "/etc/domicile/client-key.pem",
                        "timeout": 10,
                    }
                ),
            },
        }

    def connection_settings(self) -> ConnectionSettings:
        connection: Connection = self.get_connection(self.domicile_conn_id)
        try:
            return settings_from_connection(
                connection.host, connection.port, connection.password, connection.extra_dejson
            )
        except ConnectionConfigError as error:
            raise ConnectionConfigError(f"Airflow connection {self.domicile_conn_id!r}: {error}") from None

    def get_conn(self) -> Client:
        """The client (one per hook; closed by `close`)."""
        if self._client is None:
            self._client = Client(self.connection_settings(), token_provider=self._token_provider)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def test_connection(self) -> tuple[bool, str]:
        """For the UI's "Test" button: is the server reachable and serving?"""
        try:
            status = self.get_conn().health()
        except Exception as error:  # the button shows any failure as text
            return False, str(error)
        finally:
            self.close()
        return status is ServingStatus.SERVING, f"Domicile is {status.value}"
