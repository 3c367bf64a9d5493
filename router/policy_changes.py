"""How a policy change becomes active: at once, or proposed and approved by a second principal.

PolicyService's SetPolicy, ListPolicyProposals, ApprovePolicy and RejectPolicy, without the
protobuf (router/service.py translates). The rules are in `router.policy_proposals`; every
step is a security event: `policy_proposed`, `policy_approved`, `policy_rejected`,
`policy_break_glass`, and `policy_change` for every activation, as before.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from domicile.errors import DomicileError, ErrorCode, failed_precondition
from domicile.router.policy import PolicyError, content_hash
from domicile.router.policy_proposals import PolicyProposals, Proposal, ProposalState
from domicile.security import events as ev
from domicile.security.context import Caller, current_caller, current_trace

if TYPE_CHECKING:
    from domicile.router.runtime import Router
    from domicile.security.events import SecurityEventLog


@dataclass(frozen=True)
class Submission:
    """Outcome of `PolicyChanges.set_policy`: `errors` empty means the text is valid; `applied`
    that it is now active; `proposal` the proposal it created (or the pending one with the same
    text), whose `changes` are its impact."""

    version: str
    errors: tuple[PolicyError, ...] = ()
    applied: bool = False
    proposal: Proposal | None = None


@dataclass(frozen=True)
class Approval:
    """Outcome of `PolicyChanges.approve`: the proposal (approved when `applied`), and the
    errors that kept it from activating (it then stays pending)."""

    proposal: Proposal
    applied: bool
    errors: tuple[PolicyError, ...] = ()


class PolicyChanges:
    """Policy activation for one router (see the module docstring)."""

    def __init__(
        self,
        router: Router,
        proposals: PolicyProposals,
        *,
        require_approval: bool,
        events: SecurityEventLog | None,
    ) -> None:
        self._router = router
        self.proposals = proposals
        self.require_approval = require_approval
        self._events = events

    @classmethod
    async def open(
        cls, router: Router, data_dir: Any, *, require_approval: bool, events: SecurityEventLog | None
    ) -> PolicyChanges:
        """Over `router`, with the proposals kept under `data_dir`."""
        return cls(router, await PolicyProposals.open(data_dir), require_approval=require_approval, events=events)

    async def set_policy(
        self, policy_yaml: str, *, dry_run: bool = False, break_glass_reason: str = "", method: str = "", peer: str = ""
    ) -> Submission:
        """Validate `policy_yaml`; unless `dry_run` or invalid, activate it -- or, when approval
        is required and no `break_glass_reason` is given, record it as a proposal (with its
        impact) for another principal to approve. Setting the active text again is a no-op
        reported as applied; proposing a text already pending returns that proposal."""
        caller = current_caller.get()
        where = {"method": method, "peer": peer}
        if dry_run or not self.require_approval or break_glass_reason:
            activation = {"by": caller.principal if caller else "", "break_glass_reason": break_glass_reason}
            update = await self._router.set_policy(
                policy_yaml, dry_run=dry_run, activation={k: v for k, v in activation.items() if v} or None
            )
            if update.applied and not dry_run:
                if break_glass_reason and self.require_approval:
                    self._event(
                        ev.POLICY_BREAK_GLASS,
                        caller,
                        where,
                        "BREAK_GLASS",
                        version=update.version,
                        break_glass_reason=break_glass_reason,
                    )
                self._event(ev.POLICY_CHANGE, caller, where, "", version=update.version)
            return Submission(update.version, update.errors, update.applied)
        check = await self._router.set_policy(policy_yaml, dry_run=True)
        if check.errors:
            return Submission(check.version, check.errors)
        if self._router.get_policy().yaml == policy_yaml:
            return Submission(check.version, applied=True)
        pending = self.proposals.pending_with_version(check.version)
        if pending is not None:
            if pending.yaml == policy_yaml:
                return Submission(check.version, proposal=pending)
            conflict = PolicyError(
                0,
                0,
                "metadata.version",
                f"proposal {pending.proposal_id} of version {check.version!r} with another text is pending: "
                "give the changed policy a new version, or reject that proposal",
            )
            return Submission(check.version, (conflict,))
        impact = await self._router.policy_impact(policy_yaml)
        now = datetime.now(UTC)
        proposal = await self.proposals.propose(
            Proposal(
                proposal_id=f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}",
                version=impact.version,
                yaml=policy_yaml,
                content_hash=content_hash(policy_yaml),
                proposer=caller.subject if caller else "",
                proposed_by=caller.principal if caller else "",
                propose_time=now,
                changes=impact.changes,
            )
        )
        self._event(ev.POLICY_PROPOSED, caller, where, "", proposal_id=proposal.proposal_id, version=proposal.version)
        return Submission(proposal.version, proposal=proposal)

    async def approve(self, proposal_id: str, comment: str = "", *, method: str = "", peer: str = "") -> Approval:
        """Activate a pending proposal. The approver must be an authenticated principal other
        than the proposer (PERMISSION_DENIED, reason SELF_APPROVAL); a closed proposal is
        FAILED_PRECONDITION (PROPOSAL_CLOSED), an unknown one NOT_FOUND."""
        caller = current_caller.get()
        where = {"method": method, "peer": peer}
        proposal = self.proposals.get(proposal_id)
        if proposal.state is not ProposalState.PENDING:
            raise failed_precondition(
                f"policy proposal {proposal_id!r} is already {proposal.state.value}", "PROPOSAL_CLOSED"
            )
        if caller is None:
            raise failed_precondition(
                "approving a policy proposal needs an authenticated principal (not --insecure)", "APPROVER_UNKNOWN"
            )
        if caller.subject == proposal.proposer:
            self._event(ev.AUTHZ_DENIED, caller, where, "SELF_APPROVAL", outcome="denied", proposal_id=proposal_id)
            raise DomicileError(
                f"{caller.subject} proposed {proposal_id} and cannot approve it: another policy:admin must",
                ErrorCode.PERMISSION_DENIED,
                "SELF_APPROVAL",
            )
        activation = {"by": caller.principal, "proposal_id": proposal_id, "proposed_by": proposal.proposed_by}
        update = await self._router.set_policy(proposal.yaml, activation=activation)
        if not update.applied:
            return Approval(proposal, False, update.errors)
        closed = await self.proposals.close(proposal_id, ProposalState.APPROVED, caller.principal, comment)
        self._event(ev.POLICY_APPROVED, caller, where, "", proposal_id=proposal_id, version=closed.version)
        self._event(ev.POLICY_CHANGE, caller, where, "", version=closed.version, proposal_id=proposal_id)
        return Approval(closed, True)

    async def reject(self, proposal_id: str, reason: str = "", *, method: str = "", peer: str = "") -> Proposal:
        """Close a pending proposal without activating it (the proposer may withdraw its own)."""
        caller = current_caller.get()
        closed = await self.proposals.close(
            proposal_id, ProposalState.REJECTED, caller.principal if caller else "", reason
        )
        where = {"method": method, "peer": peer}
        self._event(ev.POLICY_REJECTED, caller, where, "", proposal_id=proposal_id, version=closed.version)
        return closed

    def _event(
        self,
        event: str,
        caller: Caller | None,
        where: Mapping[str, str],
        reason: str,
        *,
        outcome: str = "ok",
        **detail: Any,
    ) -> None:
        if self._events is not None:
            self._events.record(
                event,
                outcome=outcome,
                principal=caller.principal if caller else "",
                method=where["method"],
                peer=where["peer"],
                trace_id=current_trace(),
                reason=reason,
                **detail,
            )
