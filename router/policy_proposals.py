"""Policy changes with a second pair of hands: proposals, their approval, and break-glass.

With `policy.require_approval` (the default, except with `--dev` and `--insecure`), SetPolicy
does not activate a policy: it records a *proposal* -- the text, who proposed it, and its
impact on the catalog as computed then -- which becomes active only when a different
principal with `policy:admin` approves it (ApprovePolicy). Anyone with `policy:admin` may
reject it (RejectPolicy), the proposer too (a withdrawal). A proposal is inert until approved:
the active policy, and so every decision, stays as it was. Exemptions are part of the policy
document, so they follow the same path. A break-glass SetPolicy (with a reason) activates at
once; it is a security event and the policy history flags the activation.

"Different principal" compares token subjects (`sub`): the same subject acting through
another delegation chain is the same person.

File: `<data_dir>/policy-proposals.jsonl`, one event per line, appended and fsynced:

    {"event":"proposed","hash":"<sha256>","id":"20261130T040000-1a2b3c","proposer":"alice",
     "principal":"alice (via ci)","time":"2026-11-30T04:00:00.000000Z","version":"2026.12.2",
     "yaml":"...","changes":[{"dataset_id":...,"operation":"store","added_regions":[...],
     "removed_regions":[...],"new_violations":[...]}, ...]}
    {"event":"approved","id":"...","principal":"bob","comment":"...","time":"..."}
    {"event":"rejected","id":"...","principal":"bob","comment":"...","time":"..."}

A crash during a write leaves at most an incomplete last line, which `open` cuts off (it was
never acknowledged); any other damage makes `open` fail.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from domicile.errors import DomicileError, ErrorCode, failed_precondition, not_found
from domicile.router.jsonl_files import append_line, complete_lines, format_time
from domicile.router.types import Operation, PolicyChange

PROPOSALS_FILE = "policy-proposals.jsonl"


class ProposalState(Enum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Proposal:
    """A policy text waiting for (or past) a second principal's decision. `proposer` is the
    subject that proposed it, `proposed_by` its principal as audit fields show it; `changes`
    its impact when proposed; `decided_by`, `decide_time` and `comment` are set once closed."""

    proposal_id: str
    version: str
    yaml: str
    content_hash: str
    proposer: str
    proposed_by: str
    propose_time: datetime
    changes: tuple[PolicyChange, ...]
    state: ProposalState = ProposalState.PENDING
    decided_by: str = ""
    decide_time: datetime | None = None
    comment: str = ""


class PolicyProposals:
    """The proposals of one data directory (see the module docstring). Reads from memory;
    writes append to the file. Owned by the process that serves PolicyService."""

    def __init__(self, path: Path, proposals: dict[str, Proposal]) -> None:
        # Use `open`.
        self.path = path
        self._proposals = proposals
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, data_dir: str | os.PathLike[str]) -> PolicyProposals:
        """Load `<data_dir>/policy-proposals.jsonl` (created on the first proposal).
        FAILED_PRECONDITION (reason POLICY_PROPOSALS_CORRUPT) when a line is not an event."""
        path = Path(data_dir) / PROPOSALS_FILE
        return cls(path, await asyncio.to_thread(_load, path))

    def get(self, proposal_id: str) -> Proposal:
        """The proposal; NOT_FOUND when there is none with that id."""
        proposal = self._proposals.get(proposal_id)
        if proposal is None:
            raise not_found(f"policy proposal {proposal_id!r} not found")
        return proposal

    def list(self, *, include_closed: bool = False) -> list[Proposal]:
        """Proposals oldest first: the pending ones, or all."""
        return [p for p in self._proposals.values() if include_closed or p.state is ProposalState.PENDING]

    def pending_with_version(self, version: str) -> Proposal | None:
        return next((p for p in self.list() if p.version == version), None)

    async def propose(self, proposal: Proposal) -> Proposal:
        """Record a new pending proposal (durable when this returns)."""
        record = {
            "event": "proposed",
            "id": proposal.proposal_id,
            "time": format_time(proposal.propose_time),
            "principal": proposal.proposed_by,
            "proposer": proposal.proposer,
            "version": proposal.version,
            "hash": proposal.content_hash,
            "yaml": proposal.yaml,
            "changes": [_change_record(c) for c in proposal.changes],
        }
        async with self._lock:
            await _append(self.path, record)
            self._proposals[proposal.proposal_id] = proposal
        return proposal

    async def close(self, proposal_id: str, state: ProposalState, principal: str, comment: str) -> Proposal:
        """Mark a pending proposal approved or rejected (durable when this returns).
        FAILED_PRECONDITION (reason PROPOSAL_CLOSED) when it is not pending any more."""
        async with self._lock:
            proposal = self.get(proposal_id)
            if proposal.state is not ProposalState.PENDING:
                raise failed_precondition(
                    f"policy proposal {proposal_id!r} is already {proposal.state.value}", "PROPOSAL_CLOSED"
                )
            now = datetime.now(UTC)
            record = {
                "event": state.value,
                "id": proposal_id,
                "time": format_time(now),
                "principal": principal,
                "comment": comment,
            }
            await _append(self.path, record)
            closed = replace(proposal, state=state, decided_by=principal, decide_time=now, comment=comment)
            self._proposals[proposal_id] = closed
            return closed


def _change_record(change: PolicyChange) -> dict[str, Any]:
    return {
        "dataset_id": change.dataset_id,
        "operation": change.operation.value,
        "added_regions": list(change.added_regions),
        "removed_regions": list(change.removed_regions),
        "new_violations": list(change.new_violations),
    }


async def _append(path: Path, record: Mapping[str, Any]) -> None:
    line = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
    await asyncio.to_thread(append_line, path, line.encode("utf-8"))


def _load(path: Path) -> dict[str, Proposal]:
    proposals: dict[str, Proposal] = {}
    for number, raw in enumerate(complete_lines(path, "policy proposals"), start=1):
        try:
            record = json.loads(raw)
            event = record["event"]
            when = datetime.fromisoformat(record["time"])
            if event == "proposed":
                proposals[record["id"]] = Proposal(
                    proposal_id=record["id"],
                    version=record["version"],
                    yaml=record["yaml"],
                    content_hash=record["hash"],
                    proposer=record["proposer"],
                    proposed_by=record["principal"],
                    propose_time=when,
                    changes=tuple(
                        PolicyChange(
                            c["dataset_id"],
                            Operation(c["operation"]),
                            tuple(c["added_regions"]),
                            tuple(c["removed_regions"]),
                            tuple(c["new_violations"]),
                        )
                        for c in record["changes"]
                    ),
                )
            else:
                proposals[record["id"]] = replace(
                    proposals[record["id"]],
                    state=ProposalState(event),
                    decided_by=record["principal"],
                    decide_time=when,
                    comment=record["comment"],
                )
        except (ValueError, KeyError, TypeError) as exc:
            raise DomicileError(
                f"policy proposals {path} are damaged at line {number}: not a proposal event ({exc!r})",
                ErrorCode.FAILED_PRECONDITION,
                "POLICY_PROPOSALS_CORRUPT",
            ) from None
    return proposals
