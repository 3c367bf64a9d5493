"""Translation between lineage protobuf messages and domain values (no grpc here)."""

from __future__ import annotations

from domicile.catalog.model import Direction, Edge, LineageNode, Traversal
from domicile.timeconv import from_timestamp, to_timestamp
from domicile.v1 import lineage_pb2

DIRECTIONS = {
    lineage_pb2.DIRECTION_UNSPECIFIED: Direction.UPSTREAM,
    lineage_pb2.DIRECTION_UPSTREAM: Direction.UPSTREAM,
    lineage_pb2.DIRECTION_DOWNSTREAM: Direction.DOWNSTREAM,
    lineage_pb2.DIRECTION_BOTH: Direction.BOTH,
}
DIRECTION_TO_PROTO = {
    Direction.UPSTREAM: lineage_pb2.DIRECTION_UPSTREAM,
    Direction.DOWNSTREAM: lineage_pb2.DIRECTION_DOWNSTREAM,
    Direction.BOTH: lineage_pb2.DIRECTION_BOTH,
}


def edge_to_proto(edge: Edge) -> lineage_pb2.LineageEdge:
    message = lineage_pb2.LineageEdge(
        input=edge.input, output=edge.output, job=edge.job, transform=edge.transform, run_id=edge.run_id
    )
    if edge.record_time is not None:
        message.record_time.CopyFrom(to_timestamp(edge.record_time))
    if edge.end_time is not None:
        message.end_time.CopyFrom(to_timestamp(edge.end_time))
    return message


def edge_from_proto(message: lineage_pb2.LineageEdge) -> Edge:
    return Edge(
        input=message.input,
        output=message.output,
        job=message.job,
        transform=message.transform,
        run_id=message.run_id,
        record_time=from_timestamp(message.record_time) if message.HasField("record_time") else None,
        end_time=from_timestamp(message.end_time) if message.HasField("end_time") else None,
    )


def traversal_to_proto(traversal: Traversal) -> lineage_pb2.GetLineageResponse:
    return lineage_pb2.GetLineageResponse(
        nodes=[lineage_pb2.LineageNode(dataset_id=n.dataset_id, depth=n.depth, placeholder=n.placeholder) for n in traversal.nodes],
        edges=[edge_to_proto(e) for e in traversal.edges],
        complete=traversal.complete,
        incomplete_reason=traversal.incomplete_reason,
    )


def traversal_from_proto(message: lineage_pb2.GetLineageResponse) -> Traversal:
    """The domain value of a GetLineage answer (used by the CLI to render it)."""
    return Traversal(
        nodes=tuple(LineageNode(n.dataset_id, n.depth, n.placeholder) for n in message.nodes),
        edges=tuple(edge_from_proto(e) for e in message.edges),
        complete=message.complete,
        incomplete_reason=message.incomplete_reason,
    )
