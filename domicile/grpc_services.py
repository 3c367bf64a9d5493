"""Registering a servicer of a domicile.v1 service: every method through one generic handler
per service, with a few methods served as bytes -- the answers the residency engine encodes
(BatchDecide's, an access pattern's), which would cost more to build as messages than to make.
Every method of these services is unary.

The methods are not also registered as grpc.aio's *registered methods*, as the generated
`add_XServiceServicer_to_server` registers them: grpc.aio (1.85) keeps one pending accept per
registered method and waits on all of them again for every call it takes (grpc/grpc#41796), so
each registered method adds to the cost of every call to any method, far more than the generic
handlers' lookup (a dictionary per service) costs. Served through the generic handlers, the
35 methods of these services share one pending accept.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from types import ModuleType
from typing import Any

import grpc


def add_service(
    server: grpc.aio.Server,
    module: ModuleType,
    service: str,
    servicer: Any,
    *,
    raw_requests: Collection[str] = (),
    raw_answers: Collection[str] = (),
) -> None:
    """Register `servicer` for `service` of the generated `module` (e.g. `residency_pb2`). The
    methods named in `raw_requests` get their request serialized; those in `raw_answers`
    return their answer serialized."""
    descriptor = module.DESCRIPTOR.services_by_name[service]
    handlers = {}
    for method in descriptor.methods:
        request = getattr(module, method.input_type.name)
        response = getattr(module, method.output_type.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=None if method.name in raw_requests else request.FromString,
            response_serializer=None if method.name in raw_answers else response.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(descriptor.full_name, handlers),))


def registration(module: ModuleType, service: str) -> Callable[[Any, grpc.aio.Server], None]:
    """`add_service` for `service` of `module`, called as the generated
    `add_XServiceServicer_to_server(servicer, server)` is."""

    def add(servicer: Any, server: grpc.aio.Server) -> None:
        add_service(server, module, service, servicer)

    return add
