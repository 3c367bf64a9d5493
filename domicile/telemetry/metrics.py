"""Prometheus metrics (prometheus-client): what is measured, and the registry `/metrics` reads.

The counters and histograms below are process-wide objects that the code measuring an event
updates directly. They are not registered in prometheus-client's global registry: each server
builds its own (`server_registry`) with these, the process and garbage-collector collectors,
and a `ServerCollector` that reads gauges (router freshness, decision-log queue, in-flight
calls, ...) from the running server at scrape time -- so nothing is paid for a gauge on the
request path, and two servers in one process (tests) do not collide.

docs/operations.md lists every metric; keep both in step.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from domicile import __version__

if TYPE_CHECKING:
    from domicile.app import App
    from domicile.loadshed import LoadShedder
    from domicile.security.oidc import IssuerKeys

# The `_created` series (when each labelled child was first used) double the output and no
# dashboard uses them.
disable_created_metrics()

# Latency buckets from 100 us (an in-memory decision) to 10 s (a large traversal).
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

RPC_DURATION = Histogram(
    "domicile_rpc_duration_seconds",
    "gRPC calls served, by service, method and status code (_count is the number of calls).",
    ["service", "method", "code"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
HTTP_DURATION = Histogram(
    "domicile_http_request_duration_seconds",
    "HTTP requests served, by method, route and status (_count is the number of requests).",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
RPC_SHED = Counter(
    "domicile_rpc_shed_total",
    "gRPC calls refused at once by load shedding (RESOURCE_EXHAUSTED with RetryInfo), by limit.",
    ["limit"],
    registry=None,
)
DECISIONS = Counter(
    "domicile_decisions_total",
    "Residency decisions made (every one is logged), by operation and outcome.",
    ["operation", "outcome"],
    registry=None,
)
DECISION_REASONS = Counter(
    "domicile_decision_reasons_total",
    "Reasons given in decisions, by reason code and rule (empty for reasons without a rule).",
    ["code", "rule"],
    registry=None,
)
STORE_DURATION = Histogram(
    "domicile_store_operation_duration_seconds",
    "Catalog store calls, by backend, operation and outcome (ok, error).",
    ["backend", "operation", "outcome"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
DECISION_LOG_WRITE = Histogram(
    "domicile_decision_log_write_seconds",
    "Decision log writes: the lines of a batch written and fdatasynced, in one system call (O_DSYNC).",
    buckets=LATENCY_BUCKETS,
    registry=None,
)
AUTHENTICATION_FAILURES = Counter(
    "domicile_authentication_failures_total",
    "Requests refused because their credentials did not authenticate, by reason.",
    ["reason"],
    registry=None,
)
AUTHORIZATION_FAILURES = Counter(
    "domicile_authorization_failures_total",
    "Authenticated requests refused: missing scope, unmapped method, rate limit; by reason.",
    ["reason"],
    registry=None,
)
IDP_KEY_FETCHES = Counter(
    "domicile_idp_key_fetches_total",
    "Fetches of the identity provider's discovery document and key set, by outcome.",
    ["outcome"],
    registry=None,
)
OPENLINEAGE_EVENTS = Counter(
    "domicile_openlineage_events_total",
    "OpenLineage RunEvents received over HTTP, by outcome (accepted, rejected).",
    ["outcome"],
    registry=None,
)

PROCESS_WIDE: tuple[Collector, ...] = (
    RPC_DURATION,
    HTTP_DURATION,
    RPC_SHED,
    DECISIONS,
    DECISION_REASONS,
    STORE_DURATION,
    DECISION_LOG_WRITE,
    AUTHENTICATION_FAILURES,
    AUTHORIZATION_FAILURES,
    IDP_KEY_FETCHES,
    OPENLINEAGE_EVENTS,
)


class ServerCollector(Collector):
    """Gauges read from one running server when scraped. `catalog_head` is the store's
    revision, read (asynchronously) by the scrape handler just before it collects; None when
    the store could not answer."""

    def __init__(self, app: App, *, shedder: LoadShedder | None = None, issuer_keys: IssuerKeys | None = None) -> None:
        self._app = app
        self._shedder = shedder
        self._issuer_keys = issuer_keys
        self.catalog_head: int | None = None

    def describe(self) -> Iterable[Metric]:
        return []  # collected lazily: nothing to check against the registry's names

    def collect(self) -> Iterator[Metric]:
        yield InfoMetricFamily("domicile_build", "The running Domicile version.", value={"version": __version__})
        if self._shedder is not None:
            yield GaugeMetricFamily(
                "domicile_rpc_in_flight",
                "gRPC calls being served now (not counting those waiting for the decision log's fsync).",
                value=self._shedder.in_flight,
            )
            yield GaugeMetricFamily(
                "domicile_event_loop_lag_seconds",
                "How late the event loop last ran a timer (load shedding refuses calls beyond "
                "load_shedding.max_event_loop_lag_seconds).",
                value=self._shedder.lag,
            )
            if self._shedder.idle_share is not None:
                yield GaugeMetricFamily(
                    "domicile_event_loop_idle_share",
                    "The share of the last sample the event loop spent waiting for work (load shedding "
                    "refuses calls below load_shedding.min_event_loop_idle_share).",
                    value=self._shedder.idle_share,
                )
            yield GaugeMetricFamily(
                "domicile_load_shed_share",
                "The share of new calls being refused because the event loop is saturated (0 to 1).",
                value=self._shedder.shed_share,
            )
        router = self._app.router
        if router is not None:
            status = router.status()
            yield GaugeMetricFamily(
                "domicile_router_view_age_seconds",
                "Seconds since the router last confirmed its view of the catalog (decisions fail closed "
                "with STALE_CATALOG beyond router.staleness_bound_seconds).",
                value=status.view_age_seconds,
            )
            yield GaugeMetricFamily(
                "domicile_router_catalog_revision",
                "The catalog revision the router's index reflects.",
                value=status.revision,
            )
            if self.catalog_head is not None:
                yield GaugeMetricFamily(
                    "domicile_catalog_revision", "The catalog store's current revision.", value=self.catalog_head
                )
                yield GaugeMetricFamily(
                    "domicile_router_feed_lag_revisions",
                    "Catalog revisions written but not yet applied by the router (change-feed lag).",
                    value=max(0, self.catalog_head - status.revision),
                )
            policy = InfoMetricFamily("domicile_policy", "The active residency policy.")
            policy.add_metric([], {"version": status.policy_version})
            yield policy
            yield GaugeMetricFamily(
                "domicile_decision_log_queue_depth",
                "Decision log entries queued and not yet written and fsynced.",
                value=status.decision_log_queued,
            )
        if self._issuer_keys is not None and self._issuer_keys.last_success is not None:
            yield GaugeMetricFamily(
                "domicile_idp_keys_last_success_timestamp_seconds",
                "When the identity provider's key set was last fetched successfully (Unix time).",
                value=self._issuer_keys.last_success,
            )


def server_registry(
    app: App, *, shedder: LoadShedder | None = None, issuer_keys: IssuerKeys | None = None
) -> tuple[CollectorRegistry, ServerCollector]:
    """A registry for one server's `/metrics`: the process-wide metrics above, process and GC
    statistics, and that server's gauges."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in PROCESS_WIDE:
        registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    server = ServerCollector(app, shedder=shedder, issuer_keys=issuer_keys)
    registry.register(server)
    return registry, server
