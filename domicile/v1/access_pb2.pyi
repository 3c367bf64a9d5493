import datetime

from domicile.v1 import residency_pb2 as _residency_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AccessOperation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCESS_OPERATION_UNSPECIFIED: _ClassVar[AccessOperation]
    ACCESS_OPERATION_READ: _ClassVar[AccessOperation]
    ACCESS_OPERATION_WRITE: _ClassVar[AccessOperation]
    ACCESS_OPERATION_CATALOG_WRITE: _ClassVar[AccessOperation]
    ACCESS_OPERATION_INTENT_STORE: _ClassVar[AccessOperation]
    ACCESS_OPERATION_INTENT_PROCESS: _ClassVar[AccessOperation]

class ObservedViolationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OBSERVED_VIOLATION_KIND_UNSPECIFIED: _ClassVar[ObservedViolationKind]
    OBSERVED_VIOLATION_KIND_POLICY_DENIED: _ClassVar[ObservedViolationKind]
    OBSERVED_VIOLATION_KIND_UNKNOWN_RUN_REGION: _ClassVar[ObservedViolationKind]
    OBSERVED_VIOLATION_KIND_UNKNOWN_OUTPUT_LOCATION: _ClassVar[ObservedViolationKind]
    OBSERVED_VIOLATION_KIND_NOT_JUDGED: _ClassVar[ObservedViolationKind]

class AccessAnomalyKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCESS_ANOMALY_KIND_UNSPECIFIED: _ClassVar[AccessAnomalyKind]
    ACCESS_ANOMALY_KIND_NEW_CLASSIFICATION_FOR_ACTOR: _ClassVar[AccessAnomalyKind]
    ACCESS_ANOMALY_KIND_NEW_REGION_FOR_ACTOR: _ClassVar[AccessAnomalyKind]
    ACCESS_ANOMALY_KIND_ACCESS_BURST: _ClassVar[AccessAnomalyKind]
ACCESS_OPERATION_UNSPECIFIED: AccessOperation
ACCESS_OPERATION_READ: AccessOperation
ACCESS_OPERATION_WRITE: AccessOperation
ACCESS_OPERATION_CATALOG_WRITE: AccessOperation
ACCESS_OPERATION_INTENT_STORE: AccessOperation
ACCESS_OPERATION_INTENT_PROCESS: AccessOperation
OBSERVED_VIOLATION_KIND_UNSPECIFIED: ObservedViolationKind
OBSERVED_VIOLATION_KIND_POLICY_DENIED: ObservedViolationKind
OBSERVED_VIOLATION_KIND_UNKNOWN_RUN_REGION: ObservedViolationKind
OBSERVED_VIOLATION_KIND_UNKNOWN_OUTPUT_LOCATION: ObservedViolationKind
OBSERVED_VIOLATION_KIND_NOT_JUDGED: ObservedViolationKind
ACCESS_ANOMALY_KIND_UNSPECIFIED: AccessAnomalyKind
ACCESS_ANOMALY_KIND_NEW_CLASSIFICATION_FOR_ACTOR: AccessAnomalyKind
ACCESS_ANOMALY_KIND_NEW_REGION_FOR_ACTOR: AccessAnomalyKind
ACCESS_ANOMALY_KIND_ACCESS_BURST: AccessAnomalyKind

class AccessSummary(_message.Message):
    __slots__ = ("operation", "region", "count", "first_seen", "last_seen")
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    operation: AccessOperation
    region: str
    count: int
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    def __init__(self, operation: _Optional[_Union[AccessOperation, str]] = ..., region: _Optional[str] = ..., count: _Optional[int] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ActorAccess(_message.Message):
    __slots__ = ("actor", "accesses", "total_count", "first_seen", "last_seen")
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACCESSES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    actor: str
    accesses: _containers.RepeatedCompositeFieldContainer[AccessSummary]
    total_count: int
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    def __init__(self, actor: _Optional[str] = ..., accesses: _Optional[_Iterable[_Union[AccessSummary, _Mapping]]] = ..., total_count: _Optional[int] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetAccessPatternsRequest(_message.Message):
    __slots__ = ("dataset_id", "since", "until")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    def __init__(self, dataset_id: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetAccessPatternsResponse(_message.Message):
    __slots__ = ("actors",)
    ACTORS_FIELD_NUMBER: _ClassVar[int]
    actors: _containers.RepeatedCompositeFieldContainer[ActorAccess]
    def __init__(self, actors: _Optional[_Iterable[_Union[ActorAccess, _Mapping]]] = ...) -> None: ...

class DatasetAccess(_message.Message):
    __slots__ = ("dataset_id", "accesses", "total_count", "first_seen", "last_seen")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    ACCESSES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    accesses: _containers.RepeatedCompositeFieldContainer[AccessSummary]
    total_count: int
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    def __init__(self, dataset_id: _Optional[str] = ..., accesses: _Optional[_Iterable[_Union[AccessSummary, _Mapping]]] = ..., total_count: _Optional[int] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RunDatasetAccess(_message.Message):
    __slots__ = ("dataset_id", "operation", "region")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    operation: AccessOperation
    region: str
    def __init__(self, dataset_id: _Optional[str] = ..., operation: _Optional[_Union[AccessOperation, str]] = ..., region: _Optional[str] = ...) -> None: ...

class AccessRun(_message.Message):
    __slots__ = ("job", "run_id", "producer", "principal", "run_region", "event_time", "last_event_time", "record_time", "accesses")
    JOB_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    RUN_REGION_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    RECORD_TIME_FIELD_NUMBER: _ClassVar[int]
    ACCESSES_FIELD_NUMBER: _ClassVar[int]
    job: str
    run_id: str
    producer: str
    principal: str
    run_region: str
    event_time: _timestamp_pb2.Timestamp
    last_event_time: _timestamp_pb2.Timestamp
    record_time: _timestamp_pb2.Timestamp
    accesses: _containers.RepeatedCompositeFieldContainer[RunDatasetAccess]
    def __init__(self, job: _Optional[str] = ..., run_id: _Optional[str] = ..., producer: _Optional[str] = ..., principal: _Optional[str] = ..., run_region: _Optional[str] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., record_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., accesses: _Optional[_Iterable[_Union[RunDatasetAccess, _Mapping]]] = ...) -> None: ...

class ListActorAccessRequest(_message.Message):
    __slots__ = ("actor", "since", "until", "max_runs")
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNS_FIELD_NUMBER: _ClassVar[int]
    actor: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    max_runs: int
    def __init__(self, actor: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_runs: _Optional[int] = ...) -> None: ...

class ListActorAccessResponse(_message.Message):
    __slots__ = ("datasets", "runs")
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[DatasetAccess]
    runs: _containers.RepeatedCompositeFieldContainer[AccessRun]
    def __init__(self, datasets: _Optional[_Iterable[_Union[DatasetAccess, _Mapping]]] = ..., runs: _Optional[_Iterable[_Union[AccessRun, _Mapping]]] = ...) -> None: ...

class ObservedViolation(_message.Message):
    __slots__ = ("violation_id", "kind", "job", "run_id", "producer", "principal", "dataset_id", "operation", "region", "event_time", "observe_time", "late", "decision", "message")
    VIOLATION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    OBSERVE_TIME_FIELD_NUMBER: _ClassVar[int]
    LATE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    violation_id: str
    kind: ObservedViolationKind
    job: str
    run_id: str
    producer: str
    principal: str
    dataset_id: str
    operation: _residency_pb2.Operation
    region: str
    event_time: _timestamp_pb2.Timestamp
    observe_time: _timestamp_pb2.Timestamp
    late: bool
    decision: _residency_pb2.Decision
    message: str
    def __init__(self, violation_id: _Optional[str] = ..., kind: _Optional[_Union[ObservedViolationKind, str]] = ..., job: _Optional[str] = ..., run_id: _Optional[str] = ..., producer: _Optional[str] = ..., principal: _Optional[str] = ..., dataset_id: _Optional[str] = ..., operation: _Optional[_Union[_residency_pb2.Operation, str]] = ..., region: _Optional[str] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., observe_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., late: _Optional[bool] = ..., decision: _Optional[_Union[_residency_pb2.Decision, _Mapping]] = ..., message: _Optional[str] = ...) -> None: ...

class ListObservedViolationsRequest(_message.Message):
    __slots__ = ("since", "until", "page_size", "page_token")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListObservedViolationsResponse(_message.Message):
    __slots__ = ("violations", "next_page_token")
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    violations: _containers.RepeatedCompositeFieldContainer[ObservedViolation]
    next_page_token: str
    def __init__(self, violations: _Optional[_Iterable[_Union[ObservedViolation, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AccessAnomaly(_message.Message):
    __slots__ = ("anomaly_id", "kind", "actor", "dataset_ids", "value", "detect_time", "baseline_since", "baseline", "baseline_daily_mean", "threshold", "message")
    ANOMALY_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    DATASET_IDS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    DETECT_TIME_FIELD_NUMBER: _ClassVar[int]
    BASELINE_SINCE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_DAILY_MEAN_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    anomaly_id: str
    kind: AccessAnomalyKind
    actor: str
    dataset_ids: _containers.RepeatedScalarFieldContainer[str]
    value: str
    detect_time: _timestamp_pb2.Timestamp
    baseline_since: _timestamp_pb2.Timestamp
    baseline: _containers.RepeatedScalarFieldContainer[str]
    baseline_daily_mean: float
    threshold: float
    message: str
    def __init__(self, anomaly_id: _Optional[str] = ..., kind: _Optional[_Union[AccessAnomalyKind, str]] = ..., actor: _Optional[str] = ..., dataset_ids: _Optional[_Iterable[str]] = ..., value: _Optional[str] = ..., detect_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., baseline_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., baseline: _Optional[_Iterable[str]] = ..., baseline_daily_mean: _Optional[float] = ..., threshold: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class ListAccessAnomaliesRequest(_message.Message):
    __slots__ = ("since", "until", "page_size", "page_token")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAccessAnomaliesResponse(_message.Message):
    __slots__ = ("anomalies", "next_page_token")
    ANOMALIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    anomalies: _containers.RepeatedCompositeFieldContainer[AccessAnomaly]
    next_page_token: str
    def __init__(self, anomalies: _Optional[_Iterable[_Union[AccessAnomaly, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
