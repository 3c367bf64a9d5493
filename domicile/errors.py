"""Domain errors, raised by catalog, lineage and router code.

Domain code never imports grpc: it raises a `DomicileError` carrying an `ErrorCode`, and the
single translation point `domicile.grpc_errors` maps it to a gRPC status with
`google.rpc.Status` details (BadRequest field violations, RetryInfo, ErrorInfo). The HTTP
endpoint maps the same codes to HTTP statuses in `domicile.http_api`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field, replace


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


# What one error tells its caller is bounded (in UTF-8 bytes), however many problems a
# request has: gRPC clients refuse trailers over 8 KiB, and the status message travels there
# percent-encoded (up to 3x) and the details base64-encoded (4/3x).
MAX_MESSAGE_BYTES = 768
MAX_FIELD_BYTES = 256
MAX_DESCRIPTION_BYTES = 512
# Total bytes of the field paths and descriptions reported with one error.
MAX_VIOLATION_BYTES = 2500


def clip(text: str, limit: int) -> str:
    """`text`, cut to at most `limit` UTF-8 bytes (ending in `...` when cut)."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    return data[: max(0, limit - 3)].decode("utf-8", "ignore") + "..."


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

    def bounded(self) -> DomicileError:
        """This error as it may be sent to a caller: the message and each violation clipped,
        and only the first violations that fit `MAX_VIOLATION_BYTES`; the number left out is
        in `metadata["omitted_violations"]` and at the end of the message. Callers send its
        `caller_text()`."""
        kept: list[FieldViolation] = []
        size = 0
        for violation in self.violations:
            clipped = FieldViolation(
                clip(violation.field, MAX_FIELD_BYTES), clip(violation.description, MAX_DESCRIPTION_BYTES)
            )
            size += len(clipped.field.encode("utf-8", "surrogatepass"))
            size += len(clipped.description.encode("utf-8", "surrogatepass"))
            if size > MAX_VIOLATION_BYTES and kept:
                break
            kept.append(clipped)
        omitted = len(self.violations) - len(kept)
        # With violations, `str()` lists them after the message: leave them room.
        message = clip(self.message, MAX_MESSAGE_BYTES // 2 if self.violations else MAX_MESSAGE_BYTES)
        metadata = self.metadata
        if omitted:
            message += f" [{omitted} more problems not shown]"
            metadata = {**metadata, "omitted_violations": str(omitted)}
        return replace(self, message=message, violations=kept, metadata=metadata)

    def caller_text(self) -> str:
        """What a caller is told (call on a `bounded` error): `str()`, or only the message when
        the violations listed after it would pass `MAX_MESSAGE_BYTES` (the details carry them)."""
        text = str(self)
        return text if len(text.encode("utf-8", "surrogatepass")) <= MAX_MESSAGE_BYTES else self.message


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
