"""Every RPC of the public API is implemented by the servicer the server registers."""

from __future__ import annotations

import inspect

from domicile.app import App
from domicile.config import load_settings
from domicile.server import servicers
from domicile.v1 import access_pb2, audit_pb2, catalog_pb2, lineage_pb2, policy_pb2, residency_pb2


class _NoStore:
    """Servicers must not touch the store when constructed."""


def test_every_rpc_has_an_implementation():
    app = App(settings=load_settings(insecure=True), store=_NoStore())  # type: ignore[arg-type]
    registered = {
        type(servicer).__mro__[1].__name__.removesuffix("Servicer"): servicer for _, servicer in servicers(app)
    }
    services = [
        s
        for module in (catalog_pb2, lineage_pb2, residency_pb2, policy_pb2, audit_pb2, access_pb2)
        for s in module.DESCRIPTOR.services_by_name.values()
    ]
    assert {s.name for s in services} == set(registered), "a service is not registered"
    missing = []
    for service in services:
        servicer = registered[service.name]
        base = type(servicer).__mro__[1]  # the generated XServiceServicer (answers UNIMPLEMENTED)
        for method in service.methods:
            implementation = getattr(type(servicer), method.name, None)
            if implementation is None or implementation is getattr(base, method.name):
                missing.append(f"{service.full_name}/{method.name}")
            elif not inspect.iscoroutinefunction(implementation):
                missing.append(f"{service.full_name}/{method.name} (not async)")
    assert not missing, f"RPCs without an implementation: {missing}"
