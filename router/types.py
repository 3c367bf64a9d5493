"""Values shared by the router's parts (policy, engine, runtime, log).

The split of work: `router.policy` parses and validates a policy document; `router.engine`
compiles it (`CompiledPolicy`) for the residency engine (crates/engine), which keeps the
effective attributes of every dataset along lineage and turns a question into a `Verdict`;
`router.runtime` feeds the engine the catalog's change feed and wraps verdicts into logged
`Decision`s; `router.decision_log` keeps the hash-chained log.

`Reason`, `Verdict` and `Decision` are named tuples: immutable, and cheap to build. Being
tuples, they compare equal to plain tuples with the same fields: never mix them with other
tuples as dict keys or set members.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import NamedTuple, Protocol

UNDESCRIBED = "UNDESCRIBED"
"""Pseudo-origin of data that derives from a node the catalog does not describe (a lineage
root nobody described, a deleted dataset, an id nobody registered; see docs/router.md).
It flows downstream like an origin that no transform removes; the engine answers DENY /
UNKNOWN_DATASET, with the lineage path, for any dataset carrying it (fail closed). It is not
an ISO country code, so no policy origin token can match it."""


class Operation(enum.Enum):
    STORE = "store"
    PROCESS = "process"


class Outcome(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"


class ReasonCode(enum.Enum):
    RULE_DENIED = "RULE_DENIED"
    DEFAULT_DENIED = "DEFAULT_DENIED"
    UNKNOWN_DATASET = "UNKNOWN_DATASET"
    EXEMPTION_APPLIED = "EXEMPTION_APPLIED"
    STALE_CATALOG = "STALE_CATALOG"


class Reason(NamedTuple):
    code: ReasonCode
    message: str
    rule_id: str = ""
    citation: str = ""
    # Dataset ids from the dataset that brought the matching label/origin to the decided one
    # (a single element when the dataset itself carries it).
    lineage_path: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EffectiveAttributes:
    """A dataset's effective classifications and origins, each with one shortest lineage path.

    Paths run from the contributing dataset to `dataset_id` (inclusive at both ends).
    `inherited_only`: the dataset is a derived placeholder (not described: known only as the
    output of lineage), judged by what it inherits.
    """

    dataset_id: str
    classifications: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    origins: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    locations: tuple[str, ...] = ()
    inherited_only: bool = False


class Verdict(NamedTuple):
    """What the policy says for one (dataset, operation, region). `inherited_only`: the dataset
    is a derived placeholder, judged by what it inherits."""

    outcome: Outcome
    allowed_regions: tuple[str, ...]
    reasons: tuple[Reason, ...] = ()
    inherited_only: bool = False


class Decision(NamedTuple):
    """A logged decision (the domain twin of domicile.v1.Decision)."""

    decision_id: str
    outcome: Outcome
    dataset_id: str
    operation: Operation
    region: str
    allowed_regions: tuple[str, ...]
    reasons: tuple[Reason, ...]
    policy_version: str
    catalog_revision: int
    decide_time: datetime
    caller: str = ""
    # The dataset is a derived placeholder: the decision rests on inherited attributes only.
    inherited_only: bool = False


class DecisionFields(Protocol):
    """What every decision offers: a `Decision`, or a unary decision as the residency engine
    hands it out (`_engine.UnaryDecision`, with the same fields read when asked)."""

    @property
    def decision_id(self) -> str: ...
    @property
    def outcome(self) -> Outcome: ...
    @property
    def dataset_id(self) -> str: ...
    @property
    def operation(self) -> Operation: ...
    @property
    def region(self) -> str: ...
    @property
    def allowed_regions(self) -> tuple[str, ...]: ...
    @property
    def reasons(self) -> tuple[Reason, ...]: ...
    @property
    def policy_version(self) -> str: ...
    @property
    def catalog_revision(self) -> int: ...
    @property
    def decide_time(self) -> datetime: ...
    @property
    def caller(self) -> str: ...
    @property
    def inherited_only(self) -> bool: ...


class UnaryDecisionFields(DecisionFields, Protocol):
    """A decision of `Router.decide`: its fields, and the Decide answer holding it."""

    def answer(self) -> bytes:
        """The serialized DecideResponse."""
        ...


@dataclass(frozen=True)
class PolicyChange:
    """How a candidate policy changes one dataset's allowed regions for one operation.

    `new_violations` (store only) are the dataset's current locations that the current
    policy allows and the candidate would not.
    """

    dataset_id: str
    operation: Operation
    added_regions: tuple[str, ...] = ()
    removed_regions: tuple[str, ...] = ()
    new_violations: tuple[str, ...] = ()
