"""gRPC server reflection under both its names, `grpc.reflection.v1` and `v1alpha`.

grpcio-reflection serves only `grpc.reflection.v1alpha.ServerReflection`; tools that speak
only v1 (the name the protocol was published under) get UNIMPLEMENTED. v1 is the same
protocol under another package: its messages have the same fields with the same numbers. So
one servicer answers both, with v1alpha's message classes, and the v1 file descriptor is
v1alpha's with the package renamed, added to the pool so that v1's own service can be
described like any other.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1ALPHA_SERVICE = reflection.SERVICE_NAME
V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE = f"{V1_PACKAGE}.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"
_METHOD = "ServerReflectionInfo"


def _v1_file() -> descriptor_pb2.FileDescriptorProto:
    """v1alpha's reflection.proto, renamed to the v1 package (and its type references)."""
    file = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file)
    old, new = f".{file.package}.", f".{V1_PACKAGE}."

    def rename(name: str) -> str:
        return new + name.removeprefix(old) if name.startswith(old) else name

    def rename_fields(message: descriptor_pb2.DescriptorProto) -> None:
        for field in message.field:
            if field.HasField("type_name"):  # (assigning would set it on scalar fields too)
                field.type_name = rename(field.type_name)
        for nested in message.nested_type:
            rename_fields(nested)

    for message in file.message_type:
        rename_fields(message)
    for service in file.service:
        for method in service.method:
            method.input_type, method.output_type = rename(method.input_type), rename(method.output_type)
    file.name, file.package = V1_FILE, V1_PACKAGE
    file.ClearField("options")  # v1alpha's Java and Objective-C package options
    return file


def _register_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    try:
        pool.FindFileByName(V1_FILE)
    except KeyError:
        pool.Add(_v1_file())


def enable_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Serve reflection v1 and v1alpha on `server`, listing `service_names` and both
    reflection services."""
    pool = descriptor_pool.Default()
    _register_v1_descriptor(pool)
    servicer = reflection.aio.ReflectionServicer((*service_names, V1_SERVICE, V1ALPHA_SERVICE), pool=pool)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.method_handlers_generic_handler(
        V1_SERVICE,
        {
            _METHOD: grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1,))
