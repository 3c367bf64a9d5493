"""Domain errors, raised by catalog, lineage and router code.

Domain code never imports grpc: it raises a `DomicileError` carrying an `ErrorCode`, and the
single translation point `domicile.grpc_errors` maps it to a gRPC status with
`google.rpc.Status` details (BadRequest field violations, RetryInfo, ErrorInfo). The HTTP
endpoint maps the same codes to HTTP statuses in `domicile.http_api`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field


class ErrorCode(enum.Enum):
    """What went wrong, in terms a caller can act on; each maps to one gRPC status code."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field: `field` is a dotted path such as `dataset.origins[1]`."""

    field: str
    description: str


@dataclass
class DomicileError(Exception):
    """Base of every error the domain raises on purpose.

    `reason` is a short UPPER_SNAKE machine-readable cause (sent as `google.rpc.ErrorInfo`),
    `retry_after` (seconds) becomes `google.rpc.RetryInfo`.
    """

    message: str
    code: ErrorCode = ErrorCode.INTERNAL
    reason: str = ""
    violations: list[FieldViolation] = field(default_factory=list)
    retry_after: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        if not self.violations:
            return self.message
        return f"{self.message}{violations_suffix((v.field, v.description) for v in self.violations)}"


def violations_suffix(violations: Iterable[tuple[str, str]]) -> str:
    """` (field: description; ...)`, as an error's message ends when it has field violations
    (clients that print the violations themselves strip it)."""
    return " (" + "; ".join(f"{field}: {description}" for field, description in violations) + ")"


def invalid_argument(message: str, violations: list[FieldViolation] | None = None) -> DomicileError:
    return DomicileError(message, ErrorCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", list(violations or []))


def invalid_field(field_path: str, description: str) -> DomicileError:
    """An INVALID_ARGUMENT error about a single field."""
    return invalid_argument(f"invalid {field_path}: {description}", [FieldViolation(field_path, description)])


def not_found(message: str) -> DomicileError:
    return DomicileError(message, ErrorCode.NOT_FOUND, "NOT_FOUND")


def revision_conflict(message: str, *, expected: int, actual: int) -> DomicileError:
    return DomicileError(
        message,
        ErrorCode.ABORTED,
        "REVISION_CONFLICT",
        metadata={"expected_revision": str(expected), "actual_revision": str(actual)},
    )


def failed_precondition(message: str, reason: str = "FAILED_PRECONDITION") -> DomicileError:
    return DomicileError(message, ErrorCode.FAILED_PRECONDITION, reason)


def store_unavailable(message: str, retry_after: float = 1.0) -> DomicileError:
    return DomicileError(message, ErrorCode.UNAVAILABLE, "STORE_UNAVAILABLE", retry_after=retry_after)


class FieldErrors:
    """Collects field violations so a request reports all its problems at once.

    >>> errors = FieldErrors()
    >>> errors.add("dataset.id", "must not be empty")
    >>> errors.raise_if_any("invalid dataset")   # raises INVALID_ARGUMENT with one violation
    """

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def add(self, field_path: str, description: str) -> None:
        self.violations.append(FieldViolation(field_path, description))

    def __bool__(self) -> bool:
        return bool(self.violations)

    def raise_if_any(self, message: str = "invalid request") -> None:
        if self.violations:
            raise invalid_argument(message, self.violations)
