"""The values the SDK's methods return. Where the domain already has a type for an answer
(a `Dataset`, a `Decision`, an `Explanation`...) the SDK returns that type; the classes here
are the answers that exist only at the API's edge (pages, policy proposals, access patterns).
All are immutable; times are timezone-aware UTC datetimes."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Generic, NamedTuple, TypeVar

from domicile.access.model import (
    AccessOperation,
    Anomaly,
    AnomalyKind,
    FindingKind,
    ObservedViolation,
    RunAccess,
    RunRecord,
)
from domicile.catalog.model import (
    Dataset,
    DatasetRevision,
    Direction,
    Edge,
    EdgeKey,
    Field,
    LineageNode,
    Protection,
    RevisionChange,
    Traversal,
)
from domicile.catalog.regions import Region
from domicile.router.decision_search import DecisionBucket
from domicile.router.policy import PolicyError
from domicile.router.runtime import (
    ActivePolicy,
    DatasetSummary,
    Explanation,
    JobCheck,
    PolicyImpact,
    ReplayResult,
    RouteResult,
    UnapprovedDeclassification,
    Violation,
)
from domicile.router.types import (
    Decision,
    DecisionFields,
    EffectiveAttributes,
    Operation,
    Outcome,
    PolicyChange,
    Reason,
    ReasonCode,
)
from domicile.router.violations import (
    DatasetResidency,
    LocationViolation,
    ResidencyState,
    ResidencyStates,
    ViolationPage,
)

__all__ = [
    "AccessOperation",
    "AccessSummary",
    "ActivePolicy",
    "ActorAccess",
    "ActorActivity",
    "Anomaly",
    "AnomalyKind",
    "Dataset",
    "DatasetAccess",
    "DatasetResidency",
    "DatasetRevision",
    "DatasetSummary",
    "Decision",
    "DecisionBucket",
    "DecisionFields",
    "DecisionLogStatus",
    "DecisionProof",
    "DecisionRecord",
    "DecisionSummary",
    "Direction",
    "Edge",
    "EdgeKey",
    "EffectiveAttributes",
    "Explanation",
    "Field",
    "FindingKind",
    "JobCheck",
    "LineageEnded",
    "LineageGraph",
    "LineageNode",
    "LineageRecorded",
    "LocationViolation",
    "LoggedDecision",
    "ObservedViolation",
    "Operation",
    "Outcome",
    "Page",
    "PolicyActivation",
    "PolicyChange",
    "PolicyDecisionResult",
    "PolicyError",
    "PolicyImpact",
    "PolicyProposal",
    "PolicySetResult",
    "ProposalState",
    "Protection",
    "Question",
    "Reason",
    "ReasonCode",
    "Region",
    "ReplayResult",
    "ResidencyState",
    "ResidencyStates",
    "RevisionChange",
    "RouteResult",
    "RunAccess",
    "RunRecord",
    "SecurityEvent",
    "ServingStatus",
    "Traversal",
    "UnapprovedDeclassification",
    "Violation",
    "ViolationPage",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing. `next_page_token` is empty on the last page (pass it to the same
    method to get the next one); `complete` is False when the server stopped at its scan budget
    before filling the page (ListDecisions: more may match, continue with the token)."""

    items: tuple[T, ...]
    next_page_token: str = ""
    complete: bool = True


class Question(NamedTuple):
    """One residency question of a `batch_decide`: may `dataset_id` be stored/processed in `region`?"""

    dataset_id: str
    operation: Operation
    region: str


@dataclass(frozen=True)
class LineageRecorded:
    """The answer to `record_lineage`: `observed_violations` are what the run did where the
    policy forbids it (recording never fails because of them: the run happened); `late`: the
    event time is older than the server's late-event bound."""

    edges_created: int
    catalog_revision: int
    observed_violations: tuple[ObservedViolation, ...] = ()
    late: bool = False


@dataclass(frozen=True)
class LineageEnded:
    edges_ended: int
    catalog_revision: int


@dataclass(frozen=True)
class LineageGraph:
    """The answer to `get_lineage`: the datasets reached (the start at depth 0) and the edges
    walked; `complete` is False with `incomplete_reason` (max_depth, max_nodes, timeout) when a
    limit cut it; `unapproved_declassifications` are the edges claiming a declassifying
    transform the active policy does not grant their job (counted as plain copies)."""

    nodes: tuple[LineageNode, ...]
    edges: tuple[Edge, ...]
    complete: bool = True
    incomplete_reason: str = ""
    unapproved_declassifications: frozenset[EdgeKey] = frozenset()

    @property
    def traversal(self) -> Traversal:
        return Traversal(self.nodes, self.edges, self.complete, self.incomplete_reason)


@dataclass(frozen=True)
class DecisionProof:
    """How the server verified the log line a decision was read from: the line (`line_seq`,
    `line_hash`) in `replica_id`'s chain, and the first signed checkpoint after it whose chain
    from that line holds -- or `checkpoint_verified` False when no checkpoint covers the line
    yet (it is in the live chain the server verified at start and has extended since)."""

    replica_id: str
    line_seq: int
    line_hash: str
    checkpoint_verified: bool
    checkpoint_seq: int = 0
    checkpoint_hash: str = ""
    checkpoint_time: datetime | None = None
    checkpoint_key_id: str = ""


@dataclass(frozen=True)
class DecisionRecord:
    """A decision read from the decision log, with the `context` its asker logged with it
    (e.g. the Airflow DAG, task and run of a pre-flight check) and how it was verified."""

    decision: Decision
    context: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    proof: DecisionProof | None = None


@dataclass(frozen=True)
class LoggedDecision:
    """A decision as the decision log holds it: who asked (`caller`), what was asked (`kind`:
    decide, batch_decide, route, check_job, scan_violations), the log line holding it, and the
    asker's `context`."""

    decision: Decision
    caller: str
    kind: str
    line: int
    line_hash: str
    context: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class DecisionSummary:
    """Decisions counted per time bucket, oldest first; `complete` is False when the log was
    too large to count the whole range (the oldest buckets are then undercounted)."""

    buckets: tuple[DecisionBucket, ...]
    complete: bool = True


@dataclass(frozen=True)
class DecisionLogStatus:
    """The decision log's head: lines written and the last one's hash; `chain_ok` as the server
    reports it (see docs/router.md for what the chain proves)."""

    head_line: int
    head_hash: str
    chain_ok: bool


class ProposalState(enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True)
class PolicyProposal:
    """A policy change waiting for (or past) a second principal's decision; `changes` is its
    impact when it was proposed."""

    proposal_id: str
    version: str
    policy_yaml: str
    content_hash: str
    state: ProposalState
    proposed_by: str
    propose_time: datetime | None
    changes: tuple[PolicyChange, ...] = ()
    decided_by: str = ""
    decide_time: datetime | None = None
    comment: str = ""


@dataclass(frozen=True)
class PolicySetResult:
    """The answer to `set_policy`: `errors` empty means the policy is valid; `applied` that it
    is now active; `proposal` is set when the server requires approval and recorded one."""

    version: str
    errors: tuple[PolicyError, ...] = ()
    applied: bool = False
    proposal: PolicyProposal | None = None


@dataclass(frozen=True)
class PolicyDecisionResult:
    """The answer to `approve_policy` / `reject_policy`: the proposal as it now stands;
    `applied`: its policy is now active; `errors`: why it could not be activated."""

    proposal: PolicyProposal
    applied: bool = False
    errors: tuple[PolicyError, ...] = ()


@dataclass(frozen=True)
class PolicyActivation:
    """One activation of a policy: which version was in force from when, and who activated it
    (`break_glass_reason` when without the required approval; `proposal_id` and `proposed_by`
    when from an approved proposal)."""

    version: str
    content_hash: str
    activated_time: datetime | None
    active: bool
    activated_by: str = ""
    break_glass_reason: str = ""
    proposal_id: str = ""
    proposed_by: str = ""


@dataclass(frozen=True)
class SecurityEvent:
    """A line of the security event log (docs/security.md describes each field)."""

    time: datetime | None
    event: str
    outcome: str = ""
    principal: str = ""
    method: str = ""
    peer: str = ""
    trace_id: str = ""
    reason: str = ""
    detail: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class AccessSummary:
    """How often one operation happened in one region, and when first and last."""

    operation: AccessOperation
    region: str
    count: int
    first_seen: datetime | None
    last_seen: datetime | None


@dataclass(frozen=True)
class ActorAccess:
    """One actor's accesses to a dataset (a job namespace/name for runs, else the principal)."""

    actor: str
    accesses: tuple[AccessSummary, ...]
    total_count: int
    first_seen: datetime | None
    last_seen: datetime | None


@dataclass(frozen=True)
class DatasetAccess:
    """One dataset an actor touched."""

    dataset_id: str
    accesses: tuple[AccessSummary, ...]
    total_count: int
    first_seen: datetime | None
    last_seen: datetime | None


@dataclass(frozen=True)
class ActorActivity:
    """The answer to `list_actor_access`: datasets by id, retained runs latest first."""

    datasets: tuple[DatasetAccess, ...]
    runs: tuple[RunRecord, ...] = ()


class ServingStatus(enum.Enum):
    """A `grpc.health.v1` status."""

    UNKNOWN = "UNKNOWN"
    SERVING = "SERVING"
    NOT_SERVING = "NOT_SERVING"
    SERVICE_UNKNOWN = "SERVICE_UNKNOWN"
