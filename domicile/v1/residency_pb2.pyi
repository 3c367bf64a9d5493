import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Operation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPERATION_UNSPECIFIED: _ClassVar[Operation]
    OPERATION_STORE: _ClassVar[Operation]
    OPERATION_PROCESS: _ClassVar[Operation]

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    OUTCOME_ALLOW: _ClassVar[Outcome]
    OUTCOME_DENY: _ClassVar[Outcome]

class ResidencyState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESIDENCY_STATE_UNSPECIFIED: _ClassVar[ResidencyState]
    RESIDENCY_STATE_ALLOWED: _ClassVar[ResidencyState]
    RESIDENCY_STATE_VIOLATION: _ClassVar[ResidencyState]
    RESIDENCY_STATE_DERIVED: _ClassVar[ResidencyState]
    RESIDENCY_STATE_UNDESCRIBED: _ClassVar[ResidencyState]
    RESIDENCY_STATE_UNKNOWN: _ClassVar[ResidencyState]
OPERATION_UNSPECIFIED: Operation
OPERATION_STORE: Operation
OPERATION_PROCESS: Operation
OUTCOME_UNSPECIFIED: Outcome
OUTCOME_ALLOW: Outcome
OUTCOME_DENY: Outcome
RESIDENCY_STATE_UNSPECIFIED: ResidencyState
RESIDENCY_STATE_ALLOWED: ResidencyState
RESIDENCY_STATE_VIOLATION: ResidencyState
RESIDENCY_STATE_DERIVED: ResidencyState
RESIDENCY_STATE_UNDESCRIBED: ResidencyState
RESIDENCY_STATE_UNKNOWN: ResidencyState

class Reason(_message.Message):
    __slots__ = ("code", "rule_id", "message", "lineage_path", "citation", "text")
    CODE_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_PATH_FIELD_NUMBER: _ClassVar[int]
    CITATION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    code: str
    rule_id: str
    message: str
    lineage_path: _containers.RepeatedScalarFieldContainer[str]
    citation: str
    text: int
    def __init__(self, code: _Optional[str] = ..., rule_id: _Optional[str] = ..., message: _Optional[str] = ..., lineage_path: _Optional[_Iterable[str]] = ..., citation: _Optional[str] = ..., text: _Optional[int] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("decision_id", "outcome", "dataset_id", "operation", "region", "allowed_regions", "reasons", "policy_version", "catalog_revision", "decide_time", "inherited_only", "context", "allowed_regions_set")
    class ContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_REGIONS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    CATALOG_REVISION_FIELD_NUMBER: _ClassVar[int]
    DECIDE_TIME_FIELD_NUMBER: _ClassVar[int]
    INHERITED_ONLY_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_REGIONS_SET_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    outcome: Outcome
    dataset_id: str
    operation: Operation
    region: str
    allowed_regions: _containers.RepeatedScalarFieldContainer[str]
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    policy_version: str
    catalog_revision: int
    decide_time: _timestamp_pb2.Timestamp
    inherited_only: bool
    context: _containers.ScalarMap[str, str]
    allowed_regions_set: int
    def __init__(self, decision_id: _Optional[str] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., dataset_id: _Optional[str] = ..., operation: _Optional[_Union[Operation, str]] = ..., region: _Optional[str] = ..., allowed_regions: _Optional[_Iterable[str]] = ..., reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ..., policy_version: _Optional[str] = ..., catalog_revision: _Optional[int] = ..., decide_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., inherited_only: _Optional[bool] = ..., context: _Optional[_Mapping[str, str]] = ..., allowed_regions_set: _Optional[int] = ...) -> None: ...

class DecideRequest(_message.Message):
    __slots__ = ("dataset_id", "operation", "region", "context")
    class ContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    operation: Operation
    region: str
    context: _containers.ScalarMap[str, str]
    def __init__(self, dataset_id: _Optional[str] = ..., operation: _Optional[_Union[Operation, str]] = ..., region: _Optional[str] = ..., context: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DecideResponse(_message.Message):
    __slots__ = ("decision",)
    DECISION_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    def __init__(self, decision: _Optional[_Union[Decision, _Mapping]] = ...) -> None: ...

class BatchDecideRequest(_message.Message):
    __slots__ = ("requests", "shared_region_sets", "shared_reason_texts")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    SHARED_REGION_SETS_FIELD_NUMBER: _ClassVar[int]
    SHARED_REASON_TEXTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[DecideRequest]
    shared_region_sets: bool
    shared_reason_texts: bool
    def __init__(self, requests: _Optional[_Iterable[_Union[DecideRequest, _Mapping]]] = ..., shared_region_sets: _Optional[bool] = ..., shared_reason_texts: _Optional[bool] = ...) -> None: ...

class RegionSet(_message.Message):
    __slots__ = ("regions",)
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    regions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, regions: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchDecideResponse(_message.Message):
    __slots__ = ("decisions", "region_sets", "reason_texts")
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    REGION_SETS_FIELD_NUMBER: _ClassVar[int]
    REASON_TEXTS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    region_sets: _containers.RepeatedCompositeFieldContainer[RegionSet]
    reason_texts: _containers.RepeatedCompositeFieldContainer[Reason]
    def __init__(self, decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ..., region_sets: _Optional[_Iterable[_Union[RegionSet, _Mapping]]] = ..., reason_texts: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ...) -> None: ...

class RouteRequest(_message.Message):
    __slots__ = ("dataset_id", "operation", "candidates")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    operation: Operation
    candidates: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dataset_id: _Optional[str] = ..., operation: _Optional[_Union[Operation, str]] = ..., candidates: _Optional[_Iterable[str]] = ...) -> None: ...

class RouteResponse(_message.Message):
    __slots__ = ("region", "decision")
    REGION_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    region: str
    decision: Decision
    def __init__(self, region: _Optional[str] = ..., decision: _Optional[_Union[Decision, _Mapping]] = ...) -> None: ...

class CheckJobRequest(_message.Message):
    __slots__ = ("inputs", "outputs", "run_region", "output_region", "transform", "job", "context")
    class ContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    RUN_REGION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_REGION_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    inputs: _containers.RepeatedScalarFieldContainer[str]
    outputs: _containers.RepeatedScalarFieldContainer[str]
    run_region: str
    output_region: str
    transform: str
    job: str
    context: _containers.ScalarMap[str, str]
    def __init__(self, inputs: _Optional[_Iterable[str]] = ..., outputs: _Optional[_Iterable[str]] = ..., run_region: _Optional[str] = ..., output_region: _Optional[str] = ..., transform: _Optional[str] = ..., job: _Optional[str] = ..., context: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CheckJobResponse(_message.Message):
    __slots__ = ("allowed", "decisions")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    def __init__(self, allowed: _Optional[bool] = ..., decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("dataset_id", "as_of")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, dataset_id: _Optional[str] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EffectiveAttribute(_message.Message):
    __slots__ = ("value", "lineage_path")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_PATH_FIELD_NUMBER: _ClassVar[int]
    value: str
    lineage_path: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, value: _Optional[str] = ..., lineage_path: _Optional[_Iterable[str]] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("classifications", "origins", "store_regions", "process_regions", "policy_version", "catalog_revision", "inherited_only", "unapproved_declassifications")
    CLASSIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    ORIGINS_FIELD_NUMBER: _ClassVar[int]
    STORE_REGIONS_FIELD_NUMBER: _ClassVar[int]
    PROCESS_REGIONS_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    CATALOG_REVISION_FIELD_NUMBER: _ClassVar[int]
    INHERITED_ONLY_FIELD_NUMBER: _ClassVar[int]
    UNAPPROVED_DECLASSIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    classifications: _containers.RepeatedCompositeFieldContainer[EffectiveAttribute]
    origins: _containers.RepeatedCompositeFieldContainer[EffectiveAttribute]
    store_regions: _containers.RepeatedScalarFieldContainer[str]
    process_regions: _containers.RepeatedScalarFieldContainer[str]
    policy_version: str
    catalog_revision: int
    inherited_only: bool
    unapproved_declassifications: _containers.RepeatedCompositeFieldContainer[UnapprovedDeclassification]
    def __init__(self, classifications: _Optional[_Iterable[_Union[EffectiveAttribute, _Mapping]]] = ..., origins: _Optional[_Iterable[_Union[EffectiveAttribute, _Mapping]]] = ..., store_regions: _Optional[_Iterable[str]] = ..., process_regions: _Optional[_Iterable[str]] = ..., policy_version: _Optional[str] = ..., catalog_revision: _Optional[int] = ..., inherited_only: _Optional[bool] = ..., unapproved_declassifications: _Optional[_Iterable[_Union[UnapprovedDeclassification, _Mapping]]] = ...) -> None: ...

class UnapprovedDeclassification(_message.Message):
    __slots__ = ("input", "output", "job", "transform", "classifications")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    input: str
    output: str
    job: str
    transform: str
    classifications: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, input: _Optional[str] = ..., output: _Optional[str] = ..., job: _Optional[str] = ..., transform: _Optional[str] = ..., classifications: _Optional[_Iterable[str]] = ...) -> None: ...

class ScanViolationsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Violation(_message.Message):
    __slots__ = ("dataset_id", "region", "decision")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    region: str
    decision: Decision
    def __init__(self, dataset_id: _Optional[str] = ..., region: _Optional[str] = ..., decision: _Optional[_Union[Decision, _Mapping]] = ...) -> None: ...

class ScanViolationsResponse(_message.Message):
    __slots__ = ("violations",)
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    violations: _containers.RepeatedCompositeFieldContainer[Violation]
    def __init__(self, violations: _Optional[_Iterable[_Union[Violation, _Mapping]]] = ...) -> None: ...

class ListViolationsRequest(_message.Message):
    __slots__ = ("region", "page_size", "page_token")
    REGION_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    region: str
    page_size: int
    page_token: str
    def __init__(self, region: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class LocationViolation(_message.Message):
    __slots__ = ("dataset_id", "region", "allowed_regions", "reasons", "inherited_only")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_REGIONS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    INHERITED_ONLY_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    region: str
    allowed_regions: _containers.RepeatedScalarFieldContainer[str]
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    inherited_only: bool
    def __init__(self, dataset_id: _Optional[str] = ..., region: _Optional[str] = ..., allowed_regions: _Optional[_Iterable[str]] = ..., reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ..., inherited_only: _Optional[bool] = ...) -> None: ...

class RegionViolations(_message.Message):
    __slots__ = ("region", "violations")
    REGION_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    region: str
    violations: int
    def __init__(self, region: _Optional[str] = ..., violations: _Optional[int] = ...) -> None: ...

class ListViolationsResponse(_message.Message):
    __slots__ = ("violations", "next_page_token", "total", "regions", "policy_version", "catalog_revision", "datasets_to_judge")
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    CATALOG_REVISION_FIELD_NUMBER: _ClassVar[int]
    DATASETS_TO_JUDGE_FIELD_NUMBER: _ClassVar[int]
    violations: _containers.RepeatedCompositeFieldContainer[LocationViolation]
    next_page_token: str
    total: int
    regions: _containers.RepeatedCompositeFieldContainer[RegionViolations]
    policy_version: str
    catalog_revision: int
    datasets_to_judge: int
    def __init__(self, violations: _Optional[_Iterable[_Union[LocationViolation, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total: _Optional[int] = ..., regions: _Optional[_Iterable[_Union[RegionViolations, _Mapping]]] = ..., policy_version: _Optional[str] = ..., catalog_revision: _Optional[int] = ..., datasets_to_judge: _Optional[int] = ...) -> None: ...

class GetResidencyStatesRequest(_message.Message):
    __slots__ = ("dataset_ids", "as_of")
    DATASET_IDS_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    dataset_ids: _containers.RepeatedScalarFieldContainer[str]
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, dataset_ids: _Optional[_Iterable[str]] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DatasetResidency(_message.Message):
    __slots__ = ("dataset_id", "state", "locations", "violating_regions")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LOCATIONS_FIELD_NUMBER: _ClassVar[int]
    VIOLATING_REGIONS_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    state: ResidencyState
    locations: _containers.RepeatedScalarFieldContainer[str]
    violating_regions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dataset_id: _Optional[str] = ..., state: _Optional[_Union[ResidencyState, str]] = ..., locations: _Optional[_Iterable[str]] = ..., violating_regions: _Optional[_Iterable[str]] = ...) -> None: ...

class GetResidencyStatesResponse(_message.Message):
    __slots__ = ("states", "policy_version", "catalog_revision")
    STATES_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    CATALOG_REVISION_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedCompositeFieldContainer[DatasetResidency]
    policy_version: str
    catalog_revision: int
    def __init__(self, states: _Optional[_Iterable[_Union[DatasetResidency, _Mapping]]] = ..., policy_version: _Optional[str] = ..., catalog_revision: _Optional[int] = ...) -> None: ...

class GetDecisionRequest(_message.Message):
    __slots__ = ("decision_id",)
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    def __init__(self, decision_id: _Optional[str] = ...) -> None: ...

class GetDecisionResponse(_message.Message):
    __slots__ = ("decision", "proof")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    proof: DecisionProof
    def __init__(self, decision: _Optional[_Union[Decision, _Mapping]] = ..., proof: _Optional[_Union[DecisionProof, _Mapping]] = ...) -> None: ...

class DecisionProof(_message.Message):
    __slots__ = ("replica_id", "line_seq", "line_hash", "checkpoint_verified", "checkpoint_seq", "checkpoint_hash", "checkpoint_time", "checkpoint_key_id")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    LINE_SEQ_FIELD_NUMBER: _ClassVar[int]
    LINE_HASH_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_VERIFIED_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_SEQ_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_HASH_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_TIME_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    line_seq: int
    line_hash: str
    checkpoint_verified: bool
    checkpoint_seq: int
    checkpoint_hash: str
    checkpoint_time: _timestamp_pb2.Timestamp
    checkpoint_key_id: str
    def __init__(self, replica_id: _Optional[str] = ..., line_seq: _Optional[int] = ..., line_hash: _Optional[str] = ..., checkpoint_verified: _Optional[bool] = ..., checkpoint_seq: _Optional[int] = ..., checkpoint_hash: _Optional[str] = ..., checkpoint_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., checkpoint_key_id: _Optional[str] = ...) -> None: ...

class ReplayDecisionRequest(_message.Message):
    __slots__ = ("decision_id",)
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    def __init__(self, decision_id: _Optional[str] = ...) -> None: ...

class ReplayDecisionResponse(_message.Message):
    __slots__ = ("original", "replayed", "matches", "proof")
    ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    original: Decision
    replayed: Decision
    matches: bool
    proof: DecisionProof
    def __init__(self, original: _Optional[_Union[Decision, _Mapping]] = ..., replayed: _Optional[_Union[Decision, _Mapping]] = ..., matches: _Optional[bool] = ..., proof: _Optional[_Union[DecisionProof, _Mapping]] = ...) -> None: ...

class ListDecisionsRequest(_message.Message):
    __slots__ = ("dataset_id", "caller", "outcome", "rule_id", "start_time", "end_time", "page_size", "page_token")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    caller: str
    outcome: Outcome
    rule_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, dataset_id: _Optional[str] = ..., caller: _Optional[str] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., rule_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class LoggedDecision(_message.Message):
    __slots__ = ("decision", "caller", "kind", "line", "line_hash")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    LINE_HASH_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    caller: str
    kind: str
    line: int
    line_hash: str
    def __init__(self, decision: _Optional[_Union[Decision, _Mapping]] = ..., caller: _Optional[str] = ..., kind: _Optional[str] = ..., line: _Optional[int] = ..., line_hash: _Optional[str] = ...) -> None: ...

class ListDecisionsResponse(_message.Message):
    __slots__ = ("decisions", "next_page_token", "complete")
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[LoggedDecision]
    next_page_token: str
    complete: bool
    def __init__(self, decisions: _Optional[_Iterable[_Union[LoggedDecision, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., complete: _Optional[bool] = ...) -> None: ...

class SummarizeDecisionsRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "bucket_seconds")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    BUCKET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    bucket_seconds: int
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., bucket_seconds: _Optional[int] = ...) -> None: ...

class DecisionBucket(_message.Message):
    __slots__ = ("start_time", "allow", "deny")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    ALLOW_FIELD_NUMBER: _ClassVar[int]
    DENY_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    allow: int
    deny: int
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., allow: _Optional[int] = ..., deny: _Optional[int] = ...) -> None: ...

class SummarizeDecisionsResponse(_message.Message):
    __slots__ = ("buckets", "complete")
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedCompositeFieldContainer[DecisionBucket]
    complete: bool
    def __init__(self, buckets: _Optional[_Iterable[_Union[DecisionBucket, _Mapping]]] = ..., complete: _Optional[bool] = ...) -> None: ...

class GetDecisionLogStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetDecisionLogStatusResponse(_message.Message):
    __slots__ = ("head_line", "head_hash", "chain_ok")
    HEAD_LINE_FIELD_NUMBER: _ClassVar[int]
    HEAD_HASH_FIELD_NUMBER: _ClassVar[int]
    CHAIN_OK_FIELD_NUMBER: _ClassVar[int]
    head_line: int
    head_hash: str
    chain_ok: bool
    def __init__(self, head_line: _Optional[int] = ..., head_hash: _Optional[str] = ..., chain_ok: _Optional[bool] = ...) -> None: ...

class SummarizeDatasetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LabelCount(_message.Message):
    __slots__ = ("value", "datasets")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    value: str
    datasets: int
    def __init__(self, value: _Optional[str] = ..., datasets: _Optional[int] = ...) -> None: ...

class RegionCount(_message.Message):
    __slots__ = ("region", "datasets", "classified")
    REGION_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIED_FIELD_NUMBER: _ClassVar[int]
    region: str
    datasets: int
    classified: int
    def __init__(self, region: _Optional[str] = ..., datasets: _Optional[int] = ..., classified: _Optional[int] = ...) -> None: ...

class SummarizeDatasetsResponse(_message.Message):
    __slots__ = ("datasets", "classifications", "origins", "regions", "catalog_revision")
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    ORIGINS_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    CATALOG_REVISION_FIELD_NUMBER: _ClassVar[int]
    datasets: int
    classifications: _containers.RepeatedCompositeFieldContainer[LabelCount]
    origins: _containers.RepeatedCompositeFieldContainer[LabelCount]
    regions: _containers.RepeatedCompositeFieldContainer[RegionCount]
    catalog_revision: int
    def __init__(self, datasets: _Optional[int] = ..., classifications: _Optional[_Iterable[_Union[LabelCount, _Mapping]]] = ..., origins: _Optional[_Iterable[_Union[LabelCount, _Mapping]]] = ..., regions: _Optional[_Iterable[_Union[RegionCount, _Mapping]]] = ..., catalog_revision: _Optional[int] = ...) -> None: ...
