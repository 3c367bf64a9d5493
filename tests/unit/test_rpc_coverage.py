"""Every RPC of the public API is served: the registration functions the server uses put a
handler for each method on a real gRPC server, implemented by the servicer (not the generated
base class's UNIMPLEMENTED)."""

from __future__ import annotations

import grpc

from domicile.app import App
from domicile.config import load_settings
from domicile.server import servicers
from domicile.v1 import access_pb2, audit_pb2, catalog_pb2, lineage_pb2, policy_pb2, residency_pb2

MODULES = (catalog_pb2, lineage_pb2, residency_pb2, policy_pb2, audit_pb2, access_pb2)


class _NoStore:
    """Servicers must not touch the store when constructed; calls that reach it fail."""


async def test_every_rpc_is_served() -> None:
    app = App(settings=load_settings(insecure=True), store=_NoStore())  # type: ignore[arg-type]
    server = grpc.aio.server()
    for register, servicer in servicers(app):
        register(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    unserved = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            for module in MODULES:
                for service in module.DESCRIPTOR.services_by_name.values():
                    assert service.methods, service.full_name
                    for method in service.methods:
                        request = getattr(module, method.input_type.name)()
                        path = f"/{service.full_name}/{method.name}"
                        serialize = type(request).SerializeToString
                        # Without a store or a router most handlers fail -- but as handlers.
                        try:
                            if method.server_streaming:
                                async for _ in channel.unary_stream(path, request_serializer=serialize)(
                                    request, timeout=30
                                ):
                                    pass
                            else:
                                await channel.unary_unary(path, request_serializer=serialize)(request, timeout=30)
                        except grpc.aio.AioRpcError as error:
                            if error.code() is grpc.StatusCode.UNIMPLEMENTED:
                                unserved.append(path)
    finally:
        await server.stop(0)
    assert not unserved, f"RPCs not served: {unserved}"


class _RecordingServer:
    """Records how a registration function registers its handlers."""

    def __init__(self) -> None:
        self.generic: list[grpc.GenericRpcHandler] = []
        self.registered: list[str] = []

    def add_generic_rpc_handlers(self, handlers: tuple[grpc.GenericRpcHandler, ...]) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.registered.append(service)


def test_services_are_served_through_generic_handlers_only() -> None:
    # grpc.aio waits on one pending accept per registered method for every call it takes
    # (domicile/grpc_services.py): none of the domicile.v1 methods may add one.
    app = App(settings=load_settings(insecure=True), store=_NoStore())  # type: ignore[arg-type]
    server = _RecordingServer()
    for register, servicer in servicers(app):
        register(servicer, server)
    assert server.registered == []
    names = {
        f"/{s.full_name}/{m.name}"
        for module in MODULES
        for s in module.DESCRIPTOR.services_by_name.values()
        for m in s.methods
    }

    class Details:
        invocation_metadata = ()

        def __init__(self, method: str) -> None:
            self.method = method

    unserved = [n for n in names if not any(g.service(Details(n)) is not None for g in server.generic)]
    assert not unserved
