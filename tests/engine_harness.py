"""Drives the residency engine (`domicile.router._engine`) from tests with domain values: a
policy as the engine's document (optionally with the settings of a newer policy model), catalog
values as engine changes, engine verdicts as `Verdict`s."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from domicile.catalog.model import to_micros
from domicile.router._engine import Engine
from domicile.router.policy import LoadedPolicy
from domicile.router.policy_document import normalise
from domicile.router.types import Operation, Outcome, Reason, ReasonCode, Verdict

OPERATIONS = {Operation.STORE: 0, Operation.PROCESS: 1}
OUTCOMES = (Outcome.ALLOW, Outcome.DENY)
REASON_CODES = (
    ReasonCode.RULE_DENIED,
    ReasonCode.DEFAULT_DENIED,
    ReasonCode.UNKNOWN_DATASET,
    ReasonCode.EXEMPTION_APPLIED,
    ReasonCode.STALE_CATALOG,
)


def document(loaded: LoadedPolicy) -> str:
    """The engine's document for `loaded`."""
    return normalise(loaded).document


def verdict(raw: tuple) -> tuple[Verdict, bool]:
    """An engine verdict as (Verdict, inherited_only)."""
    outcome, allowed, reasons, inherited_only = raw
    return (
        Verdict(
            OUTCOMES[outcome],
            allowed,
            tuple(
                Reason(REASON_CODES[code], message, rule_id, citation, path)
                for code, message, rule_id, citation, path in reasons
            ),
        ),
        inherited_only,
    )


def decide(engine: Engine, dataset_id: str, op: Operation, region: str, now: datetime) -> tuple[Verdict, bool]:
    return verdict(engine.decide(dataset_id, OPERATIONS[op], region, to_micros(now)))


def described(dataset_id: str, labels: Iterable[str], origins: Iterable[str], locations: Iterable[str] = ()) -> tuple:
    return ("dataset", dataset_id, list(labels), list(origins), list(locations))


def edge(input: str, output: str, job: str, transform: str = "", recorded: int | None = None) -> tuple:
    return ("edge", input, output, job, transform, recorded)


def edge_ended(input: str, output: str, job: str, transform: str = "", recorded: int | None = None) -> tuple:
    return ("edge_ended", input, output, job, transform, recorded)
