"""What waits in the decision log's queue, and how the writer turns a batch taken from it into
entries: one per request (or per run of single decisions that share caller, policy, revision,
context and kind), at most `line_decisions` decisions each, rendered by the residency engine
(a BatchDecide's `DecisionBatch` without a Python object per decision). Also the intent counts
added to the access records' tally."""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, cast

from domicile.router import _engine
from domicile.router.decision_log.format import Entry
from domicile.router.engine import DecisionBatch
from domicile.router.types import Decision, Operation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Note:
    """A note line queued behind the decisions before it."""

    note: str
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class Rendered:
    """Entries rendered elsewhere (`append_entries`; the lane's, with their decisions' intents
    as the engine counts them: ((caller, dataset_id, operation 0 = store / 1 = process,
    region), count); a BatchDecide's rendered on its own thread (`render_decided`), with the
    batch whose intents the engine counts when it is written)."""

    entries: tuple[Entry, ...]
    intents: tuple[tuple[tuple[str, str, int, str], int], ...] | DecisionBatch = ()


# A queue item: (decisions, context, kind, policy_hash) -- `decisions` one Decision (from `append`)
# or a tuple of them (`append_many`), or a BatchDecide's `DecisionBatch`, which the engine renders
# and counts itself -- or entries rendered elsewhere, or a note.
Decided = tuple["Decision | tuple[Decision, ...] | DecisionBatch", "Mapping[str, str] | None", str, str]
Queued = Decided | Rendered | Note

# The kinds of decisions that answer a caller's question about storing or processing a dataset
# somewhere: access records count them as the caller's intents (`set_intent_sink`).
INTENT_KINDS = frozenset({"decide", "batch_decide", "route", "check_job"})
# Counts, per written batch, the intents of its decisions (`count_intents`).
IntentSink = _engine.IntentTally
_INTENT_KEY = attrgetter("caller", "dataset_id", "operation", "region")
_OPERATION_NUMBER = {Operation.STORE: 0, Operation.PROCESS: 1}


def count_intents(batch: Iterable[Queued], sink: IntentSink, at_us: int) -> None:
    """Add the decisions of INTENT_KINDS in queued items to `sink`, logged at `at_us`: a
    BatchDecide's and the lane's as the engine counted them, others per (caller, dataset,
    operation, region). Entries rendered elsewhere count as their intents say (`append_entries`
    gives none)."""
    counts: Counter[tuple[str, str, Operation, str]] = Counter()
    for item in batch:
        if isinstance(item, Rendered):
            if isinstance(item.intents, DecisionBatch):
                item.intents.count_intents(sink, at_us)
            elif item.intents:
                sink.add(list(item.intents), at_us)
            continue
        if isinstance(item, Note):
            continue
        decisions, _, kind, _ = item
        if kind not in INTENT_KINDS:
            continue
        if type(decisions) is DecisionBatch:
            decisions.count_intents(sink, at_us)
        else:
            counts.update(
                map(
                    _INTENT_KEY,
                    cast("Sequence[Decision]", decisions) if type(decisions) is not Decision else (decisions,),
                )
            )
    if counts:
        sink.add(
            [
                ((caller, dataset, _OPERATION_NUMBER[op], region), n)
                for (caller, dataset, op, region), n in counts.items()
            ],
            at_us,
        )


def render_decided(
    decisions: DecisionBatch, context: Mapping[str, str] | None, kind: str, policy_hash: str, line_decisions: int
) -> Rendered:
    """A BatchDecide's decisions rendered (by the engine, without the interpreter lock) into
    entries of at most `line_decisions` decisions, with the batch for its intents when `kind`
    is one of INTENT_KINDS."""
    entries = decisions.log_entries(context, kind, policy_hash, line_decisions)
    return Rendered(
        tuple(Entry(data, ids, decisions.catalog_revision) for data, ids in entries),
        decisions if kind in INTENT_KINDS else (),
    )


def render_batch(batch: list[Queued], line_decisions: int) -> tuple[list[Entry | Note], str]:
    """The entries (and notes) of a batch taken from the queue, in order: consecutive single
    decisions that share caller, policy, revision, context and kind make one entry; a request's
    decisions are cut into entries of at most `line_decisions`. Returns (entries, problem): an
    item that cannot be rendered (a string that is not valid Unicode, from an in-process caller)
    is left out, logged, and named in `problem` so that its waiters fail."""
    out: list[Entry | Note] = []
    problem = ""
    run: list[Decision] = []
    run_key: tuple[Any, ...] = ()

    def render(decisions: Sequence[Decision], context: Mapping[str, str] | None, kind: str, policy_hash: str) -> None:
        nonlocal problem
        facts = list(context.items()) if context else []
        for start in range(0, len(decisions), line_decisions):
            chunk = decisions[start : start + line_decisions]
            try:
                data = _engine.log_entry(chunk, facts, kind, policy_hash)
            except (TypeError, ValueError) as exc:
                ids = [d.decision_id for d in chunk]
                log.error("decision log: cannot render decisions %s: %s; they are NOT logged", ids[:5], exc)
                problem = f"cannot log decisions ({exc})"
                continue
            out.append(Entry(data, tuple(d.decision_id for d in chunk), chunk[0].catalog_revision))

    def flush_run() -> None:
        if run:
            _, _, _, context, kind, policy_hash = run_key
            render(run, context, kind, policy_hash)
            run.clear()

    for item in batch:
        if isinstance(item, Note):
            flush_run()
            out.append(item)
        elif isinstance(item, Rendered):
            flush_run()
            out.extend(item.entries)
        else:
            decisions, context, kind, policy_hash = item
            if type(decisions) is DecisionBatch:
                flush_run()
                out.extend(render_decided(decisions, context, kind, policy_hash, line_decisions).entries)
                continue
            if type(decisions) is not Decision:  # a tuple of them
                flush_run()
                if decisions:
                    for group in _same_request(cast("Sequence[Decision]", decisions)):
                        render(group, context, kind, policy_hash)
                continue
            single = decisions
            key = (single.caller, single.policy_version, single.catalog_revision, context, kind, policy_hash)
            if run and key != run_key:
                flush_run()
            run_key = key
            run.append(single)
            if len(run) >= line_decisions:
                flush_run()
    flush_run()
    return out, problem


_REQUEST = attrgetter("caller", "policy_version", "catalog_revision")


def _same_request(decisions: Sequence[Decision]) -> list[Sequence[Decision]]:
    """`decisions` cut where caller, policy version or catalog revision change: one piece for a
    request's decisions, which share them (checked at C speed)."""
    if len(set(map(_REQUEST, decisions))) == 1:
        return [decisions]
    return [list(group) for _, group in itertools.groupby(decisions, key=_REQUEST)]
