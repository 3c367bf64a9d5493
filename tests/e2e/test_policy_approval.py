"""Policy changes get a second pair of hands: over real TLS channels to a `--dev` server that
requires approval, with tokens of several principals. A proposal is inert until another
policy admin approves it; its proposer cannot; break-glass activates at once, on the record."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest

from domicile.config import load_settings
from domicile.grpc_errors import details_of
from domicile.security.dev_credentials import dev_paths, mint_dev_token
from domicile.server import create_server
from domicile.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    residency_pb2,
    residency_pb2_grpc,
)

EXAMPLE_POLICY = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"
ORIGINAL = EXAMPLE_POLICY.read_text("utf-8")
CUSTOMERS = "s3://bank-eu/customers"
US = "aws:us-east-1"
# Candidate: EU personal data may be stored anywhere (a loosening a second person must see).
LOOSER = ORIGINAL.replace('version: "2026.12.1"', 'version: "2026.12.2"').replace(
    "store:   {allow: [EU_PLUS_ADEQUATE]}", "store:   {allow: ['*']}", 1
)


def settings(data_dir: Path):
    return load_settings(
        dev=True,
        listen="127.0.0.1:0",
        http_listen="",
        store=f"sqlite:///{data_dir / 'catalog.db'}",
        data_dir=data_dir,
        policy={"file": EXAMPLE_POLICY, "require_approval": True},
    )


@pytest.fixture
async def server(tmp_path):
    running = await create_server(settings(tmp_path))
    yield running
    await running.stop(0)


class Principal:
    def __init__(self, server, subject: str, *scopes: str) -> None:
        data_dir = server.app.settings.data_dir
        paths = dev_paths(data_dir)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=paths.ca_cert.read_bytes(),
            private_key=paths.client_key.read_bytes(),
            certificate_chain=paths.client_cert.read_bytes(),
        )
        self.channel = grpc.aio.secure_channel(f"127.0.0.1:{server.port}", credentials)
        self.metadata = [("authorization", f"Bearer {mint_dev_token(data_dir, scopes=list(scopes), subject=subject)}")]
        self.policy = policy_pb2_grpc.PolicyServiceStub(self.channel)
        self.residency = residency_pb2_grpc.ResidencyServiceStub(self.channel)
        self.catalog = catalog_pb2_grpc.CatalogServiceStub(self.channel)

    async def set(self, text: str, **fields) -> policy_pb2.SetPolicyResponse:
        return await self.policy.SetPolicy(
            policy_pb2.SetPolicyRequest(policy_yaml=text, **fields), metadata=self.metadata
        )

    async def approve(self, proposal_id: str, comment: str = "") -> policy_pb2.ApprovePolicyResponse:
        request = policy_pb2.ApprovePolicyRequest(proposal_id=proposal_id, comment=comment)
        return await self.policy.ApprovePolicy(request, metadata=self.metadata)

    async def reject(self, proposal_id: str, reason: str) -> policy_pb2.RejectPolicyResponse:
        request = policy_pb2.RejectPolicyRequest(proposal_id=proposal_id, reason=reason)
        return await self.policy.RejectPolicy(request, metadata=self.metadata)

    async def proposals(self, include_closed: bool = False) -> list[policy_pb2.PolicyProposal]:
        request = policy_pb2.ListPolicyProposalsRequest(include_closed=include_closed)
        return list((await self.policy.ListPolicyProposals(request, metadata=self.metadata)).proposals)

    async def active_version(self) -> str:
        return (await self.policy.GetPolicy(policy_pb2.GetPolicyRequest(), metadata=self.metadata)).version

    async def decide(self, dataset_id: str, region: str) -> int:
        request = residency_pb2.DecideRequest(
            dataset_id=dataset_id, operation=residency_pb2.OPERATION_STORE, region=region
        )
        return (await self.residency.Decide(request, metadata=self.metadata)).decision.outcome


@pytest.fixture
async def people(server):
    admin_scopes = ("policy:admin", "residency:decide", "catalog:write")
    alice, bob = Principal(server, "alice", *admin_scopes), Principal(server, "bob", *admin_scopes)
    auditor = Principal(server, "audrey", "audit:read")
    dataset = catalog_pb2.Dataset(id=CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"])
    await alice.catalog.UpsertDataset(catalog_pb2.UpsertDatasetRequest(dataset=dataset), metadata=alice.metadata)
    yield alice, bob, auditor
    for person in (alice, bob, auditor):
        await person.channel.close()


def events(server, *names: str) -> list[dict]:
    lines = server.app.settings.security_log_path.read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] in names]


def history(server) -> list[dict]:
    path = server.app.settings.data_dir / "policies.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


async def refused(awaitable, code) -> dict:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    assert info.value.code() == code, info.value.details()
    return details_of(info.value)


async def test_a_proposal_is_inert_until_another_policy_admin_approves_it(server, people):
    alice, bob, auditor = people
    assert await alice.decide(CUSTOMERS, US) == residency_pb2.OUTCOME_DENY
    response = await alice.set(LOOSER)
    assert not response.applied and not response.errors and response.version == "2026.12.2"
    proposal = response.proposal
    assert proposal.state == policy_pb2.PROPOSAL_STATE_PENDING and proposal.proposed_by == "alice"
    assert US in {r for c in proposal.changes if c.dataset_id == CUSTOMERS for r in c.added_regions}
    # Inert: the active policy and the decisions are as they were.
    assert await alice.active_version() == "2026.12.1"
    assert await bob.decide(CUSTOMERS, US) == residency_pb2.OUTCOME_DENY
    # Proposing the same text again answers the same proposal; auditors see it.
    assert (await bob.set(LOOSER)).proposal.proposal_id == proposal.proposal_id
    assert [p.proposal_id for p in await auditor.proposals()] == [proposal.proposal_id]
    # Its proposer cannot approve it.
    details = await refused(alice.approve(proposal.proposal_id), grpc.StatusCode.PERMISSION_DENIED)
    assert details["reason"] == "SELF_APPROVAL"
    assert await alice.active_version() == "2026.12.1"
    # An auditor cannot either (the scope table: approving is policy:admin work).
    await refused(auditor.approve(proposal.proposal_id), grpc.StatusCode.PERMISSION_DENIED)
    approved = await bob.approve(proposal.proposal_id, comment="reviewed with the DPO")
    assert approved.applied and approved.proposal.state == policy_pb2.PROPOSAL_STATE_APPROVED
    assert (approved.proposal.decided_by, approved.proposal.comment) == ("bob", "reviewed with the DPO")
    assert await alice.active_version() == "2026.12.2"
    assert await alice.decide(CUSTOMERS, US) == residency_pb2.OUTCOME_ALLOW
    await refused(bob.approve(proposal.proposal_id), grpc.StatusCode.FAILED_PRECONDITION)
    assert await auditor.proposals() == []
    assert [p.state for p in await auditor.proposals(include_closed=True)] == [policy_pb2.PROPOSAL_STATE_APPROVED]
    # On the record: the history names the approval, the event log every step.
    assert history(server)[-1]["activation"] == {
        "by": "bob",
        "proposal_id": proposal.proposal_id,
        "proposed_by": "alice",
    }
    versions = await auditor.policy.ListPolicyVersions(
        policy_pb2.ListPolicyVersionsRequest(), metadata=auditor.metadata
    )
    newest = versions.activations[0]
    assert (newest.version, newest.activated_by, newest.proposal_id, newest.proposed_by) == (
        "2026.12.2",
        "bob",
        proposal.proposal_id,
        "alice",
    )
    logged = events(server, "policy_proposed", "policy_approved", "policy_change", "authz_denied")
    assert [(e["event"], e["principal"], e["reason"]) for e in logged] == [
        ("policy_proposed", "alice", ""),
        ("authz_denied", "alice", "SELF_APPROVAL"),
        ("authz_denied", "audrey", "MISSING_SCOPE"),
        ("policy_approved", "bob", ""),
        ("policy_change", "bob", ""),
    ]


async def test_a_rejected_proposal_never_takes_effect(server, people):
    alice, bob, _ = people
    exemption = ORIGINAL.replace('version: "2026.12.1"', 'version: "2026.12.3"').replace(
        'regions: ["aws:us-east-1"]\n    expires: "2027-01-31T00:00:00Z"',
        'regions: ["aws:us-east-1"]\n    expires: "2099-01-31T00:00:00Z"',
    )
    # Exemptions are part of the policy document: they follow the same path.
    proposal = (await alice.set(exemption)).proposal
    assert proposal.proposal_id
    # A pending version cannot be proposed with another text.
    clash = (await bob.set(exemption.replace("2099-01-31", "2098-01-31"))).errors
    assert [e.path for e in clash] == ["metadata.version"] and proposal.proposal_id in clash[0].message
    rejected = await alice.reject(proposal.proposal_id, reason="withdrawn: wrong expiry")
    assert rejected.proposal.state == policy_pb2.PROPOSAL_STATE_REJECTED
    await refused(bob.approve(proposal.proposal_id), grpc.StatusCode.FAILED_PRECONDITION)
    assert await bob.active_version() == "2026.12.1"
    await refused(bob.approve("no-such-proposal"), grpc.StatusCode.NOT_FOUND)


async def test_break_glass_activates_at_once_with_a_reason_on_record(server, people):
    alice, _, _ = people
    response = await alice.set(LOOSER, break_glass_reason="regulator-approved failover, ticket INC-4711")
    assert response.applied and not response.HasField("proposal")
    assert await alice.active_version() == "2026.12.2"
    assert history(server)[-1]["activation"] == {
        "by": "alice",
        "break_glass_reason": "regulator-approved failover, ticket INC-4711",
    }
    versions = await alice.policy.ListPolicyVersions(policy_pb2.ListPolicyVersionsRequest(), metadata=alice.metadata)
    assert versions.activations[0].break_glass_reason == "regulator-approved failover, ticket INC-4711"
    (event,) = events(server, "policy_break_glass")
    assert event["principal"] == "alice" and event["detail"]["version"] == "2026.12.2"
    assert event["detail"]["break_glass_reason"] == "regulator-approved failover, ticket INC-4711"
    details = await refused(alice.set(ORIGINAL, break_glass_reason="x\x07"), grpc.StatusCode.INVALID_ARGUMENT)
    assert [f for f, _ in details["field_violations"]] == ["break_glass_reason"]


async def test_proposals_outlive_a_restart(tmp_path):
    running = await create_server(settings(tmp_path))
    try:
        alice = Principal(running, "alice", "policy:admin")
        proposal_id = (await alice.set(LOOSER)).proposal.proposal_id
        await alice.channel.close()
    finally:
        await running.stop(0)
    running = await create_server(settings(tmp_path))
    try:
        bob = Principal(running, "bob", "policy:admin")
        assert [p.proposal_id for p in await bob.proposals()] == [proposal_id]
        assert (await bob.approve(proposal_id)).applied
        await bob.channel.close()
    finally:
        await running.stop(0)


async def test_the_policy_commands_propose_list_approve_and_reject(server, tmp_path):
    from click.testing import CliRunner

    from domicile.cli.main import cli

    data_dir = server.app.settings.data_dir
    runner = CliRunner()

    def token(subject: str) -> str:
        return mint_dev_token(data_dir, scopes=["policy:admin"], subject=subject)

    async def run(subject: str, *args: str):
        root = ["--server", f"127.0.0.1:{server.port}", "--data-dir", str(data_dir), "--token", token(subject)]
        return await asyncio.to_thread(runner.invoke, cli, [*root, *args])

    looser = tmp_path / "looser.yaml"
    looser.write_text(LOOSER, "utf-8")
    result = await run("alice", "policy", "propose", str(looser))
    assert result.exit_code == 0, result.output
    assert "policy 2026.12.2 proposed as " in result.output and "domicile policy approve" in result.output
    proposal_id = result.output.split("proposed as ")[1].split(":")[0]
    result = await run("alice", "policy", "proposals")
    assert result.exit_code == 0 and proposal_id in result.output and "pending" in result.output
    result = await run("alice", "policy", "approve", proposal_id)
    assert result.exit_code == 1 and "another policy:admin must" in result.output
    result = await run("bob", "policy", "approve", proposal_id, "--comment", "ok")
    assert result.exit_code == 0 and "policy 2026.12.2 is active" in result.output, result.output
    # A second proposal, rejected; then the break-glass path.
    again = tmp_path / "again.yaml"
    again.write_text(LOOSER.replace('version: "2026.12.2"', 'version: "2026.12.4"'), "utf-8")
    second = (await run("alice", "policy", "set", str(again))).output.split("proposed as ")[1].split(":")[0]
    result = await run("bob", "policy", "reject", second, "--reason", "not now")
    assert result.exit_code == 0 and "rejected" in result.output
    result = await run("alice", "policy", "proposals", "--all")
    assert "approved" in result.output and "rejected" in result.output
    result = await run("alice", "policy", "set", str(again), "--break-glass", "incident INC-1")
    assert result.exit_code == 0 and "policy 2026.12.4 is active (break glass)" in result.output
