"""LineageService servicer: validates requests, admits writes (`lineage.trust`: namespace
ownership, `lineage:admin` for loosening changes), calls the GraphStore, translates messages.

Errors are raised as DomicileError and mapped to gRPC statuses by
`domicile.grpc_errors.ErrorMappingInterceptor`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from domicile.access.convert import violation_to_proto
from domicile.access.drift import ObservedRun
from domicile.app import App
from domicile.catalog.model import LineageResult, Run, TraversalLimits, utcnow
from domicile.catalog.validation import check_id, check_length, check_region
from domicile.errors import FieldErrors
from domicile.lineage.convert import DIRECTIONS, traversal_to_proto
from domicile.lineage.recording import (
    check_dataset_ids,
    check_edge_count,
    check_job,
    check_run_id,
    check_transform,
    edges_for,
)
from domicile.lineage.trust import LineageGuard, LineageWrite, Where
from domicile.router.convert import DecisionEncoder
from domicile.security.budgets import Resource
from domicile.security.context import current_principal
from domicile.timeconv import optional_time
from domicile.v1 import lineage_pb2, lineage_pb2_grpc

# An end time this far ahead of the server clock is refused: lineage is ended when it stops
# being true, not scheduled; the allowance absorbs clock skew between client and server.
END_TIME_SKEW = timedelta(seconds=60)
_RECORD = "/domicile.v1.LineageService/RecordLineage"
_END = "/domicile.v1.LineageService/EndLineage"
MAX_PRODUCER = 1024


class LineageServicer(lineage_pb2_grpc.LineageServiceServicer):
    def __init__(self, app: App) -> None:
        self._app = app
        self._guard = LineageGuard(app)
        self._encoder = DecisionEncoder()

    async def RecordLineage(
        self, request: lineage_pb2.RecordLineageRequest, context
    ) -> lineage_pb2.RecordLineageResponse:
        """Records `output DERIVED_FROM input` for every input × output pair (self pairs
        skipped); idempotent per (job, run_id); unknown datasets become placeholders."""
        errors = FieldErrors()
        check_job(errors, "job", request.job)
        check_run_id(errors, "run_id", request.run_id)
        if request.run_region:
            check_region(errors, "run_region", request.run_region, self._app.regions())
        check_transform(errors, "transform", request.transform)
        check_length(errors, "producer", request.producer, MAX_PRODUCER)
        inputs = check_dataset_ids(errors, "inputs", list(request.inputs), to_write=True)
        outputs = check_dataset_ids(errors, "outputs", list(request.outputs), to_write=True)
        check_edge_count(errors, "inputs", inputs, outputs)
        event_time = optional_time(errors, request, "event_time")
        errors.raise_if_any("invalid lineage")
        run = Run(
            job=request.job,
            run_id=request.run_id,
            run_region=request.run_region,
            transform=request.transform,
            event_time=event_time,
        )
        write = LineageWrite(request.job, tuple(inputs), tuple(outputs), request.transform)
        principal = current_principal()
        edges = await asyncio.to_thread(edges_for, request.job, inputs, outputs)
        access = self._app.access
        # What the access records hold for the run, read by the lineage write itself.
        stored = access.stored_run(run.job, run.run_id) if access is not None else None

        async def record() -> LineageResult:
            self._app.charge(Resource.LINEAGE_EDGES, len(edges))  # once the lineage guard admitted it
            result = await self._app.store.record_lineage(
                run, edges, principal=principal, access_run=None if stored is None else stored.key
            )
            await self._app.after_write(result.revision)
            return result

        result = await self._guard.write(write, record, Where(_RECORD, context.peer()))
        response = lineage_pb2.RecordLineageResponse(
            edges_created=result.edges_created, catalog_revision=result.revision
        )
        if access is not None:
            drift = await access.observe_run(
                ObservedRun(
                    job=run.job,
                    run_id=run.run_id,
                    run_region=run.run_region,
                    event_time=run.event_time,
                    inputs=tuple(inputs),
                    outputs=dict.fromkeys(outputs, ()),
                    producer=request.producer,
                    principal=principal,
                ),
                None if stored is None else stored.read(result.run_accesses),
            )
            response.observed_violations.extend(violation_to_proto(v, self._encoder) for v in drift.violations)
            response.late = drift.late
        return response

    async def GetLineage(self, request: lineage_pb2.GetLineageRequest, context) -> lineage_pb2.GetLineageResponse:
        """The lineage around a dataset, bounded by depth, node count and time; an answer a
        bound cut short says so (`complete=false` and the reason)."""
        settings = self._app.settings.lineage
        errors = FieldErrors()
        dataset_id = check_id(errors, "dataset_id", request.dataset_id)
        if request.direction not in DIRECTIONS:
            errors.add("direction", f"unknown direction {request.direction}")
        max_depth = request.max_depth or settings.default_max_depth
        if not 1 <= max_depth <= settings.max_depth_limit:
            errors.add(
                "max_depth",
                f"must be between 1 and {settings.max_depth_limit} (0 = default {settings.default_max_depth})",
            )
        as_of = optional_time(errors, request, "as_of")
        errors.raise_if_any()
        traversal = await self._app.store.traverse(
            dataset_id,
            DIRECTIONS[request.direction],
            max_depth=max_depth,
            as_of=as_of,
            limits=TraversalLimits(max_nodes=settings.max_nodes, timeout_seconds=settings.timeout_seconds),
        )
        router = self._app.router
        return (
            traversal_to_proto(traversal, router.policy.unapproved_claim) if router else traversal_to_proto(traversal)
        )

    async def EndLineage(self, request: lineage_pb2.EndLineageRequest, context) -> lineage_pb2.EndLineageResponse:
        """Ends the current edges `output DERIVED_FROM input` of `job` for every input ×
        output pair, at `end_time` (default now); edges that are not current are ignored."""
        errors = FieldErrors()
        check_job(errors, "job", request.job)
        inputs = check_dataset_ids(errors, "inputs", list(request.inputs), to_write=False)
        outputs = check_dataset_ids(errors, "outputs", list(request.outputs), to_write=False)
        if not request.inputs:
            errors.add("inputs", "at least one input is required")
        if not request.outputs:
            errors.add("outputs", "at least one output is required")
        check_edge_count(errors, "inputs", inputs, outputs)
        end_time = optional_time(errors, request, "end_time")
        if end_time is not None and end_time > utcnow() + END_TIME_SKEW:
            errors.add("end_time", "must not be in the future: end lineage when it stops being true")
        errors.raise_if_any("invalid request")
        write = LineageWrite(request.job, tuple(inputs), tuple(outputs), ending=True)
        edges = await asyncio.to_thread(edges_for, request.job, inputs, outputs)

        async def end() -> LineageResult:
            self._app.charge(Resource.LINEAGE_EDGES, len(edges))  # once the lineage guard admitted it
            result = await self._app.store.end_edges(edges, at=end_time, principal=current_principal())
            await self._app.after_write(result.revision)
            return result

        result = await self._guard.write(write, end, Where(_END, context.peer()))
        return lineage_pb2.EndLineageResponse(edges_ended=result.edges_created, catalog_revision=result.revision)
