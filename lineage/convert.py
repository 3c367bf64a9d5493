"""Translation between lineage protobuf messages and domain values (no grpc here)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

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


def edge_to_proto(
    edge: Edge, stamps: dict[datetime, Timestamp] | None = None, unapproved: bool = False
) -> lineage_pb2.LineageEdge:
    """The edge as a message; `stamps` caches Timestamps across the edges of one answer
    (edges recorded by one write share their time, and answers hold thousands of edges);
    `unapproved`: its transform is a declassifier the active policy does not grant its job."""
    stamps = {} if stamps is None else stamps

    def stamp(value: datetime | None) -> Timestamp | None:
        if value is None:
            return None
        if value not in stamps:
            stamps[value] = to_timestamp(value)
        return stamps[value]

    return lineage_pb2.LineageEdge(
        input=edge.input,
        output=edge.output,
        job=edge.job,
        transform=edge.transform,
        run_id=edge.run_id,
        record_time=stamp(edge.record_time),
        end_time=stamp(edge.end_time),
        unapproved_declassification=unapproved,
    )


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


def traversal_to_proto(
    traversal: Traversal, unapproved: Callable[[str, str], bool] = lambda transform, job: False
) -> lineage_pb2.GetLineageResponse:
    """The answer to GetLineage; `unapproved(transform, job)` tells the edges claiming a
    declassifying transform the active policy does not grant their job."""
    stamps: dict[datetime, Timestamp] = {}
    return lineage_pb2.GetLineageResponse(
        nodes=[
            lineage_pb2.LineageNode(dataset_id=n.dataset_id, depth=n.depth, placeholder=n.placeholder)
            for n in traversal.nodes
        ],
        edges=[edge_to_proto(e, stamps, unapproved(e.transform, e.job)) for e in traversal.edges],
        complete=traversal.complete,
        incomplete_reason=traversal.incomplete_reason,
    )


def traversal_from_proto(message: lineage_pb2.GetLineageResponse) -> Traversal:
    """The domain value of a GetLineage answer (the SDK's `get_lineage`)."""
    return Traversal(
        nodes=tuple(LineageNode(n.dataset_id, n.depth, n.placeholder) for n in message.nodes),
        edges=tuple(edge_from_proto(e) for e in message.edges),
        complete=message.complete,
        incomplete_reason=message.incomplete_reason,
    )
