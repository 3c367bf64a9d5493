"""What answered decisions contribute to telemetry: the decision counters, and on the current
span (the engine's) the decision ids, outcomes, policy version and catalog revision.

The decisions of Decide, Route and CheckJob are counted by the engine when the log's writer
takes them from the engine's lane, and handed to `count_decisions` by the writer
(`LogLane.take_counts`): the answer itself only describes its decisions on a recording span
(`describe_decisions`).

A BatchDecide of 10,000 decisions is one span whose attributes sum the batch up and whose
events name its DENY decisions (at most `MAX_DECISION_EVENTS`), never a span per decision.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

from opentelemetry import trace

from domicile.router.engine import DecisionBatch, DecisionCounts
from domicile.router.types import DecisionFields, Operation, Outcome
from domicile.telemetry.metrics import DECISION_REASONS, DECISIONS

MAX_DECISION_EVENTS = 100

_operation_outcome = attrgetter("operation", "outcome")
_reasons = attrgetter("reasons")


def observe_decisions(decisions: Sequence[DecisionFields]) -> None:
    """Count `decisions` and describe them on the current span (when it records)."""
    if not decisions:
        return
    _count(decisions)
    current = trace.get_current_span()
    if current.is_recording():
        _describe(current, decisions)


def observe_batch(decisions: DecisionBatch) -> None:
    """`observe_decisions` for a BatchDecide's decisions, counted by the engine: no decision is
    built unless the current span records them."""
    if not decisions:
        return
    count_decisions(decisions.counts())
    current = trace.get_current_span()
    if current.is_recording():
        _describe(current, decisions)


def describe_decisions(decisions: Sequence[DecisionFields]) -> None:
    """Describe decisions counted elsewhere (see the module docstring) on the current span, when
    it records."""
    current = trace.get_current_span()
    if current.is_recording():
        _describe(current, decisions)


def count_decisions(counts: DecisionCounts) -> None:
    """Count decisions counted by the engine (decisions by (operation, outcome), reasons by
    (code, rule id))."""
    by_outcome, by_reason = counts
    for (operation, outcome), count in by_outcome.items():
        _decision_counter(operation, outcome).inc(count)
    for key, count in by_reason.items():
        _reason_counter(key).inc(count)


def _count(decisions: Sequence[DecisionFields]) -> None:
    for (operation, outcome), count in Counter(map(_operation_outcome, decisions)).items():
        _decision_counter(operation, outcome).inc(count)
    # Decisions share their reasons tuples (one per verdict the engine caches): count the
    # tuples by identity, then their reasons once each.
    reason_sets = list(map(_reasons, decisions))
    by_identity = dict(zip(map(id, reason_sets), reason_sets, strict=True))
    reasons: Counter[tuple[str, str]] = Counter()
    for identity, count in Counter(map(id, reason_sets)).items():
        for reason in by_identity[identity]:
            reasons[reason.code.value, reason.rule_id] += count
    for key, count in reasons.items():
        _reason_counter(key).inc(count)


@functools.cache
def _decision_counter(operation: Operation, outcome: Outcome) -> Any:
    # labels() costs as much as the decision itself on the hot path; its children are cached.
    return DECISIONS.labels(operation.value, outcome.value)


@functools.lru_cache(maxsize=4096)
def _reason_counter(key: tuple[str, str]) -> Any:
    return DECISION_REASONS.labels(*key)


def _describe(span: trace.Span, decisions: Sequence[DecisionFields]) -> None:
    first = decisions[0]
    span.set_attribute("domicile.policy.version", first.policy_version)
    span.set_attribute("domicile.catalog.revision", first.catalog_revision)
    if len(decisions) == 1:
        span.set_attributes(_attributes(first))
        return
    denied = [d for d in decisions if d.outcome is Outcome.DENY]
    span.set_attribute("domicile.decisions.count", len(decisions))
    span.set_attribute("domicile.decisions.denied", len(denied))
    span.set_attribute("domicile.decision.first_id", first.decision_id)
    span.set_attribute("domicile.decision.last_id", decisions[-1].decision_id)
    for decision in denied[:MAX_DECISION_EVENTS]:
        span.add_event("domicile.decision.deny", _attributes(decision))


def _attributes(decision: DecisionFields) -> dict[str, str | int | list[str]]:
    return {
        "domicile.decision.id": decision.decision_id,
        "domicile.decision.outcome": decision.outcome.value,
        "domicile.decision.dataset_id": decision.dataset_id,
        "domicile.decision.operation": decision.operation.value,
        "domicile.decision.region": decision.region,
        "domicile.decision.reasons": [r.code.value for r in decision.reasons],
        "domicile.decision.rules": [r.rule_id for r in decision.reasons if r.rule_id],
    }
