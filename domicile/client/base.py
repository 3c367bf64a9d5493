"""What the blocking and the asyncio client share: settings, credentials, deadlines, retries,
and turning a failed call into a typed error."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import grpc

from domicile.client.calls import Call
from domicile.client.errors import DomicileRpcError, Unavailable, error_from_rpc
from domicile.client.retries import RetryPolicy
from domicile.connection import (
    ConnectionSettings,
    TokenProvider,
    channel_credentials,
    diagnose_failure,
    resolve_credentials,
    settings_from_env,
)

# Answers can be large (a BatchDecide of 10,000 decisions, a lineage export).
CHANNEL_OPTIONS = (("grpc.max_receive_message_length", 64 * 1024 * 1024),)


class ClientBase:
    """Settings and credentials of a client; see `Client` for the arguments."""

    def __init__(
        self,
        settings: ConnectionSettings | None = None,
        *,
        token_provider: TokenProvider | None = None,
        retry: RetryPolicy | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.settings = settings or ConnectionSettings()
        self.retry = retry or RetryPolicy()
        self.credentials = resolve_credentials(self.settings, environ, token_provider=token_provider)
        self._channel_credentials = channel_credentials(self.credentials)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] = os.environ,
        *,
        token_provider: TokenProvider | None = None,
        retry: RetryPolicy | None = None,
        **overrides: Any,
    ) -> Any:
        """A client configured by the `DOMICILE_*` environment variables, as the command line is
        (`domicile.connection.settings_from_env`); `overrides` replace single settings (e.g.
        `server="host:50051"`, `timeout=5`)."""
        settings = replace(settings_from_env(environ), **overrides)
        return cls(settings, token_provider=token_provider, retry=retry, environ=environ)

    def diagnose(self, error: DomicileRpcError) -> str | None:
        """The likely cause of a transport failure (TLS against a plaintext server, an unknown
        CA, ...), in one line; None when `error` is not one. Probes the server (a few seconds
        at most): for reporting, not for every retry."""
        if not isinstance(error, Unavailable):
            return None
        return diagnose_failure(self.settings, self.credentials, error.message)

    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self.settings.timeout if timeout is None else timeout)

    def _failed(self, call: Call[Any], error: grpc.RpcError) -> DomicileRpcError:
        return error_from_rpc(error, call.path)
