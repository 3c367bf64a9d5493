"""OpenTelemetry tracing: off unless asked for, configured by the standard OTEL_* variables.

`configure_tracing()` (called once by `domicile serve` and `create_server`) turns tracing on
when `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, or `console` for a look on stderr) and
`OTEL_SDK_DISABLED` is not `true`: it installs the SDK's TracerProvider with a batching OTLP
exporter, which reads everything else from the environment (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`..._HEADERS`, `..._CERTIFICATE`, `OTEL_EXPORTER_OTLP_PROTOCOL` = `grpc` or `http/protobuf`,
`OTEL_TRACES_SAMPLER`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_*`). A
TracerProvider installed before (by `opentelemetry-instrument`, an embedding application or a
test) is used as it is. Without one, `tracing_enabled()` is False and the server installs no
tracing interceptor and creates no spans.

Spans are made with `span(name, attributes)`; attribute values must never include a token or
other credential.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider as _SDKTracerProvider
from opentelemetry.util.types import AttributeValue

from domicile import __version__

TRACER_NAME = "domicile"


def configure_tracing() -> bool:
    """Install the SDK TracerProvider the environment asks for (see the module docstring),
    unless one is installed already; True when tracing is on. Then also instruments aiohttp:
    the HTTP endpoint's requests get server spans, and requests to the identity provider carry
    the `traceparent` of the call that made them."""
    if tracing_enabled():
        _instrument_aiohttp()
        return True
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not exporter_name or exporter_name == "none" or _sdk_disabled():
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({SERVICE_VERSION: __version__})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "domicile"}))
    provider = _SDKTracerProvider(resource=resource)
    for name in exporter_name.split(","):
        provider.add_span_processor(BatchSpanProcessor(_exporter(name.strip())))
    trace.set_tracer_provider(provider)
    _instrument_aiohttp()
    return True


def _instrument_aiohttp() -> None:
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

    # Both are idempotent; they patch aiohttp's Application and ClientSession classes, so they
    # apply to what is created from now on. Probes and scrapes are not worth a trace each.
    os.environ.setdefault("OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS", "/metrics,/livez,/readyz,/healthz")
    AioHttpServerInstrumentor().instrument()
    AioHttpClientInstrumentor().instrument()


def grpc_server_interceptor() -> Any:
    """The OpenTelemetry grpc.aio server interceptor: one SERVER span per call (continuing the
    caller's W3C `traceparent`), for the domicile.v1 services -- not for health checks and
    reflection (`grpc.*`), whose streaming handlers it cannot wrap and whose spans would be
    noise."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

    return aio_server_interceptor(filter_=filters.negate(filters.service_prefix("grpc.")))


def _exporter(name: str) -> Any:
    if name == "otlp":
        protocol = (
            os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
        ).strip()
        if protocol in ("", "grpc"):
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        elif protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[assignment]
        else:
            raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: use grpc or http/protobuf")
        return OTLPSpanExporter()
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stderr)
    raise ValueError(f"OTEL_TRACES_EXPORTER={name!r}: use otlp, console or none")


def _sdk_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def tracing_enabled() -> bool:
    """True when spans are recorded: an SDK TracerProvider is installed."""
    return isinstance(trace.get_tracer_provider(), _SDKTracerProvider)


def _current_tracer() -> trace.Tracer:
    return _tracer_of(trace.get_tracer_provider())


@functools.lru_cache(maxsize=4)
def _tracer_of(provider: trace.TracerProvider) -> trace.Tracer:
    # Per provider: tests install one after another.
    return provider.get_tracer(TRACER_NAME, __version__)


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, AttributeValue] | None = None) -> Iterator[trace.Span]:
    """A child span of the current one (a non-recording span when tracing is off)."""
    with _current_tracer().start_as_current_span(name, attributes=attributes, record_exception=True) as current:
        yield current


def optional_span(
    name: str, attributes: Mapping[str, AttributeValue] | None = None
) -> contextlib.AbstractContextManager[Any]:
    """`span(name, attributes)` as a child of the current span when that one records; nothing
    at all (not even a non-recording span, nor a generator) otherwise -- with tracing off, or
    outside a sampled request -- for code on the decision path. (Asking the current span is
    cheaper than `tracing_enabled()`, which looks up the environment while tracing is off.)"""
    if not trace.get_current_span().is_recording():
        return contextlib.nullcontext()
    return _current_tracer().start_as_current_span(name, attributes=attributes, record_exception=True)


@contextlib.contextmanager
def child_span(name: str, attributes: Mapping[str, AttributeValue] | None = None) -> Iterator[None]:
    """`span(name, attributes)` inside a request's trace; nothing for background work (the
    router following the catalog, health checks), which would otherwise start a trace of its
    own every few hundred milliseconds."""
    if not tracing_enabled() or not trace.get_current_span().get_span_context().is_valid:
        yield
        return
    with _current_tracer().start_as_current_span(name, attributes=attributes, record_exception=True):
        yield


def current_trace_ids() -> tuple[str, str]:
    """(trace id, span id) of the current span as hex, or ('', '') when there is none."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return "", ""
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
