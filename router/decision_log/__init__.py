"""The decision log: every decision the router answers, in an append-only, hash-chained,
signed and checkable series of JSON Lines files -- one series (one chain) per replica.

One module per job:

- `format`: the line format (hashed as written) and reading decisions back out of a line;
- `writer`: `DecisionLog`, the live log: queue, writer thread, group commit, faults,
  checkpoints, rotation, the disk-space floor;
- `batches`: what waits in the writer's queue and how a batch becomes entries;
- `opening`: checking what is on disk before the writer continues it;
- `index`: finding a decision again, with a proof of the line that holds it;
- `verify`: checking a chain -- at open, by `domicile audit verify`, for proofs;
- `checkpoints`: what a checkpoint signs, the keys, and the sinks that keep copies;
- `series`: the files of a series, rotation names, retention;
- `legacy`: logs written before format 3 (format 2), checked and moved aside once.

docs/audit.md is the operator's and auditor's guide.
"""

from domicile.router.decision_log.batches import INTENT_KINDS, IntentSink, count_intents
from domicile.router.decision_log.checkpoints import (
    Checkpoint,
    CheckpointSigner,
    CheckpointSink,
    FileSink,
    HttpSink,
    TrustedKeys,
)
from domicile.router.decision_log.format import ZERO_HASH, Entry, LoggedDecision, decisions_of_line
from domicile.router.decision_log.index import Proof
from domicile.router.decision_log.opening import default_replica
from domicile.router.decision_log.series import Series
from domicile.router.decision_log.verify import SeriesReport, read_anchors, verify_series
from domicile.router.decision_log.writer import DecisionLog, LogOptions

__all__ = [
    "INTENT_KINDS",
    "ZERO_HASH",
    "Checkpoint",
    "CheckpointSigner",
    "CheckpointSink",
    "DecisionLog",
    "Entry",
    "FileSink",
    "HttpSink",
    "IntentSink",
    "LogOptions",
    "LoggedDecision",
    "Proof",
    "Series",
    "SeriesReport",
    "TrustedKeys",
    "count_intents",
    "decisions_of_line",
    "default_replica",
    "read_anchors",
    "verify_series",
]
