"""AccessService servicer: validates requests, reads the access records, translates.

Reads flush this process's pending access records first (read-your-writes). Errors are raised
as DomicileError and mapped to gRPC statuses by `domicile.grpc_errors.ErrorMappingInterceptor`.
"""

from __future__ import annotations

from datetime import datetime

import grpc

from domicile.access.convert import (
    actor_access_to_proto,
    anomaly_to_proto,
    patterns_wire,
    violation_to_proto,
)
from domicile.app import App
from domicile.catalog.model import PageRequest
from domicile.catalog.validation import check_id, check_length, validate_page_size
from domicile.errors import DomicileError, ErrorCode, FieldErrors
from domicile.grpc_services import add_service
from domicile.router.convert import DecisionEncoder
from domicile.timeconv import optional_time
from domicile.v1 import access_pb2, access_pb2_grpc

MAX_ACTOR = 2048
DEFAULT_RUNS = 20
MAX_RUNS = 1000


def _range(errors: FieldErrors, request) -> tuple[datetime | None, datetime | None]:
    since, until = optional_time(errors, request, "since"), optional_time(errors, request, "until")
    if since is not None and until is not None and since >= until:
        errors.add("until", "must be later than since")
    return since, until


class AccessServicer(access_pb2_grpc.AccessServiceServicer):
    def __init__(self, app: App) -> None:
        self._app = app
        self._encoder = DecisionEncoder()

    async def _flush(self) -> None:
        """Refuse when access records are off; else write this process's pending records."""
        if self._app.access is None:
            raise DomicileError(
                "access records are off on this server (access.enabled: false)",
                ErrorCode.FAILED_PRECONDITION,
                "ACCESS_DISABLED",
            )
        await self._app.access.flush()

    async def GetAccessPatterns(self, request: access_pb2.GetAccessPatternsRequest, context) -> bytes:
        """The answer serialized, as the engine encodes it (`add_access_service`)."""
        errors = FieldErrors()
        dataset_id = check_id(errors, "dataset_id", request.dataset_id)
        since, until = _range(errors, request)
        errors.raise_if_any()
        await self._flush()
        totals = await self._app.store.access.dataset_access(dataset_id, since=since, until=until)
        return patterns_wire(totals)

    async def ListActorAccess(
        self, request: access_pb2.ListActorAccessRequest, context
    ) -> access_pb2.ListActorAccessResponse:
        errors = FieldErrors()
        if not request.actor:
            errors.add("actor", "must not be empty")
        check_length(errors, "actor", request.actor, MAX_ACTOR)
        since, until = _range(errors, request)
        if not 0 <= request.max_runs <= MAX_RUNS:
            errors.add("max_runs", f"must be between 0 and {MAX_RUNS} (0 = {DEFAULT_RUNS})")
        errors.raise_if_any()
        await self._flush()
        access = self._app.store.access
        totals = await access.actor_access(request.actor, since=since, until=until)
        runs = await access.list_runs(request.actor, since=since, until=until, limit=request.max_runs or DEFAULT_RUNS)
        return actor_access_to_proto(totals, runs)

    async def ListObservedViolations(
        self, request: access_pb2.ListObservedViolationsRequest, context
    ) -> access_pb2.ListObservedViolationsResponse:
        errors = FieldErrors()
        since, until = _range(errors, request)
        size = validate_page_size(errors, request.page_size)
        check_length(errors, "page_token", request.page_token, 4096)
        errors.raise_if_any()
        await self._flush()
        page = await self._app.store.access.list_violations(
            PageRequest(size=size, token=request.page_token), since=since, until=until
        )
        return access_pb2.ListObservedViolationsResponse(
            violations=[violation_to_proto(v, self._encoder) for v in page.items], next_page_token=page.next_token
        )

    async def ListAccessAnomalies(
        self, request: access_pb2.ListAccessAnomaliesRequest, context
    ) -> access_pb2.ListAccessAnomaliesResponse:
        errors = FieldErrors()
        since, until = _range(errors, request)
        size = validate_page_size(errors, request.page_size)
        check_length(errors, "page_token", request.page_token, 4096)
        errors.raise_if_any()
        await self._flush()
        page = await self._app.store.access.list_anomalies(
            PageRequest(size=size, token=request.page_token), since=since, until=until
        )
        return access_pb2.ListAccessAnomaliesResponse(
            anomalies=[anomaly_to_proto(a) for a in page.items], next_page_token=page.next_token
        )


def add_access_service(servicer: AccessServicer, server: grpc.aio.Server) -> None:
    """Register `servicer` as the generated `add_AccessServiceServicer_to_server` does, but for
    GetAccessPatterns' answer, which goes out serialized as the engine encoded it (a busy
    dataset's ten thousand actors parsed back into messages only to be serialized again)."""
    add_service(server, access_pb2, "AccessService", servicer, raw_answers={"GetAccessPatterns"})
