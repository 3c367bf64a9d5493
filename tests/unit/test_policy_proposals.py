"""PolicyProposals (the proposals file) and the policy history's activation flags."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domicile.config import SettingsError, load_settings
from domicile.errors import DomicileError, ErrorCode
from domicile.router.policy_history import PolicyHistory
from domicile.router.policy_proposals import PROPOSALS_FILE, PolicyProposals, Proposal, ProposalState
from domicile.router.types import Operation, PolicyChange

T0 = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def proposal(proposal_id: str = "p1", version: str = "2") -> Proposal:
    return Proposal(
        proposal_id=proposal_id,
        version=version,
        yaml=f"text of {version}\n",
        content_hash="ab" * 32,
        proposer="alice",
        proposed_by="alice (via ci)",
        propose_time=T0,
        changes=(PolicyChange("s3://a", Operation.STORE, ("aws:us-east-1",), (), ()),),
    )


async def test_proposals_are_kept_and_closed_once(tmp_path) -> None:
    proposals = await PolicyProposals.open(tmp_path)
    assert proposals.list() == []
    await proposals.propose(proposal("p1"))
    await proposals.propose(proposal("p2", "3"))
    approved = await proposals.close("p1", ProposalState.APPROVED, "bob", "looks right")
    assert (approved.state, approved.decided_by, approved.comment) == (ProposalState.APPROVED, "bob", "looks right")
    with pytest.raises(DomicileError) as info:
        await proposals.close("p1", ProposalState.REJECTED, "carol", "")
    assert (info.value.code, info.value.reason) == (ErrorCode.FAILED_PRECONDITION, "PROPOSAL_CLOSED")
    with pytest.raises(DomicileError) as info:
        proposals.get("nope")
    assert info.value.code is ErrorCode.NOT_FOUND
    # Reopened: the same proposals, in order, with their impact.
    reopened = await PolicyProposals.open(tmp_path)
    assert [p.proposal_id for p in reopened.list()] == ["p2"]
    assert [p.proposal_id for p in reopened.list(include_closed=True)] == ["p1", "p2"]
    assert reopened.get("p1") == approved
    assert reopened.get("p2") == proposal("p2", "3") and reopened.pending_with_version("3").proposal_id == "p2"


async def test_a_torn_last_line_is_cut_and_a_damaged_one_refused(tmp_path) -> None:
    proposals = await PolicyProposals.open(tmp_path)
    await proposals.propose(proposal())
    path = tmp_path / PROPOSALS_FILE
    intact = path.read_bytes()
    path.write_bytes(intact + b'{"event":"approved","id":"p1"')
    assert [p.proposal_id for p in (await PolicyProposals.open(tmp_path)).list()] == ["p1"]
    assert path.read_bytes() == intact
    path.write_bytes(intact + b'{"event":"approved","id":"unknown","time":"2026-12-01T00:00:00Z"}\n')
    with pytest.raises(DomicileError) as info:
        await PolicyProposals.open(tmp_path)
    assert info.value.reason == "POLICY_PROPOSALS_CORRUPT" and "line 2" in str(info.value)


async def test_the_history_keeps_how_a_policy_was_activated(tmp_path) -> None:
    history = await PolicyHistory.open(tmp_path)
    await history.record("1", "one\n")
    await history.record("2", "two\n", activation={"by": "alice", "break_glass_reason": "outage"})
    await history.record("3", "three\n", activation={"by": "bob", "proposal_id": "p1", "proposed_by": "alice"})
    history.close()  # (one process owns the history at a time)
    reopened = await PolicyHistory.open(tmp_path)
    assert [v.activation for v in reopened.versions()] == [
        None,
        {"by": "alice", "break_glass_reason": "outage"},
        {"by": "bob", "proposal_id": "p1", "proposed_by": "alice"},
    ]


def test_policy_changes_need_approval_by_default_except_for_development() -> None:
    assert load_settings().policy_changes_need_approval
    assert not load_settings(dev=True).policy_changes_need_approval
    assert not load_settings(insecure=True).policy_changes_need_approval
    assert load_settings(dev=True, policy={"require_approval": True}).policy_changes_need_approval
    assert not load_settings(policy={"require_approval": False}).policy_changes_need_approval
    # A path alone is the policy file, as before the setting had a section.
    assert load_settings(policy="examples/policy.yaml").policy.file.name == "policy.yaml"
    with pytest.raises(SettingsError, match="not with --insecure"):
        load_settings(insecure=True, policy={"require_approval": True})


def test_a_policy_path_from_the_environment_is_the_file(monkeypatch) -> None:
    monkeypatch.setenv("DOMICILE_POLICY", "/etc/domicile/policy.yaml")
    assert str(load_settings().policy.file) == "/etc/domicile/policy.yaml"
    monkeypatch.delenv("DOMICILE_POLICY")
    monkeypatch.setenv("DOMICILE_POLICY__REQUIRE_APPROVAL", "false")
    assert not load_settings().policy_changes_need_approval
