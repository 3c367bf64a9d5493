"""The scopes table covers every RPC of every service the server registers (default deny)."""

from __future__ import annotations

from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from domicile.security.scopes import (
    ALL_SCOPES,
    HEALTH_METHODS,
    METHOD_SCOPES,
    REFLECTION_METHODS,
    describe,
    is_allowed,
    open_methods,
)
from domicile.v1 import access_pb2, audit_pb2, catalog_pb2, lineage_pb2, policy_pb2, residency_pb2

DOMICILE_FILES = (catalog_pb2, lineage_pb2, residency_pb2, policy_pb2, audit_pb2, access_pb2)


def served_methods() -> set[str]:
    methods = set()
    for module in (*DOMICILE_FILES, health_pb2, reflection_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            methods |= {f"/{service.full_name}/{method.name}" for method in service.methods}
    return methods


def test_every_method_of_every_service_has_a_scope():
    unmapped = sorted(served_methods() - METHOD_SCOPES.keys())
    assert not unmapped, f"RPCs without a scope mapping (they would be refused at run time): {unmapped}"


def test_every_domicile_method_needs_a_real_scope():
    for module in DOMICILE_FILES:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                required = METHOD_SCOPES[f"/{service.full_name}/{method.name}"]
                assert required, f"{service.full_name}/{method.name} must need a scope, not just a token"
                assert required <= set(ALL_SCOPES)


def test_table_has_no_stale_entries():
    stale = set(METHOD_SCOPES) - served_methods() - REFLECTION_METHODS
    assert not stale, f"scope entries for methods no service defines: {sorted(stale)}"


def test_write_and_admin_methods_are_not_reachable_with_read_scopes():
    readers = frozenset({"catalog:read", "lineage:read", "audit:read", "residency:decide"})
    for method in (
        "/domicile.v1.CatalogService/UpsertDataset",
        "/domicile.v1.CatalogService/DeleteDataset",
        "/domicile.v1.LineageService/RecordLineage",
        "/domicile.v1.LineageService/EndLineage",
        "/domicile.v1.PolicyService/SetPolicy",
        "/domicile.v1.PolicyService/ApprovePolicy",
        "/domicile.v1.PolicyService/RejectPolicy",
    ):
        assert not is_allowed(METHOD_SCOPES[method], readers), method
    assert is_allowed(METHOD_SCOPES["/domicile.v1.PolicyService/GetPolicy"], frozenset({"audit:read"}))
    assert is_allowed(METHOD_SCOPES["/domicile.v1.PolicyService/ListPolicyProposals"], frozenset({"audit:read"}))
    # Ending lineage loosens constraints: lineage:write is not enough.
    assert not is_allowed(METHOD_SCOPES["/domicile.v1.LineageService/EndLineage"], frozenset({"lineage:write"}))
    assert is_allowed(METHOD_SCOPES["/domicile.v1.LineageService/EndLineage"], frozenset({"lineage:admin"}))


def test_open_methods_only_when_configured():
    assert open_methods(health=False, reflection=False) == frozenset()
    assert open_methods(health=True, reflection=False) == HEALTH_METHODS
    assert open_methods(health=True, reflection=True) == HEALTH_METHODS | REFLECTION_METHODS
    # Closed health still needs a valid token, but no particular scope.
    assert is_allowed(METHOD_SCOPES["/grpc.health.v1.Health/Check"], frozenset())


def test_describe():
    assert describe(frozenset({"policy:admin", "audit:read"})) == "audit:read or policy:admin"
    assert describe(frozenset()) == "authentication"
