"""What the decision log tests share: decisions to log, a signing key, reading lines back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domicile.router.decision_log import CheckpointSigner, DecisionLog, Series, TrustedKeys, verify_series
from domicile.router.decision_log.format import seal
from domicile.router.types import Decision, Operation, Outcome, Reason, ReasonCode

T0 = datetime(2026, 11, 30, 4, 0, 0, 123456, tzinfo=UTC)
REPLICA = "replica-a"
SIGNER = CheckpointSigner(Ed25519PrivateKey.generate())
KEYS = TrustedKeys([SIGNER.public_key])


def decision(n: int, **changes: Any) -> Decision:
    fields: dict[str, Any] = {
        "decision_id": f"{REPLICA}:d{n:04d}",
        "outcome": Outcome.DENY,
        "dataset_id": f"s3://bank-eu/customers-{n}",
        "operation": Operation.STORE,
        "region": "aws:us-east-1",
        "allowed_regions": ("aws:eu-central-1", "aws:eu-west-1"),
        "reasons": (
            Reason(
                ReasonCode.RULE_DENIED,
                "EU personal data stays in the EU",
                "gdpr-personal-data",
                "GDPR Art. 44-45",
                ("s3://bank-eu/raw", f"s3://bank-eu/customers-{n}"),
            ),
        ),
        "policy_version": "2026.11.1",
        "catalog_revision": 7 + n,
        "decide_time": T0 + timedelta(seconds=n),
        "caller": "spiffe://bank/pipeline",
    }
    fields.update(changes)
    return Decision(**fields)


async def open_log(path: Path, **options: Any) -> DecisionLog:
    options.setdefault("replica", REPLICA)
    options.setdefault("signer", SIGNER)
    return await DecisionLog.open(path, **options)


async def write_one_per_line(log: DecisionLog, numbers) -> None:
    """Append decisions one line each: a durable log writes what is queued when flushed."""
    assert log.durable
    for n in numbers:
        log.append(decision(n))
        await log.flush()


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines(path)]


def row_ids(path: Path) -> list[str]:
    return [row[0] for record in records(path) for entry in record.get("entries", ()) for row in entry["decisions"]]


def reseal(line: bytes, **changes: Any) -> bytes:
    """`line` with `changes` made to its members and its hash made again (as a forger would)."""
    body = json.loads(line)
    del body["hash"]
    body.update(changes)
    return seal(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()[:-1])[0]


def verify(path: Path, **kwargs: Any):
    return verify_series(Series(path).files(), KEYS, **kwargs)
