"""The SDK (`domicile.client`) against a real `--dev` server (mutual TLS and JWT, with the
development credentials found as the command line finds them): every RPC, through both the
blocking and the asyncio client, over real channels. `SCENARIOS` must name every RPC the
server's services declare: an RPC added without an SDK method and a scenario fails here."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from domicile.client import (
    AccessOperation,
    AnomalyKind,
    AsyncClient,
    Client,
    ConnectionSettings,
    Dataset,
    DatasetRevision,
    Direction,
    EdgeKey,
    FindingKind,
    InvalidArgument,
    NotFound,
    Operation,
    Outcome,
    ProposalState,
    Question,
    RevisionChange,
    ServingStatus,
)
from domicile.client.calls import SERVICES
from domicile.config import load_settings
from domicile.security.dev_credentials import DEV_SUBJECT, mint_dev_token
from domicile.server import create_server

EXAMPLE_POLICY = Path(__file__).parents[2] / "examples" / "policy.yaml"
US, IRELAND, FRANKFURT, MUMBAI = "aws:us-east-1", "aws:eu-west-1", "aws:eu-central-1", "aws:ap-south-1"
SECOND_ADMIN = "second-admin@bank.example"
_unique = itertools.count(1)


@pytest.fixture(scope="module")
async def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("sdk-server")
    settings = load_settings(
        dev=True,
        listen="127.0.0.1:0",
        http_listen="",
        console={"listen": ""},
        store=f"sqlite:///{data_dir / 'catalog.db'}",
        data_dir=data_dir,
        policy={"file": EXAMPLE_POLICY, "require_approval": True},
        access={"anomalies": {"baseline_min_age_days": 1, "baseline_window_days": 30}},
    )
    running = await create_server(settings)
    yield running
    await running.stop(0)


def settings_for(server) -> ConnectionSettings:
    # The server's data directory holds the dev credentials the client finds and uses.
    return ConnectionSettings(server=f"127.0.0.1:{server.port}", data_dir=server.app.settings.data_dir)


Caller = Callable[..., Awaitable[Any]]


@pytest.fixture(params=["sync", "asyncio"])
async def call(request, server):
    """`await call("method", *args)`: the method of a blocking Client (run in a thread, the
    server shares this event loop) or of an AsyncClient."""
    if request.param == "sync":
        client = Client(settings_for(server))

        async def invoke(name: str, *args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(getattr(client, name), *args, **kwargs)

        yield invoke
        client.close()
    else:
        async with AsyncClient(settings_for(server)) as aclient:

            async def invoke(name: str, *args: Any, **kwargs: Any) -> Any:
                return await getattr(aclient, name)(*args, **kwargs)

            yield invoke


def run_id() -> str:
    return f"run-{next(_unique)}"


def unique(stem: str) -> str:
    return f"s3://sdk-{next(_unique)}/{stem}"


async def customers(call: Caller) -> str:
    dataset_id = unique("customers")
    await call(
        "upsert_dataset",
        Dataset.create(
            dataset_id, owner="crm@bank.example", classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT]
        ),
    )
    return dataset_id


async def payments(call: Caller) -> str:
    dataset_id = unique("card-payments")
    await call(
        "upsert_dataset",
        Dataset.create(dataset_id, classifications=["FINANCIAL.PAYMENT"], origins=["IN"], locations=[MUMBAI]),
    )
    return dataset_id


def policy_text(version: str) -> str:
    return EXAMPLE_POLICY.read_text().replace('version: "2026.12.1"', f'version: "{version}"')


# ---- CatalogService ------------------------------------------------------------------------


async def upsert_dataset(call, server):
    dataset_id = unique("loans")
    stored = await call(
        "upsert_dataset",
        Dataset.create(
            dataset_id,
            name="Loan book",
            classifications=["PII.IDENTITY"],
            origins=["AT"],
            locations=[FRANKFURT],
            tags={"tier": "1"},
        ),
    )
    assert isinstance(stored, Dataset)
    assert (stored.id, stored.name, stored.classifications, stored.tags) == (
        dataset_id,
        "Loan book",
        ("PII.IDENTITY",),
        {"tier": "1"},
    )
    assert stored.revision > 0 and stored.update_time is not None and stored.updated_by
    again = await call("upsert_dataset", Dataset.create(dataset_id, name="Loans"), expected_revision=stored.revision)
    assert again.revision > stored.revision and again.classifications == ()


async def get_dataset(call, server):
    dataset_id = await customers(call)
    dataset = await call("get_dataset", dataset_id)
    assert (dataset.id, dataset.origins, dataset.locations) == (dataset_id, ("DE",), (FRANKFURT,))
    with pytest.raises(NotFound):
        await call("get_dataset", dataset_id, as_of=datetime(2020, 1, 1, tzinfo=UTC))


async def list_datasets(call, server):
    dataset_id = await customers(call)
    namespace = dataset_id.rsplit("/", 1)[0]
    page = await call("list_datasets", query=namespace, classification="PII")
    assert [d.id for d in page.items] == [dataset_id] and page.next_page_token == ""


async def delete_dataset(call, server):
    dataset_id = await customers(call)
    await call("delete_dataset", dataset_id)
    with pytest.raises(NotFound):
        await call("get_dataset", dataset_id)


async def list_regions(call, server):
    regions = {r.id: r for r in await call("list_regions")}
    assert regions[FRANKFURT].country == "DE" and regions[FRANKFURT].provider == "aws"
    assert regions["onprem:fra-dc1"].private  # the example policy's private region


async def list_dataset_revisions(call, server):
    dataset_id = await customers(call)
    await call("delete_dataset", dataset_id)
    page = await call("list_dataset_revisions", dataset_id)
    assert [r.change for r in page.items] == [RevisionChange.DELETED, RevisionChange.CREATED]
    assert all(isinstance(r, DatasetRevision) for r in page.items)
    assert page.items[1].dataset is not None and page.items[1].dataset.origins == ("DE",)


# ---- LineageService ------------------------------------------------------------------------


async def record_lineage(call, server):
    source = await customers(call)
    copy = unique("customers-us")
    recorded = await call("record_lineage", "risk-us/scoring", run_id(), inputs=[source], outputs=[copy], run_region=US)
    assert recorded.edges_created == 1 and recorded.catalog_revision > 0
    # Reading EU personal data in the US is what the run did where the policy forbids it.
    # and writing an output with no known location is reported too.
    assert {(v.kind, v.dataset_id, v.operation) for v in recorded.observed_violations} == {
        (FindingKind.POLICY_DENIED, source, Operation.PROCESS),
        (FindingKind.UNKNOWN_OUTPUT_LOCATION, copy, Operation.STORE),
    }


async def get_lineage(call, server):
    source = await customers(call)
    masked = unique("customers-masked")
    await call(
        "record_lineage",
        "airflow-eu/anonymize_customers",
        run_id(),
        inputs=[source],
        outputs=[masked],
        run_region=FRANKFURT,
        transform="anonymize",
    )
    graph = await call("get_lineage", masked, Direction.UPSTREAM)
    assert {n.dataset_id: n.depth for n in graph.nodes} == {masked: 0, source: 1}
    assert [(e.input, e.output, e.transform) for e in graph.edges] == [(source, masked, "anonymize")]
    assert graph.complete and graph.unapproved_declassifications == frozenset()
    # A job the policy does not grant the transform: the edge is flagged.
    other = unique("customers-masked-by-other")
    await call("record_lineage", "batch/other", run_id(), inputs=[source], outputs=[other], transform="anonymize")
    flagged = await call("get_lineage", other, "upstream")
    assert flagged.unapproved_declassifications == frozenset({EdgeKey(source, other, "batch/other")})


async def end_lineage(call, server):
    source = await customers(call)
    copy = unique("copy")
    await call("record_lineage", "airflow-eu/copy", run_id(), inputs=[source], outputs=[copy])
    ended = await call("end_lineage", "airflow-eu/copy", inputs=[source], outputs=[copy])
    assert ended.edges_ended == 1
    assert (await call("get_lineage", copy)).edges == ()


# ---- ResidencyService ----------------------------------------------------------------------


async def decide(call, server):
    dataset_id = await customers(call)
    decision = await call("decide", dataset_id, Operation.STORE, US)
    assert decision.outcome is Outcome.DENY and decision.operation is Operation.STORE
    assert [r.rule_id for r in decision.reasons] == ["gdpr-personal-data"]
    assert decision.reasons[0].citation and decision.decision_id and decision.policy_version == "2026.12.1"
    assert (await call("decide", dataset_id, "store", FRANKFURT)).outcome is Outcome.ALLOW
    with pytest.raises(InvalidArgument) as error:
        await call("decide", dataset_id, "store", "aws:nowhere-1")
    assert error.value.field_violations and error.value.field_violations[0].field == "region"


async def batch_decide(call, server):
    dataset_id = await customers(call)
    decisions = await call(
        "batch_decide", [Question(dataset_id, Operation.STORE, FRANKFURT), (dataset_id, "process", US)]
    )
    assert [(d.outcome, d.region) for d in decisions] == [(Outcome.ALLOW, FRANKFURT), (Outcome.DENY, US)]


async def route(call, server):
    dataset_id = await customers(call)
    result = await call("route", dataset_id, "store", [US, IRELAND])
    assert result.region == IRELAND and result.decision.outcome is Outcome.ALLOW


async def check_job(call, server):
    source = await payments(call)
    asker = {"airflow.dag_id": "payment_volumes", "airflow.run_id": "manual__2026-12-06T10:00:00+00:00"}
    check = await call(
        "check_job",
        inputs=[source],
        outputs=[unique("volumes")],
        run_region=MUMBAI,
        output_region=US,
        job="airflow-in/payment_volumes",
        context=asker,
    )
    assert not check.allowed
    assert [(d.operation, d.outcome) for d in check.decisions] == [
        (Operation.PROCESS, Outcome.ALLOW),
        (Operation.STORE, Outcome.DENY),
    ]
    # Every decision of the check is logged with the asker's context, and only with it.
    for decision in check.decisions:
        logged = await call("get_decision", decision.decision_id)
        assert logged.decision == decision and dict(logged.context) == asker
    with pytest.raises(InvalidArgument) as invalid:
        await call("check_job", inputs=[source], run_region=MUMBAI, context={"no spaces": "x"})
    assert [v.field for v in invalid.value.field_violations] == ["context['no spaces']"]


async def explain(call, server):
    source = await customers(call)
    copy = unique("copy")
    await call("record_lineage", "airflow-eu/copy", run_id(), inputs=[source], outputs=[copy], run_region=FRANKFURT)
    explanation = await call("explain", copy)
    assert dict(explanation.attributes.classifications) == {"PII.CONTACT": (source, copy)}
    assert dict(explanation.attributes.origins) == {"DE": (source, copy)}
    assert explanation.attributes.inherited_only and US not in explanation.store_regions
    assert FRANKFURT in explanation.store_regions and explanation.policy_version == "2026.12.1"


async def scan_violations(call, server):
    dataset_id = unique("stored-in-us")
    await call("upsert_dataset", Dataset.create(dataset_id, classifications=["PII"], origins=["FR"], locations=[US]))
    violations = [v for v in await call("scan_violations") if v.dataset_id == dataset_id]
    assert [(v.region, v.decision.outcome) for v in violations] == [(US, Outcome.DENY)]


async def list_violations(call, server):
    dataset_id = unique("listed-in-us")
    await call("upsert_dataset", Dataset.create(dataset_id, classifications=["PII"], origins=["FR"], locations=[US]))
    page = await call("list_violations", region=US, page_size=1000)
    mine = [v for v in page.violations if v.dataset_id == dataset_id]
    assert [(v.region, v.verdict.outcome) for v in mine] == [(US, Outcome.DENY)]
    assert page.total >= 1 and page.by_region[US] >= 1 and page.policy_version


async def get_residency_states(call, server):
    dataset_id = unique("state-in-us")
    await call("upsert_dataset", Dataset.create(dataset_id, classifications=["PII"], origins=["FR"], locations=[US]))
    answer = await call("get_residency_states", [dataset_id, unique("never-seen")])
    assert [(s.state.value, s.violating_regions) for s in answer.states] == [("violation", (US,)), ("unknown", ())]


async def get_decision(call, server):
    decision = await call("decide", await customers(call), "store", US, context={"ticket": "CHG-42"})
    logged = await call("get_decision", decision.decision_id)
    assert logged.decision == decision and dict(logged.context) == {"ticket": "CHG-42"}
    plain = await call("decide", await customers(call), "store", US)
    assert dict((await call("get_decision", plain.decision_id)).context) == {}
    with pytest.raises(NotFound):
        await call("get_decision", "d-does-not-exist")


async def replay_decision(call, server):
    decision = await call("decide", await customers(call), "store", US)
    replay = await call("replay_decision", decision.decision_id)
    assert replay.matches and replay.original == decision and replay.replayed.outcome is Outcome.DENY


async def list_decisions(call, server):
    dataset_id = await customers(call)
    decision = await call("decide", dataset_id, "store", US)
    page = await call("list_decisions", dataset_id=dataset_id, outcome="deny")
    assert [d.decision.decision_id for d in page.items] == [decision.decision_id]
    assert page.items[0].kind == "decide" and page.items[0].caller and page.items[0].line > 0


async def summarize_decisions(call, server):
    await call("decide", await customers(call), "store", US)
    summary = await call("summarize_decisions", bucket_seconds=3600, since=datetime.now(UTC) - timedelta(hours=1))
    assert summary.complete and sum(b.deny for b in summary.buckets) >= 1


async def summarize_datasets(call, server):
    await customers(call)
    summary = await call("summarize_datasets")
    assert summary.datasets >= 1 and summary.classifications.get("PII.CONTACT", 0) >= 1
    assert summary.regions[FRANKFURT][0] >= 1 and summary.catalog_revision > 0


async def get_decision_log_status(call, server):
    await call("decide", await customers(call), "store", US)
    status = await call("get_decision_log_status")
    assert status.head_line >= 1 and len(status.head_hash) == 64 and status.chain_ok


# ---- PolicyService -------------------------------------------------------------------------


async def set_policy(call, server):
    checked = await call("set_policy", policy_text("2026.12.1"), dry_run=True)
    assert (checked.version, checked.errors, checked.applied, checked.proposal) == ("2026.12.1", (), False, None)
    broken = await call("set_policy", "apiVersion: domicile/v1\nkind: ResidencyPolicy\nrules: 3\n", dry_run=True)
    assert broken.errors and broken.errors[0].line > 0
    version = f"2027.{next(_unique)}.0"
    proposed = await call("set_policy", policy_text(version))  # the server requires approval
    assert not proposed.applied and proposed.proposal is not None
    assert (proposed.proposal.version, proposed.proposal.state) == (version, ProposalState.PENDING)


async def get_policy(call, server):
    policy = await call("get_policy")
    assert policy.version == "2026.12.1" and "gdpr-personal-data" in policy.yaml and len(policy.content_hash) == 64


async def policy_impact(call, server):
    dataset_id = await customers(call)
    impact = await call(
        "policy_impact", policy_text("2027.99.0").replace("id: gdpr-personal-data", "id: gdpr-personal-data-v2")
    )
    assert impact.version == "2027.99.0" and impact.errors == ()
    invalid = await call("policy_impact", "not: a policy")
    assert invalid.errors and invalid.changes == ()
    assert dataset_id  # the catalog it was judged against


async def list_policy_versions(call, server):
    activations = await call("list_policy_versions")
    assert activations[-1].version == "2026.12.1" and activations[-1].activated_time is not None
    assert sum(a.active for a in activations) == 1


async def list_policy_proposals(call, server):
    version = f"2027.{next(_unique)}.0"
    proposal = (await call("set_policy", policy_text(version))).proposal
    pending = await call("list_policy_proposals")
    assert proposal.proposal_id in [p.proposal_id for p in pending]
    assert all(p.state is ProposalState.PENDING for p in pending)


async def approve_policy(call, server):
    version = f"2027.{next(_unique)}.0"
    proposal = (await call("set_policy", policy_text(version))).proposal
    # Another principal approves: the same client library with a token provider of its own.
    second = AsyncClient(
        settings_for(server),
        token_provider=lambda: mint_dev_token(server.app.settings.data_dir, subject=SECOND_ADMIN),
    )
    async with second:
        approved = await second.approve_policy(proposal.proposal_id, comment="reviewed")
    assert approved.applied and approved.proposal.state is ProposalState.APPROVED
    assert approved.proposal.decided_by.endswith(SECOND_ADMIN) or SECOND_ADMIN in approved.proposal.decided_by
    assert (await call("get_policy")).version == version
    # Back to the policy the other scenarios expect (a second proposal, approved the same way).
    restore = (await call("set_policy", policy_text("2026.12.1"))).proposal
    async with AsyncClient(
        settings_for(server),
        token_provider=lambda: mint_dev_token(server.app.settings.data_dir, subject=SECOND_ADMIN),
    ) as second:
        assert (await second.approve_policy(restore.proposal_id)).applied


async def reject_policy(call, server):
    version = f"2027.{next(_unique)}.0"
    proposal = (await call("set_policy", policy_text(version))).proposal
    rejected = await call("reject_policy", proposal.proposal_id, reason="not now")
    assert rejected.proposal.state is ProposalState.REJECTED and rejected.proposal.comment == "not now"
    assert not rejected.applied


# ---- AuditService --------------------------------------------------------------------------


async def list_security_events(call, server):
    await call("set_policy", policy_text(f"2027.{next(_unique)}.0"))  # a proposal is a policy change event
    page = await call("list_security_events", event="policy_change", page_size=5)
    assert page.items and all(e.event == "policy_change" for e in page.items)
    assert page.items[0].time is not None and page.items[0].principal


# ---- AccessService -------------------------------------------------------------------------


async def get_access_patterns(call, server):
    source = await customers(call)
    await call("record_lineage", "airflow-eu/report", run_id(), inputs=[source], run_region=IRELAND)
    await call("decide", source, Operation.STORE, US)
    await server.app.access.flush()
    actors = {a.actor: a for a in await call("get_access_patterns", source)}
    reads = [s for s in actors["airflow-eu/report"].accesses if s.operation is AccessOperation.READ]
    assert [(s.region, s.count) for s in reads] == [(IRELAND, 1)]
    # API calls are the authenticated principal's (the dev token's subject): its catalog write
    # and its question.
    assert [(s.operation, s.region, s.count) for s in actors[DEV_SUBJECT].accesses] == [
        (AccessOperation.CATALOG_WRITE, "", 1),
        (AccessOperation.INTENT_STORE, US, 1),
    ]


async def list_actor_access(call, server):
    source = await customers(call)
    job = f"airflow-eu/report-{next(_unique)}"
    await call("record_lineage", job, "r1", inputs=[source], run_region=IRELAND)
    await server.app.access.flush()
    activity = await call("list_actor_access", job)
    assert [d.dataset_id for d in activity.datasets] == [source]
    assert [(r.run_id, r.run_region) for r in activity.runs] == [("r1", IRELAND)]


async def list_observed_violations(call, server):
    source = await customers(call)
    job = f"risk-us/scoring-{next(_unique)}"
    await call("record_lineage", job, "r1", inputs=[source], run_region=US)
    page = await call("list_observed_violations", page_size=1000)
    mine = [v for v in page.items if v.job == job]
    assert [(v.kind, v.region, v.decision.outcome) for v in mine] == [(FindingKind.POLICY_DENIED, US, Outcome.DENY)]


async def list_access_anomalies(call, server):
    source, card_payments = await customers(call), await payments(call)
    job = f"airflow-eu/rollup-{next(_unique)}"
    now = datetime.now(UTC)
    for days in (20, 10, 5):  # a baseline of EU customer reads, older than its minimum age
        await call(
            "record_lineage",
            job,
            f"r{days}",
            inputs=[source],
            run_region=IRELAND,
            event_time=now - timedelta(days=days),
        )
    await server.app.access.flush()
    await call("record_lineage", job, "today", inputs=[source, card_payments], run_region=IRELAND)
    page = await call("list_access_anomalies")
    mine = [a for a in page.items if a.actor == job]
    assert [(a.kind, a.value, a.dataset_ids) for a in mine] == [
        (AnomalyKind.NEW_CLASSIFICATION_FOR_ACTOR, "FINANCIAL.PAYMENT", (card_payments,))
    ]


SCENARIOS: dict[str, Callable[..., Awaitable[None]]] = {
    "UpsertDataset": upsert_dataset,
    "GetDataset": get_dataset,
    "ListDatasets": list_datasets,
    "DeleteDataset": delete_dataset,
    "ListRegions": list_regions,
    "ListDatasetRevisions": list_dataset_revisions,
    "RecordLineage": record_lineage,
    "GetLineage": get_lineage,
    "EndLineage": end_lineage,
    "Decide": decide,
    "BatchDecide": batch_decide,
    "Route": route,
    "CheckJob": check_job,
    "Explain": explain,
    "ScanViolations": scan_violations,
    "ListViolations": list_violations,
    "GetResidencyStates": get_residency_states,
    "GetDecision": get_decision,
    "ReplayDecision": replay_decision,
    "ListDecisions": list_decisions,
    "SummarizeDecisions": summarize_decisions,
    "SummarizeDatasets": summarize_datasets,
    "GetDecisionLogStatus": get_decision_log_status,
    "SetPolicy": set_policy,
    "GetPolicy": get_policy,
    "PolicyImpact": policy_impact,
    "ListPolicyVersions": list_policy_versions,
    "ListPolicyProposals": list_policy_proposals,
    "ApprovePolicy": approve_policy,
    "RejectPolicy": reject_policy,
    "ListSecurityEvents": list_security_events,
    "GetAccessPatterns": get_access_patterns,
    "ListActorAccess": list_actor_access,
    "ListObservedViolations": list_observed_violations,
    "ListAccessAnomalies": list_access_anomalies,
}


def test_every_rpc_has_a_scenario():
    declared = {method.name for service in SERVICES for method in service.methods}
    assert declared - set(SCENARIOS) == set(), "RPCs without an SDK scenario"
    assert set(SCENARIOS) - declared == set()


@pytest.mark.parametrize("rpc", sorted(SCENARIOS))
async def test_rpc(rpc, call, server):
    await SCENARIOS[rpc](call, server)


async def test_health_and_dataset_iteration(server):
    client = Client(settings_for(server))
    try:
        assert await asyncio.to_thread(client.health) is ServingStatus.SERVING
        namespace = unique("x").rsplit("/", 1)[0]
        for n in range(5):
            await asyncio.to_thread(client.upsert_dataset, Dataset.create(f"{namespace}/d{n}"))
        found = await asyncio.to_thread(lambda: [d.id for d in client.iter_datasets(query=namespace, page_size=2)])
        assert found == [f"{namespace}/d{n}" for n in range(5)]
    finally:
        client.close()
    async with AsyncClient(settings_for(server)) as aclient:
        assert await aclient.health("domicile.v1.ResidencyService") is ServingStatus.SERVING
        assert [d.id async for d in aclient.iter_datasets(query=namespace, page_size=3)] == found
