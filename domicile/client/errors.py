"""Typed errors of the SDK: every failed call raises a `DomicileRpcError` subclass named after
its gRPC status code, carrying the `google.rpc` details the server sent (field violations,
ErrorInfo reason and metadata, RetryInfo delay)."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from domicile.connection import ConnectionConfigError

__all__ = [
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "ConnectionConfigError",
    "DeadlineExceeded",
    "DomicileRpcError",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "error_from_rpc",
]


@dataclass(frozen=True)
class FieldViolation:
    """A bad request field (`google.rpc.BadRequest.FieldViolation`): `field` is its path in the
    request, e.g. `dataset.origins[0]`."""

    field: str
    description: str


class DomicileRpcError(Exception):
    """A call the server refused or that failed in transport.

    `code` is the gRPC status code, `message` the status message; `field_violations`,
    `reason` (with `metadata`) and `retry_after` (seconds) come from the status details
    (BadRequest, ErrorInfo, RetryInfo) when the server sent them; `method` is the full RPC
    name, e.g. `/domicile.v1.CatalogService/GetDataset`.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        method: str = "",
        field_violations: tuple[FieldViolation, ...] = (),
        reason: str = "",
        metadata: dict[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.method = method
        self.field_violations = field_violations
        self.reason = reason
        self.metadata = MappingProxyType(dict(metadata or {}))
        self.retry_after = retry_after

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        if self.field_violations:
            text += "".join(f"\n  {v.field}: {v.description}" for v in self.field_violations)
        return text


class Cancelled(DomicileRpcError):
    code = grpc.StatusCode.CANCELLED


class InvalidArgument(DomicileRpcError):
    """The request is invalid; `field_violations` say which fields and why."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(DomicileRpcError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(DomicileRpcError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomicileRpcError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(DomicileRpcError):
    """The caller is authenticated but lacks the scope (or ownership) the call needs."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(DomicileRpcError):
    """Rate limited (`retry_after` says when to try again) or a request too large."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(DomicileRpcError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(DomicileRpcError):
    """A conditional write lost: the dataset is not at the `expected_revision` given."""

    code = grpc.StatusCode.ABORTED


class Unimplemented(DomicileRpcError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(DomicileRpcError):
    code = grpc.StatusCode.INTERNAL


class Unavailable(DomicileRpcError):
    """The server cannot be reached, or its store is down (`Client.diagnose` names the likely
    cause of a transport failure)."""

    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(DomicileRpcError):
    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: dict[grpc.StatusCode, type[DomicileRpcError]] = {
    cls.code: cls
    for cls in (
        Cancelled,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        Unimplemented,
        Internal,
        Unavailable,
        Unauthenticated,
    )
}


def error_from_rpc(error: grpc.RpcError, method: str = "") -> DomicileRpcError:
    """The typed error of a failed call (sync or asyncio), its status details decoded."""
    code: grpc.StatusCode = error.code()
    message: str = error.details() or ""
    violations: list[FieldViolation] = []
    reason, metadata, retry_after = "", {}, None
    try:
        status = rpc_status.from_call(error)
    except ValueError:  # a status trailer that disagrees with the call's status: ignore the trailer
        status = None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after = retry.retry_delay.ToMilliseconds() / 1000
    cls = _BY_CODE.get(code, DomicileRpcError)
    return cls(
        message,
        code=code,
        method=method,
        field_violations=tuple(violations),
        reason=reason,
        metadata=metadata,
        retry_after=retry_after,
    )
