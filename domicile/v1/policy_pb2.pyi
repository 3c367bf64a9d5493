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

class ProposalState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROPOSAL_STATE_UNSPECIFIED: _ClassVar[ProposalState]
    PROPOSAL_STATE_PENDING: _ClassVar[ProposalState]
    PROPOSAL_STATE_APPROVED: _ClassVar[ProposalState]
    PROPOSAL_STATE_REJECTED: _ClassVar[ProposalState]
PROPOSAL_STATE_UNSPECIFIED: ProposalState
PROPOSAL_STATE_PENDING: ProposalState
PROPOSAL_STATE_APPROVED: ProposalState
PROPOSAL_STATE_REJECTED: ProposalState

class PolicyError(_message.Message):
    __slots__ = ("line", "column", "path", "message")
    LINE_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    line: int
    column: int
    path: str
    message: str
    def __init__(self, line: _Optional[int] = ..., column: _Optional[int] = ..., path: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class SetPolicyRequest(_message.Message):
    __slots__ = ("policy_yaml", "dry_run", "break_glass_reason")
    POLICY_YAML_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    BREAK_GLASS_REASON_FIELD_NUMBER: _ClassVar[int]
    policy_yaml: str
    dry_run: bool
    break_glass_reason: str
    def __init__(self, policy_yaml: _Optional[str] = ..., dry_run: _Optional[bool] = ..., break_glass_reason: _Optional[str] = ...) -> None: ...

class SetPolicyResponse(_message.Message):
    __slots__ = ("version", "errors", "applied", "proposal")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    version: str
    errors: _containers.RepeatedCompositeFieldContainer[PolicyError]
    applied: bool
    proposal: PolicyProposal
    def __init__(self, version: _Optional[str] = ..., errors: _Optional[_Iterable[_Union[PolicyError, _Mapping]]] = ..., applied: _Optional[bool] = ..., proposal: _Optional[_Union[PolicyProposal, _Mapping]] = ...) -> None: ...

class PolicyProposal(_message.Message):
    __slots__ = ("proposal_id", "version", "policy_yaml", "content_hash", "state", "proposed_by", "propose_time", "changes", "decided_by", "decide_time", "comment")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_YAML_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_BY_FIELD_NUMBER: _ClassVar[int]
    PROPOSE_TIME_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    DECIDE_TIME_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    proposal_id: str
    version: str
    policy_yaml: str
    content_hash: str
    state: ProposalState
    proposed_by: str
    propose_time: _timestamp_pb2.Timestamp
    changes: _containers.RepeatedCompositeFieldContainer[PolicyChange]
    decided_by: str
    decide_time: _timestamp_pb2.Timestamp
    comment: str
    def __init__(self, proposal_id: _Optional[str] = ..., version: _Optional[str] = ..., policy_yaml: _Optional[str] = ..., content_hash: _Optional[str] = ..., state: _Optional[_Union[ProposalState, str]] = ..., proposed_by: _Optional[str] = ..., propose_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., changes: _Optional[_Iterable[_Union[PolicyChange, _Mapping]]] = ..., decided_by: _Optional[str] = ..., decide_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., comment: _Optional[str] = ...) -> None: ...

class ListPolicyProposalsRequest(_message.Message):
    __slots__ = ("include_closed",)
    INCLUDE_CLOSED_FIELD_NUMBER: _ClassVar[int]
    include_closed: bool
    def __init__(self, include_closed: _Optional[bool] = ...) -> None: ...

class ListPolicyProposalsResponse(_message.Message):
    __slots__ = ("proposals",)
    PROPOSALS_FIELD_NUMBER: _ClassVar[int]
    proposals: _containers.RepeatedCompositeFieldContainer[PolicyProposal]
    def __init__(self, proposals: _Optional[_Iterable[_Union[PolicyProposal, _Mapping]]] = ...) -> None: ...

class ApprovePolicyRequest(_message.Message):
    __slots__ = ("proposal_id", "comment")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    proposal_id: str
    comment: str
    def __init__(self, proposal_id: _Optional[str] = ..., comment: _Optional[str] = ...) -> None: ...

class ApprovePolicyResponse(_message.Message):
    __slots__ = ("proposal", "applied", "errors")
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    proposal: PolicyProposal
    applied: bool
    errors: _containers.RepeatedCompositeFieldContainer[PolicyError]
    def __init__(self, proposal: _Optional[_Union[PolicyProposal, _Mapping]] = ..., applied: _Optional[bool] = ..., errors: _Optional[_Iterable[_Union[PolicyError, _Mapping]]] = ...) -> None: ...

class RejectPolicyRequest(_message.Message):
    __slots__ = ("proposal_id", "reason")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    proposal_id: str
    reason: str
    def __init__(self, proposal_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RejectPolicyResponse(_message.Message):
    __slots__ = ("proposal",)
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    proposal: PolicyProposal
    def __init__(self, proposal: _Optional[_Union[PolicyProposal, _Mapping]] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    def __init__(self, version: _Optional[str] = ...) -> None: ...

class GetPolicyResponse(_message.Message):
    __slots__ = ("policy_yaml", "version", "content_hash")
    POLICY_YAML_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    policy_yaml: str
    version: str
    content_hash: str
    def __init__(self, policy_yaml: _Optional[str] = ..., version: _Optional[str] = ..., content_hash: _Optional[str] = ...) -> None: ...

class PolicyImpactRequest(_message.Message):
    __slots__ = ("policy_yaml",)
    POLICY_YAML_FIELD_NUMBER: _ClassVar[int]
    policy_yaml: str
    def __init__(self, policy_yaml: _Optional[str] = ...) -> None: ...

class PolicyChange(_message.Message):
    __slots__ = ("dataset_id", "operation", "added_regions", "removed_regions", "new_violations")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    ADDED_REGIONS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_REGIONS_FIELD_NUMBER: _ClassVar[int]
    NEW_VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    operation: _residency_pb2.Operation
    added_regions: _containers.RepeatedScalarFieldContainer[str]
    removed_regions: _containers.RepeatedScalarFieldContainer[str]
    new_violations: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dataset_id: _Optional[str] = ..., operation: _Optional[_Union[_residency_pb2.Operation, str]] = ..., added_regions: _Optional[_Iterable[str]] = ..., removed_regions: _Optional[_Iterable[str]] = ..., new_violations: _Optional[_Iterable[str]] = ...) -> None: ...

class PolicyImpactResponse(_message.Message):
    __slots__ = ("changes", "errors", "version")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[PolicyChange]
    errors: _containers.RepeatedCompositeFieldContainer[PolicyError]
    version: str
    def __init__(self, changes: _Optional[_Iterable[_Union[PolicyChange, _Mapping]]] = ..., errors: _Optional[_Iterable[_Union[PolicyError, _Mapping]]] = ..., version: _Optional[str] = ...) -> None: ...

class ListPolicyVersionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PolicyActivation(_message.Message):
    __slots__ = ("version", "content_hash", "activated_time", "active", "activated_by", "break_glass_reason", "proposal_id", "proposed_by")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    ACTIVATED_TIME_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    ACTIVATED_BY_FIELD_NUMBER: _ClassVar[int]
    BREAK_GLASS_REASON_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_BY_FIELD_NUMBER: _ClassVar[int]
    version: str
    content_hash: str
    activated_time: _timestamp_pb2.Timestamp
    active: bool
    activated_by: str
    break_glass_reason: str
    proposal_id: str
    proposed_by: str
    def __init__(self, version: _Optional[str] = ..., content_hash: _Optional[str] = ..., activated_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active: _Optional[bool] = ..., activated_by: _Optional[str] = ..., break_glass_reason: _Optional[str] = ..., proposal_id: _Optional[str] = ..., proposed_by: _Optional[str] = ...) -> None: ...

class ListPolicyVersionsResponse(_message.Message):
    __slots__ = ("activations",)
    ACTIVATIONS_FIELD_NUMBER: _ClassVar[int]
    activations: _containers.RepeatedCompositeFieldContainer[PolicyActivation]
    def __init__(self, activations: _Optional[_Iterable[_Union[PolicyActivation, _Mapping]]] = ...) -> None: ...
