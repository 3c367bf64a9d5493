"""The one table of required scopes: every RPC and HTTP route maps to what its caller needs.

Default deny: a gRPC method missing from `METHOD_SCOPES` is refused at run time (and
`tests/unit/test_security_scopes.py` walks every service descriptor so none can be forgotten).
A requirement is a set of alternatives -- holding any one of them is enough; an empty set means
"any authenticated caller" (used for health and reflection when they are not configured open).
"""

from __future__ import annotations

CATALOG_READ = "catalog:read"
CATALOG_WRITE = "catalog:write"
LINEAGE_READ = "lineage:read"
LINEAGE_WRITE = "lineage:write"
# Ending lineage, and re-recording a job's edges with a transform that removes more: changes
# that can loosen residency constraints (see lineage/trust.py).
LINEAGE_ADMIN = "lineage:admin"
RESIDENCY_DECIDE = "residency:decide"
POLICY_ADMIN = "policy:admin"
AUDIT_READ = "audit:read"
METRICS_READ = "metrics:read"

ALL_SCOPES: tuple[str, ...] = (
    CATALOG_READ,
    CATALOG_WRITE,
    LINEAGE_READ,
    LINEAGE_WRITE,
    LINEAGE_ADMIN,
    RESIDENCY_DECIDE,
    POLICY_ADMIN,
    AUDIT_READ,
    METRICS_READ,
)

AUTHENTICATED: frozenset[str] = frozenset()

HEALTH_METHODS = frozenset(
    {"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch", "/grpc.health.v1.Health/List"}
)
REFLECTION_METHODS = frozenset(
    {
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)


def _one(scope: str) -> frozenset[str]:
    return frozenset({scope})


METHOD_SCOPES: dict[str, frozenset[str]] = {
    "/domicile.v1.CatalogService/UpsertDataset": _one(CATALOG_WRITE),
    "/domicile.v1.CatalogService/DeleteDataset": _one(CATALOG_WRITE),
    "/domicile.v1.CatalogService/GetDataset": _one(CATALOG_READ),
    "/domicile.v1.CatalogService/ListDatasets": _one(CATALOG_READ),
    "/domicile.v1.CatalogService/ListRegions": _one(CATALOG_READ),
    "/domicile.v1.CatalogService/ListDatasetRevisions": _one(CATALOG_READ),
    "/domicile.v1.LineageService/RecordLineage": _one(LINEAGE_WRITE),
    "/domicile.v1.LineageService/EndLineage": _one(LINEAGE_ADMIN),
    "/domicile.v1.LineageService/GetLineage": _one(LINEAGE_READ),
    "/domicile.v1.ResidencyService/Decide": _one(RESIDENCY_DECIDE),
    "/domicile.v1.ResidencyService/BatchDecide": _one(RESIDENCY_DECIDE),
    "/domicile.v1.ResidencyService/Route": _one(RESIDENCY_DECIDE),
    "/domicile.v1.ResidencyService/CheckJob": _one(RESIDENCY_DECIDE),
    "/domicile.v1.ResidencyService/Explain": _one(RESIDENCY_DECIDE),
    # Counts only: what the catalog listing already shows to its readers.
    "/domicile.v1.ResidencyService/SummarizeDatasets": _one(CATALOG_READ),
    # Reading the decision log and scanning for violations is audit work, not routing.
    "/domicile.v1.ResidencyService/ScanViolations": _one(AUDIT_READ),
    "/domicile.v1.ResidencyService/ListViolations": _one(AUDIT_READ),
    "/domicile.v1.ResidencyService/GetResidencyStates": _one(AUDIT_READ),
    "/domicile.v1.ResidencyService/GetDecision": _one(AUDIT_READ),
    "/domicile.v1.ResidencyService/ReplayDecision": _one(AUDIT_READ),
    "/domicile.v1.ResidencyService/ListDecisions": _one(AUDIT_READ),
    "/domicile.v1.ResidencyService/SummarizeDecisions": _one(AUDIT_READ),
    "/domicile.v1.ResidencyService/GetDecisionLogStatus": _one(AUDIT_READ),
    "/domicile.v1.AuditService/ListSecurityEvents": _one(AUDIT_READ),
    # Who touched which dataset, observed violations and anomalies: audit data.
    "/domicile.v1.AccessService/GetAccessPatterns": _one(AUDIT_READ),
    "/domicile.v1.AccessService/ListActorAccess": _one(AUDIT_READ),
    "/domicile.v1.AccessService/ListObservedViolations": _one(AUDIT_READ),
    "/domicile.v1.AccessService/ListAccessAnomalies": _one(AUDIT_READ),
    "/domicile.v1.PolicyService/SetPolicy": _one(POLICY_ADMIN),
    # A proposal becomes active only when a *second* policy:admin approves it (checked by the
    # service: router/policy_changes.py); anyone with policy:admin may reject one.
    "/domicile.v1.PolicyService/ApprovePolicy": _one(POLICY_ADMIN),
    "/domicile.v1.PolicyService/RejectPolicy": _one(POLICY_ADMIN),
    "/domicile.v1.PolicyService/ListPolicyProposals": frozenset({POLICY_ADMIN, AUDIT_READ}),
    # Auditors must be able to read the policy in force and preview a change's impact without
    # being able to change it; administrators can of course do both.
    "/domicile.v1.PolicyService/GetPolicy": frozenset({POLICY_ADMIN, AUDIT_READ}),
    "/domicile.v1.PolicyService/PolicyImpact": frozenset({POLICY_ADMIN, AUDIT_READ}),
    "/domicile.v1.PolicyService/ListPolicyVersions": frozenset({POLICY_ADMIN, AUDIT_READ}),
    **dict.fromkeys(HEALTH_METHODS | REFLECTION_METHODS, AUTHENTICATED),
}

# HTTP routes: (method, path) -> required scopes. Paths not listed need a valid token and are
# then answered by aiohttp (404/405) or refused (403) if a route exists but is not listed.
HTTP_SCOPES: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/api/v1/lineage"): _one(LINEAGE_WRITE),
    # Prometheus scrapes with a token of its own (metrics:read), or uses the ops listener.
    ("GET", "/metrics"): _one(METRICS_READ),
    ("HEAD", "/metrics"): _one(METRICS_READ),
}
# The probes (domicile.health): open, like grpc.health.v1 can be (auth.open_health).
HTTP_OPEN: frozenset[tuple[str, str]] = frozenset(
    (method, path) for method in ("GET", "HEAD") for path in ("/healthz", "/livez", "/readyz")
)


def open_methods(*, health: bool, reflection: bool) -> frozenset[str]:
    """The gRPC methods reachable without a token under the given configuration."""
    methods: set[str] = set()
    if health:
        methods |= HEALTH_METHODS
    if reflection:
        methods |= REFLECTION_METHODS
    return frozenset(methods)


def is_allowed(required: frozenset[str], granted: frozenset[str]) -> bool:
    """True when `granted` satisfies `required` (any one alternative; empty = authenticated)."""
    return not required or bool(required & granted)


def describe(required: frozenset[str]) -> str:
    """Human-readable requirement for error messages: `catalog:read` or `a or b`."""
    return " or ".join(sorted(required)) if required else "authentication"
