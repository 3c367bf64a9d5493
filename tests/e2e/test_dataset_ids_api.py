"""Dataset ids over the real API, on every backend: writes need ids that follow the
OpenLineage naming rules and store them in normal form; reads, decisions and lineage find a
dataset under any form the rules call equal; exemptions match by the same rules."""

from __future__ import annotations

import grpc
import pytest

from domicile.app import App
from domicile.catalog.model import Dataset
from domicile.catalog.stores import open_store
from domicile.config import load_settings
from domicile.router.policy_history import PolicyHistory
from domicile.router.runtime import Router
from domicile.router.types import Operation, Outcome
from domicile.v1 import catalog_pb2, lineage_pb2, policy_pb2, residency_pb2
from tests.e2e.residency_harness import EXAMPLE_POLICY, FRANKFURT, US, expect_error

WRITTEN = "S3://Bank-EU-Lake/Customers%7e"
NORMAL = "s3://bank-eu-lake/Customers~"


async def test_writes_store_the_normal_form_and_reads_find_every_equal_form(residency):
    stored = await residency.put(WRITTEN, classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT])
    assert stored.id == NORMAL
    for form in (WRITTEN, NORMAL, "s3://BANK-eu-lake/Customers%7E"):
        got = await residency.catalog.GetDataset(catalog_pb2.GetDatasetRequest(id=form))
        assert got.dataset.id == NORMAL and got.dataset.revision == stored.revision
        decision = await residency.decide(form, US)
        assert decision.dataset_id == NORMAL and decision.outcome == residency_pb2.OUTCOME_DENY
        assert "UNKNOWN_DATASET" not in [r.code for r in decision.reasons]
    # Writing it again under another equal form updates the same dataset.
    again = await residency.put("s3://BANK-EU-LAKE/Customers~", classifications=["PII.CONTACT"], origins=["FR"])
    assert again.id == NORMAL and again.revision > stored.revision
    listed = await residency.catalog.ListDatasets(catalog_pb2.ListDatasetsRequest(query="customers"))
    assert [d.id for d in listed.datasets] == [NORMAL]


async def test_batch_decide_and_residency_states_find_every_equal_form(residency):
    """BatchDecide (decided by the engine from the wire format) and GetResidencyStates find a
    dataset under any equal form, and name it as Decide does: in normal form."""
    await residency.put(NORMAL, classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT, US])
    forms = (WRITTEN, NORMAL, "s3://BANK-eu-lake/Customers%7E")
    requests = [
        residency_pb2.DecideRequest(dataset_id=f, operation=residency_pb2.OPERATION_STORE, region=US) for f in forms
    ]
    batch = await residency.residency.BatchDecide(residency_pb2.BatchDecideRequest(requests=requests))
    single = await residency.decide(WRITTEN, US)
    assert single.dataset_id == NORMAL and "UNKNOWN_DATASET" not in [r.code for r in single.reasons]
    for decision in batch.decisions:
        assert (decision.dataset_id, decision.outcome, decision.reasons) == (
            single.dataset_id,
            single.outcome,
            single.reasons,
        )
    unknown = await residency.residency.BatchDecide(
        residency_pb2.BatchDecideRequest(
            requests=[
                residency_pb2.DecideRequest(
                    dataset_id="S3://Nowhere/X", operation=residency_pb2.OPERATION_STORE, region=US
                )
            ]
        )
    )
    assert (
        unknown.decisions[0].dataset_id == (await residency.decide("S3://Nowhere/X", US)).dataset_id == "s3://nowhere/X"
    )
    assert [r.code for r in unknown.decisions[0].reasons] == ["UNKNOWN_DATASET"]

    states = await residency.residency.GetResidencyStates(residency_pb2.GetResidencyStatesRequest(dataset_ids=forms))
    assert [
        (s.dataset_id, residency_pb2.ResidencyState.Name(s.state), list(s.violating_regions)) for s in states.states
    ] == [(NORMAL, "RESIDENCY_STATE_VIOLATION", [US])] * len(forms)


@pytest.mark.parametrize(
    ("dataset_id", "problem"),
    [
        ("not a dataset", "must not contain whitespace"),
        ("s3://bank eu/x", "must not contain whitespace"),
        ("customers", "is not an OpenLineage dataset id NAMESPACE/NAME"),
        ("s3://bank-eu-lake/customers/", "must not end with '/'"),
        ("s3://bank-eu-lake/100%", "a '%' must start an escape"),
    ],
)
async def test_ids_that_break_the_naming_rules_are_field_violations(residency, dataset_id, problem):
    details = await expect_error(
        residency.catalog.UpsertDataset(
            catalog_pb2.UpsertDatasetRequest(dataset=catalog_pb2.Dataset(id=dataset_id, owner="o"))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [f for f, d in details["field_violations"] if problem in d] == ["dataset.id"]
    details = await expect_error(
        residency.lineage.RecordLineage(
            lineage_pb2.RecordLineageRequest(job="airflow/j", run_id="r", inputs=["s3://ok/in"], outputs=[dataset_id])
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [f for f, d in details["field_violations"] if problem in d] == ["outputs[0]"]
    # A read of such an id is no error: nothing was ever stored under it.
    decision = await residency.decide(dataset_id, US)
    assert [r.code for r in decision.reasons] == ["UNKNOWN_DATASET"]


async def test_lineage_is_recorded_and_read_in_normal_form(residency):
    await residency.put(NORMAL, classifications=["PII.CONTACT"], origins=["DE"])
    await residency.lineage.RecordLineage(
        lineage_pb2.RecordLineageRequest(
            job="airflow/copy", run_id="r1", inputs=[WRITTEN], outputs=["S3://Bank-EU-Lake/copy"]
        )
    )
    lineage = await residency.lineage.GetLineage(
        lineage_pb2.GetLineageRequest(dataset_id="S3://BANK-EU-LAKE/copy", direction=lineage_pb2.DIRECTION_UPSTREAM)
    )
    assert {(e.input, e.output) for e in lineage.edges} == {(NORMAL, "s3://bank-eu-lake/copy")}
    explained = await residency.residency.Explain(residency_pb2.ExplainRequest(dataset_id="S3://Bank-EU-Lake/copy"))
    assert [c.value for c in explained.classifications] == ["PII.CONTACT"]


async def test_exemptions_match_and_are_checked_by_the_same_rules(residency):
    await residency.put(NORMAL, classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT])
    policy = EXAMPLE_POLICY.read_text("utf-8").replace('version: "2026.12.1"', 'version: "2026.12.9"')
    exempted = policy.replace('dataset: "s3://bank-eu/customers"', f'dataset: "{WRITTEN}"')
    assert exempted != policy
    answer = await residency.policy.SetPolicy(policy_pb2.SetPolicyRequest(policy_yaml=exempted))
    assert not answer.errors, answer.errors
    decision = await residency.decide(NORMAL, US, residency_pb2.OPERATION_PROCESS)
    assert decision.outcome == residency_pb2.OUTCOME_ALLOW
    assert [r.code for r in decision.reasons] == ["EXEMPTION_APPLIED"]

    broken = policy.replace('version: "2026.12.9"', 'version: "2026.12.10"').replace(
        'dataset: "s3://bank-eu/customers"', 'dataset: "s3://bank eu/customers"'
    )
    answer = await residency.policy.SetPolicy(policy_pb2.SetPolicyRequest(policy_yaml=broken))
    assert [(e.path, "can match no dataset id" in e.message) for e in answer.errors] == [
        ("exemptions[0].dataset", True)
    ]


async def test_both_forms_stored_by_an_earlier_release_stay_reachable(residency):
    """Two datasets whose ids differ only in a way the rules call equal (written before the
    rules; the migration leaves them alone): each is read and deleted by its exact id."""
    await residency.app.store.upsert_dataset(Dataset.create(WRITTEN, owner="legacy"), principal="old")
    await residency.put(NORMAL, owner="current")
    got = await residency.catalog.GetDataset(catalog_pb2.GetDatasetRequest(id=WRITTEN))
    assert (got.dataset.id, got.dataset.owner) == (WRITTEN, "legacy")
    got = await residency.catalog.GetDataset(catalog_pb2.GetDatasetRequest(id="S3://BANK-EU-LAKE/Customers~"))
    assert (got.dataset.id, got.dataset.owner) == (NORMAL, "current")  # not stored as written: the normal form
    await residency.catalog.DeleteDataset(catalog_pb2.DeleteDatasetRequest(id=WRITTEN))
    assert await residency.app.store.get_dataset(WRITTEN) is None
    assert (await residency.app.store.get_dataset(NORMAL)).owner == "current"


async def test_a_recorded_policy_whose_exemption_breaks_the_rules_keeps_loading(tmp_path):
    """A policy the history recorded before exemption patterns were checked (`customers`, no
    namespace) is still the active policy after a restart and its decisions replay; the same
    text set as a new version is refused."""
    recorded = EXAMPLE_POLICY.read_text("utf-8").replace('version: "2026.12.1"', 'version: "2026.12.7"')
    recorded = recorded.replace('dataset: "s3://bank-eu/customers"', 'dataset: "customers"')
    assert 'dataset: "customers"' in recorded
    history = await PolicyHistory.open(tmp_path)
    await history.record("2026.12.7", recorded)
    history.close()  # (the router owns the history from here)
    settings = load_settings(store=f"sqlite:///{tmp_path / 'catalog.db'}", data_dir=tmp_path, insecure=True)
    store = await open_store(settings.store)
    app = App(settings=settings, store=store)
    app.router = router = await Router.start(app)
    try:
        assert router.get_policy().version == "2026.12.7"
        await store.upsert_dataset(
            Dataset.create(NORMAL, classifications=["PII.CONTACT"], origins=["DE"]), principal="t"
        )
        await router.note_local_write(await store.revision())
        decision = router.decide(NORMAL, Operation.PROCESS, US)
        assert decision.outcome is Outcome.DENY
        assert (await router.replay(decision.decision_id)).matches
        update = await router.set_policy(recorded.replace('version: "2026.12.7"', 'version: "2026.12.8"'))
        assert not update.applied
        assert [e.path for e in update.errors] == ["exemptions[0].dataset"]
    finally:
        await router.close()
        await store.close()
