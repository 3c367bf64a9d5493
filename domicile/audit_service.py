"""AuditService servicer: reads the security event log (ListSecurityEvents)."""

from __future__ import annotations

import asyncio

from domicile.app import App
from domicile.catalog.validation import check_length
from domicile.errors import FieldErrors, failed_precondition
from domicile.security.event_search import EventQuery, search_events
from domicile.timeconv import optional_time, to_timestamp
from domicile.v1 import audit_pb2, audit_pb2_grpc

DEFAULT_PAGE = 100
MAX_PAGE = 10_000


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, app: App) -> None:
        self._app = app

    async def ListSecurityEvents(
        self, request: audit_pb2.ListSecurityEventsRequest, context
    ) -> audit_pb2.ListSecurityEventsResponse:
        errors = FieldErrors()
        check_length(errors, "event", request.event, 64)
        check_length(errors, "principal", request.principal, 1024)
        check_length(errors, "page_token", request.page_token, 4096)
        size = request.page_size or DEFAULT_PAGE
        if not 1 <= size <= MAX_PAGE:
            errors.add("page_size", f"must be between 1 and {MAX_PAGE} (0 = default {DEFAULT_PAGE})")
        start, end = optional_time(errors, request, "start_time"), optional_time(errors, request, "end_time")
        if start and end and start >= end:
            errors.add("end_time", "must be after start_time")
        errors.raise_if_any()
        if self._app.security_events is None:
            raise failed_precondition(
                "this server keeps no security event log (it runs with --insecure)", "SECURITY_LOG_OFF"
            )
        query = EventQuery(request.event, request.principal, start, end)
        page = await asyncio.to_thread(search_events, self._app.security_events.path, query, size, request.page_token)
        response = audit_pb2.ListSecurityEventsResponse(next_page_token=page.next_token)
        for event in page.events:
            item = response.events.add(
                time=to_timestamp(event["time"]),
                **{
                    key: str(event.get(key, ""))
                    for key in ("event", "outcome", "principal", "method", "peer", "trace_id", "reason")
                },
            )
            detail = event.get("detail")
            if isinstance(detail, dict):
                item.detail.update(detail)
        return response
