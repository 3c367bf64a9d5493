"""The single translation point from domain errors to gRPC statuses."""

import grpc
from google.rpc import error_details_pb2, status_pb2

from domicile.errors import DomicileError, ErrorCode, FieldViolation, revision_conflict, store_unavailable
from domicile.grpc_errors import GRPC_CODES, status_for


def _details(status: grpc.Status) -> status_pb2.Status:
    ((_key, value),) = [m for m in status.trailing_metadata if m[0] == "grpc-status-details-bin"]
    return status_pb2.Status.FromString(value)


def test_every_error_code_has_a_grpc_code():
    assert set(GRPC_CODES) == set(ErrorCode)


def test_field_violations_become_bad_request():
    error = DomicileError(
        "invalid dataset",
        ErrorCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        [FieldViolation("dataset.origins[0]", "not a country")],
    )
    status = status_for(error)
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    details = _details(status)
    bad = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad) for d in details.details if d.Is(bad.DESCRIPTOR))
    assert bad.field_violations[0].field == "dataset.origins[0]"


def test_revision_conflict_and_retry_info():
    status = status_for(revision_conflict("stale", expected=1, actual=2))
    assert status.code == grpc.StatusCode.ABORTED
    info = error_details_pb2.ErrorInfo()
    assert any(d.Unpack(info) for d in _details(status).details if d.Is(info.DESCRIPTOR))
    assert info.reason == "REVISION_CONFLICT" and info.metadata["actual_revision"] == "2"

    status = status_for(store_unavailable("neo4j down", retry_after=2.5))
    assert status.code == grpc.StatusCode.UNAVAILABLE
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in _details(status).details if d.Is(retry.DESCRIPTOR))
    assert retry.retry_delay.ToMilliseconds() == 2500
