"""The console's JSON read API: each route is one RPC of the public API.

A route's request is the RPC's request message, read from the query string (GET) or the
JSON body (POST) in the proto3 JSON mapping (field names as in the .proto, enums by name,
times as RFC 3339); its answer is the RPC's response message in the same mapping. The
handler calls the servicer gRPC uses, in process, so validation, errors and logic are the
RPC's own: there is no second copy. Which scopes a route needs is the RPC's entry in
`domicile.security.scopes.METHOD_SCOPES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from domicile import external_json
from domicile.errors import invalid_field
from domicile.v1 import access_pb2, audit_pb2, catalog_pb2, lineage_pb2, policy_pb2, residency_pb2

_FILES = (catalog_pb2, lineage_pb2, residency_pb2, policy_pb2, audit_pb2, access_pb2)
_METHODS = {
    f"/{service.full_name}/{method.name}": method
    for module in _FILES
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
}


@dataclass(frozen=True)
class Route:
    """`method path` answers the RPC `rpc` (its full gRPC method name)."""

    method: str
    path: str
    rpc: str

    @property
    def service(self) -> str:
        return self.rpc.split("/")[1]

    @property
    def name(self) -> str:
        return self.rpc.rsplit("/", 1)[1]

    def request_class(self) -> type[Message]:
        return GetMessageClass(_METHODS[self.rpc].input_type)

    def response_class(self) -> type[Message]:
        return GetMessageClass(_METHODS[self.rpc].output_type)


_CATALOG = "/domicile.v1.CatalogService/"
_LINEAGE = "/domicile.v1.LineageService/"
_RESIDENCY = "/domicile.v1.ResidencyService/"
_POLICY = "/domicile.v1.PolicyService/"
_AUDIT = "/domicile.v1.AuditService/"
_ACCESS = "/domicile.v1.AccessService/"

ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/v1/regions", _CATALOG + "ListRegions"),
    Route("GET", "/api/v1/datasets", _CATALOG + "ListDatasets"),
    Route("GET", "/api/v1/dataset", _CATALOG + "GetDataset"),
    Route("GET", "/api/v1/dataset/revisions", _CATALOG + "ListDatasetRevisions"),
    Route("GET", "/api/v1/lineage", _LINEAGE + "GetLineage"),
    Route("GET", "/api/v1/explain", _RESIDENCY + "Explain"),
    Route("GET", "/api/v1/violations", _RESIDENCY + "ListViolations"),
    # A POST only because a lineage graph names thousands of datasets: it changes nothing.
    Route("POST", "/api/v1/residency/states", _RESIDENCY + "GetResidencyStates"),
    Route("GET", "/api/v1/datasets/summary", _RESIDENCY + "SummarizeDatasets"),
    Route("GET", "/api/v1/decisions", _RESIDENCY + "ListDecisions"),
    Route("GET", "/api/v1/decisions/summary", _RESIDENCY + "SummarizeDecisions"),
    Route("GET", "/api/v1/decisions/log", _RESIDENCY + "GetDecisionLogStatus"),
    Route("GET", "/api/v1/decision", _RESIDENCY + "GetDecision"),
    Route("GET", "/api/v1/decision/replay", _RESIDENCY + "ReplayDecision"),
    Route("GET", "/api/v1/policy", _POLICY + "GetPolicy"),
    Route("GET", "/api/v1/policy/versions", _POLICY + "ListPolicyVersions"),
    Route("POST", "/api/v1/policy/impact", _POLICY + "PolicyImpact"),
    Route("GET", "/api/v1/security/events", _AUDIT + "ListSecurityEvents"),
    Route("GET", "/api/v1/access/patterns", _ACCESS + "GetAccessPatterns"),
    Route("GET", "/api/v1/access/actor", _ACCESS + "ListActorAccess"),
    Route("GET", "/api/v1/access/violations", _ACCESS + "ListObservedViolations"),
    Route("GET", "/api/v1/access/anomalies", _ACCESS + "ListAccessAnomalies"),
)

# Routes by (HTTP method, path).
ROUTE_BY_PATH: dict[tuple[str, str], Route] = {(r.method, r.path): r for r in ROUTES}


def parse_query(route: Route, query: Mapping[str, str]) -> Message:
    """The RPC request of a GET route from its query string; INVALID_ARGUMENT naming the
    parameter for one the request has not or cannot hold."""
    message = route.request_class()()
    fields = message.DESCRIPTOR.fields_by_name
    values: dict[str, Any] = {}
    for key in query:
        field = fields.get(key)
        if field is None:
            raise invalid_field(key, f"unknown parameter (known: {', '.join(sorted(fields)) or 'none'})")
        if len(query.getall(key)) > 1 if hasattr(query, "getall") else False:
            raise invalid_field(key, "given more than once")
        value: Any = query[key]
        if field.type == field.TYPE_BOOL:
            if value not in ("true", "false"):
                raise invalid_field(key, "must be true or false")
            value = value == "true"
        values[key] = value
    return _parse(values, message)


def parse_body(route: Route, body: bytes) -> Message:
    """The RPC request of a POST route from its JSON body."""
    try:
        document = external_json.parse(body or b"{}")
    except external_json.JSONRefused as exc:
        raise invalid_field("body", f"not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise invalid_field("body", "must be a JSON object")
    return _parse(document, route.request_class()())


def _parse(values: dict[str, Any], message: Message) -> Message:
    try:
        return json_format.ParseDict(values, message)
    except json_format.ParseError as exc:
        raise invalid_field("request", str(exc)) from None


def to_json(route: Route, message: Message | bytes) -> web.Response:
    """The proto3 JSON of a response, with every field present (empty lists, zeros, false). An
    answer its servicer gives serialized (`domicile.grpc_services`) is parsed first."""
    if isinstance(message, bytes):
        message = route.response_class().FromString(message)
    body = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return web.json_response(body, headers={"Cache-Control": "no-store"})
