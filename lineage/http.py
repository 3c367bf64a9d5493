"""`POST /api/v1/lineage`: OpenLineage RunEvents over HTTP, as the OpenLineage clients'
HTTP transport sends them (JSON body, optionally gzip-encoded, `Authorization: Bearer` when
an API key is configured — checked by the security middlewares, not here).

Answers: 200 with `{"recorded", "edges_created", "datasets_updated", "catalog_revision",
"job", "run_id", "observed_violations", "late"}` -- `observed_violations` lists what the run
did where the policy forbids it (`access.drift`; each as the AccessService returns it, in
protobuf JSON), `late` says the event is older than `access.late_event_seconds`; 400 with `{"error": {"code", "message", "field_violations": [...]}}` for
a body that is not JSON or a malformed event (nothing written); 415 for a content type other
than JSON. Domain errors are turned into these answers by `domicile.http_api`.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
from google.protobuf import json_format

from domicile import external_json
from domicile.access.convert import violation_to_proto
from domicile.access.drift import DriftResult, ObservedRun
from domicile.access.recorder import StoredRun
from domicile.app import App
from domicile.errors import invalid_field
from domicile.lineage.ingest import IngestResult, ingest_event
from domicile.lineage.openlineage import LineageEvent, parse_run_event
from domicile.lineage.recording import edge_count
from domicile.lineage.trust import LineageGuard, LineageWrite, Where
from domicile.router.convert import DecisionEncoder
from domicile.security.budgets import Resource
from domicile.security.context import current_principal
from domicile.telemetry.metrics import OPENLINEAGE_EVENTS
from domicile.telemetry.tracing import span

LINEAGE_PATH = "/api/v1/lineage"
_ENCODER = DecisionEncoder()

APP_KEY: web.AppKey[App] = web.AppKey("domicile", App)
# Serializes dataset merges of concurrent events in this process, so two events creating the
# same new dataset cannot overwrite each other's facets (existing datasets are protected by
# expected_revision in any case).
INGEST_LOCK: web.AppKey[asyncio.Lock] = web.AppKey("domicile_lineage_ingest_lock", asyncio.Lock)
GUARD: web.AppKey[LineageGuard] = web.AppKey("domicile_lineage_guard", LineageGuard)


async def post_lineage(request: web.Request) -> web.Response:
    """Validate one RunEvent completely, then apply it (see `lineage.ingest`); counted in
    `domicile_openlineage_events_total` as accepted or rejected."""
    try:
        response = await _post_lineage(request)
    except BaseException:
        OPENLINEAGE_EVENTS.labels("rejected").inc()
        raise
    OPENLINEAGE_EVENTS.labels("accepted").inc()
    return response


async def _post_lineage(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    if request.content_type not in ("application/json", "application/octet-stream", ""):
        raise web.HTTPUnsupportedMediaType(
            text=json.dumps(
                {"error": {"code": "UNSUPPORTED_MEDIA_TYPE", "message": "send the event as application/json"}}
            ),
            content_type="application/json",
        )
    body = await request.read()
    # A large event takes a while to read and check: not on the event loop.
    event = await asyncio.to_thread(_parse_event, app, body)
    principal = current_principal()
    attributes: dict[str, str | int] = {
        "domicile.lineage.job": event.run.job,
        "domicile.lineage.run_id": event.run.run_id,
        "domicile.lineage.inputs": len(event.inputs),
        "domicile.lineage.outputs": len(event.outputs),
    }

    stored = _stored_run(app, event)

    async def ingest() -> IngestResult:
        if event.records_lineage:  # charged once admitted by the lineage guard
            app.charge(Resource.LINEAGE_EDGES, edge_count(event.inputs, event.outputs))
        with span("lineage.ingest", attributes):
            return await ingest_event(
                app.store,
                event,
                regions=app.regions(),
                principal=principal,
                on_write=app.after_write,
                access_run=None if stored is None else stored.key,
            )

    async with request.app[INGEST_LOCK]:
        if event.records_lineage:
            write = LineageWrite(event.run.job, tuple(event.inputs), tuple(event.outputs), event.run.transform)
            result = await request.app[GUARD].write(write, ingest, Where(f"POST {LINEAGE_PATH}", request.remote or ""))
        else:
            result = await ingest()
    # Outside the lock: the next event's write goes on while this one's decisions are made durable.
    drift = await observe_event(app, event, principal, None if stored is None else stored.read(result.run_accesses))
    return web.json_response(
        {
            "recorded": result.recorded,
            "edges_created": result.edges_created,
            "datasets_updated": result.datasets_updated,
            "catalog_revision": result.revision,
            "job": event.run.job,
            "run_id": event.run.run_id,
            "observed_violations": [
                json_format.MessageToDict(violation_to_proto(v, _ENCODER), preserving_proto_field_name=True)
                for v in drift.violations
            ],
            "late": drift.late,
        }
    )


def _parse_event(app: App, body: bytes) -> LineageEvent:
    try:
        document = external_json.parse(body)
    except external_json.JSONRefused as exc:
        raise invalid_field("event", f"the body is not valid JSON: {exc}") from None
    return parse_run_event(document, regions=app.regions(), namespace_regions=app.settings.lineage.namespace_regions)


def _judged(event: LineageEvent) -> bool:
    return event.event_type is not None and event.event_type.reads_inputs


def _access_run_id(event: LineageEvent) -> str:
    return event.source_run_id or event.run.run_id


def _stored_run(app: App, event: LineageEvent) -> StoredRun | None:
    """What the access records hold for the run, to be read by the event's lineage write (if
    it makes one) for `observe_event` (`AccessTracking.stored_run`)."""
    if app.access is None or not event.records_lineage or not _judged(event):
        return None
    return app.access.stored_run(event.run.job, _access_run_id(event))


async def observe_event(app: App, event: LineageEvent, principal: str, stored: StoredRun | None = None) -> DriftResult:
    """Record the event's run as an access and judge it (`access.drift`); nothing when access
    records are off or the event type says nothing was read or written. `stored`: see
    `_stored_run`."""
    if app.access is None or not _judged(event):
        return DriftResult()
    declared = {f.dataset_id: f.locations for f in event.datasets}
    return await app.access.observe_run(
        ObservedRun(
            job=event.run.job,
            run_id=_access_run_id(event),
            run_region=event.run.run_region,
            event_time=event.run.event_time,
            inputs=event.inputs,
            outputs={o: declared.get(o, ()) for o in event.outputs},
            producer=event.producer,
            principal=principal,
            writes=event.records_lineage,
        ),
        stored,
    )


def add_lineage_routes(http_app: web.Application, app: App) -> None:
    """Mount the OpenLineage endpoint on `http_app`."""
    http_app[APP_KEY] = app
    http_app[INGEST_LOCK] = asyncio.Lock()
    http_app[GUARD] = LineageGuard(app)
    http_app.router.add_post(LINEAGE_PATH, post_lineage)
