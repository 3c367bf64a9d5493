"""The Python SDK of Domicile: `Client` (blocking) and `AsyncClient` (asyncio), one typed
method per RPC returning domain values, typed errors carrying the server's status details,
deadlines on every call and retries where they are safe. See docs/sdk.md.

    from domicile.client import Client

    with Client.from_env() as client:
        decision = client.decide("s3://bank-eu/customers", "store", "aws:us-east-1")
        if decision.outcome is Outcome.DENY:
            ...
"""

from domicile.client import types
from domicile.client.aio import AsyncClient
from domicile.client.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    ConnectionConfigError,
    DeadlineExceeded,
    DomicileRpcError,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from domicile.client.jsonable import jsonable
from domicile.client.retries import NO_RETRIES, RetryPolicy
from domicile.client.sync import Client
from domicile.client.types import *  # noqa: F403 -- the SDK's value types are its public API
from domicile.connection import ConnectionSettings, TokenProvider

__all__ = [
    "NO_RETRIES",
    "Aborted",
    "AlreadyExists",
    "AsyncClient",
    "Cancelled",
    "Client",
    "ConnectionConfigError",
    "ConnectionSettings",
    "DeadlineExceeded",
    "DomicileRpcError",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "RetryPolicy",
    "TokenProvider",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "jsonable",
]
__all__ += types.__all__
