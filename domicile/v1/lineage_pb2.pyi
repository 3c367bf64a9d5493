import datetime

from domicile.v1 import access_pb2 as _access_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_UNSPECIFIED: _ClassVar[Direction]
    DIRECTION_UPSTREAM: _ClassVar[Direction]
    DIRECTION_DOWNSTREAM: _ClassVar[Direction]
    DIRECTION_BOTH: _ClassVar[Direction]
DIRECTION_UNSPECIFIED: Direction
DIRECTION_UPSTREAM: Direction
DIRECTION_DOWNSTREAM: Direction
DIRECTION_BOTH: Direction

class RecordLineageRequest(_message.Message):
    __slots__ = ("job", "run_id", "run_region", "inputs", "outputs", "transform", "event_time", "producer")
    JOB_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_REGION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    job: str
    run_id: str
    run_region: str
    inputs: _containers.RepeatedScalarFieldContainer[str]
    outputs: _containers.RepeatedScalarFieldContainer[str]
    transform: str
    event_time: _timestamp_pb2.Timestamp
    producer: str
    def __init__(self, job: _Optional[str] = ..., run_id: _Optional[str] = ..., run_region: _Optional[str] = ..., inputs: _Optional[_Iterable[str]] = ..., outputs: _Optional[_Iterable[str]] = ..., transform: _Optional[str] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., producer: _Optional[str] = ...) -> None: ...

class RecordLineageResponse(_message.Message):
    __slots__ = ("edges_created", "catalog_revision", "observed_violations", "late")
    EDGES_CREATED_FIELD_NUMBER: _ClassVar[int]
    CATALOG_REVISION_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    LATE_FIELD_NUMBER: _ClassVar[int]
    edges_created: int
    catalog_revision: int
    observed_violations: _containers.RepeatedCompositeFieldContainer[_access_pb2.ObservedViolation]
    late: bool
    def __init__(self, edges_created: _Optional[int] = ..., catalog_revision: _Optional[int] = ..., observed_violations: _Optional[_Iterable[_Union[_access_pb2.ObservedViolation, _Mapping]]] = ..., late: _Optional[bool] = ...) -> None: ...

class GetLineageRequest(_message.Message):
    __slots__ = ("dataset_id", "direction", "max_depth", "as_of")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    MAX_DEPTH_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    direction: Direction
    max_depth: int
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, dataset_id: _Optional[str] = ..., direction: _Optional[_Union[Direction, str]] = ..., max_depth: _Optional[int] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LineageNode(_message.Message):
    __slots__ = ("dataset_id", "depth", "placeholder")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    PLACEHOLDER_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    depth: int
    placeholder: bool
    def __init__(self, dataset_id: _Optional[str] = ..., depth: _Optional[int] = ..., placeholder: _Optional[bool] = ...) -> None: ...

class LineageEdge(_message.Message):
    __slots__ = ("input", "output", "job", "transform", "run_id", "record_time", "end_time", "unapproved_declassification")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    RECORD_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    UNAPPROVED_DECLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    input: str
    output: str
    job: str
    transform: str
    run_id: str
    record_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    unapproved_declassification: bool
    def __init__(self, input: _Optional[str] = ..., output: _Optional[str] = ..., job: _Optional[str] = ..., transform: _Optional[str] = ..., run_id: _Optional[str] = ..., record_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., unapproved_declassification: _Optional[bool] = ...) -> None: ...

class GetLineageResponse(_message.Message):
    __slots__ = ("nodes", "edges", "complete", "incomplete_reason")
    NODES_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    INCOMPLETE_REASON_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[LineageNode]
    edges: _containers.RepeatedCompositeFieldContainer[LineageEdge]
    complete: bool
    incomplete_reason: str
    def __init__(self, nodes: _Optional[_Iterable[_Union[LineageNode, _Mapping]]] = ..., edges: _Optional[_Iterable[_Union[LineageEdge, _Mapping]]] = ..., complete: _Optional[bool] = ..., incomplete_reason: _Optional[str] = ...) -> None: ...

class EndLineageRequest(_message.Message):
    __slots__ = ("job", "inputs", "outputs", "end_time")
    JOB_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    job: str
    inputs: _containers.RepeatedScalarFieldContainer[str]
    outputs: _containers.RepeatedScalarFieldContainer[str]
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, job: _Optional[str] = ..., inputs: _Optional[_Iterable[str]] = ..., outputs: _Optional[_Iterable[str]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EndLineageResponse(_message.Message):
    __slots__ = ("edges_ended", "catalog_revision")
    EDGES_ENDED_FIELD_NUMBER: _ClassVar[int]
    CATALOG_REVISION_FIELD_NUMBER: _ClassVar[int]
    edges_ended: int
    catalog_revision: int
    def __init__(self, edges_ended: _Optional[int] = ..., catalog_revision: _Optional[int] = ...) -> None: ...
