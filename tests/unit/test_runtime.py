"""Router runtime: start-up sources, following the catalog, failing closed, the policy history.

The catalog is a real SQLite store; `FlakyStore` wraps it to simulate a store that stops
answering the change feed, or that changes while the router reads it at start.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from domicile.app import App
from domicile.catalog.model import Dataset, EdgeKey, Run
from domicile.catalog.stores import common, open_store
from domicile.catalog.stores.common import snapshot_from_pages
from domicile.config import load_settings
from domicile.errors import DomicileError, ErrorCode, store_unavailable
from domicile.router import _engine, catalog_follower
from domicile.router.decision_log import CheckpointSigner, Series, TrustedKeys, verify_series
from domicile.router.decision_log.assembly import checkpoint_key_path
from domicile.router.decision_log.format import decisions_of_line
from domicile.router.engine import Engine, compile_policy
from domicile.router.policy import load_policy
from domicile.router.runtime import DEFAULT_POLICY_YAML, Router
from domicile.router.types import Decision, Operation, Outcome, ReasonCode
from tests.unit.decision_log_helpers import row_ids

EXAMPLE_POLICY = Path(__file__).parents[2] / "examples" / "policy.yaml"
US, FRANKFURT = "aws:us-east-1", "aws:eu-central-1"
# Generous against a loaded test machine (polls every 20 ms must confirm within it), short
# enough to wait out.
STALENESS_BOUND = 1.0
NOW = datetime(2026, 12, 1, tzinfo=UTC)


class FlakyStore:
    """The real store, except that `changes_since` fails while `down` is set, `on_list_page`
    (if set) runs before each `list_datasets` page is answered, and `residency_snapshot` is
    the store's own (`paged` False: SQLite's, one read transaction), followed by
    `after_snapshot` (if set), or the generic one through the listings (`paged`, as Neo4j's)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.down = False
        self.on_list_page = None
        self.pages = 0
        self.paged = False
        self.after_snapshot = None

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def changes_since(self, revision, *, limit=10_000):
        if self.down:
            raise store_unavailable("store unreachable (simulated)")
        return await self.inner.changes_since(revision, limit=limit)

    async def residency_snapshot(self):
        if self.paged:
            return await snapshot_from_pages(self)
        snapshot = await self.inner.residency_snapshot()
        if self.after_snapshot is not None:
            await self.after_snapshot()
        return snapshot

    async def list_datasets(self, filter, page, *, as_of=None):
        self.pages += 1
        if self.on_list_page is not None:
            await self.on_list_page(self.pages)
        return await self.inner.list_datasets(filter, page, as_of=as_of)


async def make_app(tmp_path: Path, *, policy: Path | None = EXAMPLE_POLICY, **router) -> App:
    settings = load_settings(
        store=f"sqlite:///{tmp_path / 'catalog.db'}",
        data_dir=tmp_path,
        policy=policy,
        insecure=True,
        router=router or None,
    )
    return App(settings=settings, store=FlakyStore(await open_store(settings.store)))


async def upsert(app: App, dataset_id: str, **fields) -> int:
    stored = await app.store.inner.upsert_dataset(Dataset.create(dataset_id, **fields))
    await app.after_write(stored.revision)
    return stored.revision


@pytest.fixture
async def started(tmp_path):
    """(app, router) with fast polling and a short staleness bound."""
    app = await make_app(tmp_path, staleness_bound_seconds=STALENESS_BOUND, poll_interval_seconds=0.02)
    app.router = await Router.start(app)
    yield app, app.router
    await app.router.close()
    await app.store.close()


async def wait_until(condition, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def _sync_or_async(call):
    """Call `call`; await what it returns when that is a coroutine."""
    result = call()
    if asyncio.iscoroutine(result):
        await result


async def test_a_view_that_cannot_be_confirmed_fails_closed_and_recovers(started):
    app, router = started
    await upsert(app, "s3://a", locations=[US])
    assert (router.decide("s3://a", Operation.STORE, US)).outcome is Outcome.ALLOW

    app.store.down = True
    await asyncio.sleep(STALENESS_BOUND + 0.2)
    decision = router.decide("s3://a", Operation.STORE, US)
    assert decision.outcome is Outcome.DENY and decision.allowed_regions == ()
    assert [r.code for r in decision.reasons] == [ReasonCode.STALE_CATALOG]
    route = await router.route("s3://a", Operation.STORE, [US, FRANKFURT])
    assert route.region == "" and route.decision.reasons[0].code is ReasonCode.STALE_CATALOG
    job = await router.check_job(["s3://a"], ["s3://b"], US, US)
    assert not job.allowed and all(d.reasons[0].code is ReasonCode.STALE_CATALOG for d in job.decisions)
    for call in (lambda: router.explain("s3://a"), router.scan_violations):
        with pytest.raises(DomicileError) as info:
            await _sync_or_async(call)
        assert info.value.code is ErrorCode.UNAVAILABLE and info.value.reason == "STALE_CATALOG"
    batch = await router.batch_decide([("s3://a", Operation.STORE, US), ("s3://nope", Operation.PROCESS, US)])
    for decision in batch:
        assert decision.outcome is Outcome.DENY and decision.allowed_regions == ()
        assert [r.code for r in decision.reasons] == [ReasonCode.STALE_CATALOG]
    # An unknown region is still a bad request, stale or not.
    with pytest.raises(DomicileError) as info:
        router.decide("s3://a", Operation.STORE, "aws:nowhere-9")
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    with pytest.raises(DomicileError) as info:
        await router.batch_decide([("s3://a", Operation.STORE, US), ("s3://a", Operation.STORE, "aws:nowhere-9")])
    assert [v.field for v in info.value.violations] == ["requests[1].region"]

    app.store.down = False
    for _ in range(300):  # the next successful poll (every 20 ms) confirms the view again
        decision = router.decide("s3://a", Operation.STORE, US)
        if decision.outcome is Outcome.ALLOW:
            break
        assert decision.reasons[0].code is ReasonCode.STALE_CATALOG
        await asyncio.sleep(0.01)
    assert decision.outcome is Outcome.ALLOW


async def test_the_engine_asks_the_follower_once_the_views_freshness_ran_out(started):
    # The engine's decider holds the view's revision and freshness as the follower published
    # them; past that freshness its `decide` hands the question to the router, which asks the
    # follower whether the view is stale (then DENY / STALE_CATALOG) or fresh after all (a
    # real decision).
    app, router = started
    revision = await upsert(app, "s3://a", locations=[US])
    decider = router._decider
    decider.set_view(revision, 0.0)  # ran out, while the follower still finds the view fresh
    decision = router.decide("s3://a", Operation.STORE, US, caller="alice")
    assert decision.outcome is Outcome.ALLOW and decision.catalog_revision == revision
    stale = decider.decide_as("s3://a", Operation.STORE, US, "alice", None, "fail closed: asked")
    assert [(r.code, r.message) for r in stale.reasons] == [(ReasonCode.STALE_CATALOG, "fail closed: asked")]
    ids = [decision.decision_id, stale.decision_id]
    assert ids == [f"{ids[0][:-10]}{int(ids[0][-10:], 16) + n:010x}" for n in range(2)]  # one counter


async def test_the_engines_decide_hands_what_it_cannot_decide_alone_to_the_router(started):
    app, router = started
    revision = await upsert(app, "s3://a", locations=[US])
    asked = []

    def undecided(*question):
        asked.append(question)
        return "the router's"

    decider = router._engine.unary_decider(router._lane, undecided, None)
    decider.set_view(revision, 0.0)
    assert decider.decide("s3://a", Operation.STORE, US, caller="alice") == "the router's"  # freshness ran out
    decider.set_view(revision, 60.0)
    assert decider.decide("s3://a", Operation.STORE, US, {"dag": "d"}) == "the router's"  # facts to log
    assert decider.decide("s3://a", Operation.STORE, "aws:nowhere-9") == "the router's"  # its error to raise
    assert asked == [
        ("s3://a", Operation.STORE, US, None, "alice"),
        ("s3://a", Operation.STORE, US, {"dag": "d"}, ""),
        ("s3://a", Operation.STORE, "aws:nowhere-9", None, ""),
    ]
    decision = decider.decide("s3://a", Operation.STORE, US, {}, caller="bob")
    assert (decision.outcome, decision.caller, decision.catalog_revision) == (Outcome.ALLOW, "bob", revision)
    assert len(asked) == 3


async def test_a_local_write_not_yet_applied_fails_closed_until_caught_up(tmp_path):
    # No background poll within the test: only note_local_write moves the index.
    app = await make_app(tmp_path, staleness_bound_seconds=120, poll_interval_seconds=60)
    app.router = router = await Router.start(app)
    try:
        await upsert(app, "s3://a")
        assert (router.decide("s3://a", Operation.STORE, US)).outcome is Outcome.ALLOW
        app.store.down = True
        revision = await upsert(app, "s3://a", classifications=["PII"], origins=["DE"])  # does not raise
        assert router.catalog_revision < revision
        decision = router.decide("s3://a", Operation.STORE, US)
        assert decision.reasons[0].code is ReasonCode.STALE_CATALOG
        app.store.down = False
        await app.after_write(revision)
        decision = router.decide("s3://a", Operation.STORE, US)
        assert decision.catalog_revision == revision
        assert [r.rule_id for r in decision.reasons] == ["gdpr-personal-data"]
    finally:
        await router.close()
        await app.store.close()


async def test_a_large_batch_is_applied_aside_while_decisions_use_the_view_before_it(tmp_path, monkeypatch):
    app = await make_app(tmp_path, staleness_bound_seconds=120, poll_interval_seconds=60)
    app.router = router = await Router.start(app)
    try:
        await upsert(app, "s3://in", classifications=["PII"], origins=["DE"])
        monkeypatch.setattr(catalog_follower, "_APPLY_ASIDE", 3)
        applying, release = threading.Event(), threading.Event()
        apply = router._engine.apply

        def held_apply(changes):
            applying.set()
            assert release.wait(30), "the apply held the event loop"
            return apply(changes)

        monkeypatch.setattr(router._engine, "apply", held_apply)
        edges = [EdgeKey("s3://in", f"s3://out{i}", "etl/copy") for i in range(3)]
        result = await app.store.inner.record_lineage(Run(job="etl/copy", run_id="r1"), edges)
        write = asyncio.create_task(app.after_write(result.revision))
        assert await asyncio.to_thread(applying.wait, 30)
        # Meanwhile: the view before the batch answers, not stale; the write is not acknowledged.
        decision = router.decide("s3://out0", Operation.STORE, US)
        assert decision.catalog_revision < result.revision
        assert [r.code for r in decision.reasons] == [ReasonCode.UNKNOWN_DATASET]
        # A policy switch waits for the batch rather than racing it.
        deny_undescribed = (
            EXAMPLE_POLICY.read_text()
            .replace("undescribed_outputs: inherit", "undescribed_outputs: deny")
            .replace('version: "2026.12.1"', 'version: "2026.12.2"')
        )
        switch = asyncio.create_task(router.set_policy(deny_undescribed))
        await asyncio.sleep(0.1)
        assert not write.done() and not switch.done()
        release.set()
        await write
        assert router.catalog_revision == result.revision
        assert (await switch).applied
        assert not router.policy.inherits_undescribed_outputs
        decision = router.decide("s3://out0", Operation.STORE, US)
        assert [r.code for r in decision.reasons] == [ReasonCode.UNKNOWN_DATASET]  # no longer inherits
        await router.set_policy(EXAMPLE_POLICY.read_text().replace('version: "2026.12.1"', 'version: "2026.12.3"'))
        decision = router.decide("s3://out0", Operation.STORE, US)
        assert decision.inherited_only and [r.rule_id for r in decision.reasons] == ["gdpr-personal-data"]
    finally:
        await router.close()
        await app.store.close()


async def test_changes_by_other_processes_arrive_through_the_feed(started):
    app, router = started
    revision = (
        await app.store.inner.upsert_dataset(Dataset.create("s3://b", classifications=["PII"], origins=["FR"]))
    ).revision
    await wait_until(lambda: router.catalog_revision >= revision)
    assert (router.decide("s3://b", Operation.STORE, US)).reasons[0].rule_id == "gdpr-personal-data"


async def test_start_reads_every_page_and_repairs_writes_made_during_the_read(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "SNAPSHOT_PAGE_SIZE", 2)
    app = await make_app(tmp_path)
    app.store.paged = True
    store = app.store.inner
    for name in "abcde":
        await store.upsert_dataset(Dataset.create(f"s3://{name}"))
    await store.record_lineage(Run("j", "r1"), [EdgeKey("s3://a", "s3://e", "j")])

    async def write_during_read(page: int) -> None:
        if page == 2:  # "a" was read on page 1; change it, delete "b", add an edge
            await store.upsert_dataset(Dataset.create("s3://a", classifications=["PII"], origins=["DE"]))
            await store.delete_dataset("s3://b")
            await store.record_lineage(Run("k", "r2"), [EdgeKey("s3://a", "s3://d", "k")])

    app.store.on_list_page = write_during_read
    router = await Router.start(app)
    try:
        assert app.store.pages == 3
        assert router.catalog_revision == await store.revision()
        for dataset_id in ("s3://a", "s3://d", "s3://e"):
            decision = router.decide(dataset_id, Operation.STORE, US)
            assert [r.rule_id for r in decision.reasons] == ["gdpr-personal-data"], dataset_id
        assert (router.decide("s3://b", Operation.STORE, US)).reasons[0].code is ReasonCode.UNKNOWN_DATASET
        assert (router.decide("s3://c", Operation.STORE, US)).outcome is Outcome.ALLOW
    finally:
        await router.close()
        await app.store.close()


async def test_start_applies_what_changed_after_the_snapshot(tmp_path):
    app = await make_app(tmp_path)
    store = app.store.inner
    for name in "abce":
        await store.upsert_dataset(Dataset.create(f"s3://{name}"))
    await store.record_lineage(Run("j", "r1"), [EdgeKey("s3://a", "s3://c", "j")])
    await store.record_lineage(Run("m", "r1"), [EdgeKey("s3://a", "s3://e", "m")])

    async def write_after_snapshot() -> None:
        await store.upsert_dataset(Dataset.create("s3://a", classifications=["PII"], origins=["DE"]))
        await store.delete_dataset("s3://b")
        await store.record_lineage(Run("k", "r2"), [EdgeKey("s3://a", "s3://d", "k")])
        await store.end_edges([EdgeKey("s3://a", "s3://c", "j")])
        # Ended and recorded again with the same transform: a new version of a snapshot edge.
        await store.end_edges([EdgeKey("s3://a", "s3://e", "m")])
        await store.record_lineage(Run("m", "r2"), [EdgeKey("s3://a", "s3://e", "m")])

    app.store.after_snapshot = write_after_snapshot
    router = await Router.start(app)
    try:
        assert router.catalog_revision == await store.revision()
        assert [r.rule_id for r in (router.decide("s3://a", Operation.STORE, US)).reasons] == ["gdpr-personal-data"]
        # "d" is a placeholder lineage derived from "a": it inherits a's labels and origins.
        derived = router.decide("s3://d", Operation.STORE, US)
        assert [r.rule_id for r in derived.reasons] == ["gdpr-personal-data"] and derived.inherited_only
        assert (router.decide("s3://b", Operation.STORE, US)).reasons[0].code is ReasonCode.UNKNOWN_DATASET
        assert (router.decide("s3://c", Operation.STORE, US)).outcome is Outcome.ALLOW  # edge ended
        assert [r.rule_id for r in (router.decide("s3://e", Operation.STORE, US)).reasons] == ["gdpr-personal-data"]
    finally:
        await router.close()
        await app.store.close()


async def test_start_policy_default_then_history_then_file(tmp_path):
    app = await make_app(tmp_path, policy=None)
    app.router = router = await Router.start(app)
    try:
        assert router.get_policy().yaml == DEFAULT_POLICY_YAML
        await upsert(app, "s3://labelled", classifications=["INTERNAL"])
        await upsert(app, "s3://plain")
        denied = router.decide("s3://labelled", Operation.PROCESS, FRANKFURT)
        assert [r.code for r in denied.reasons] == [ReasonCode.DEFAULT_DENIED]
        assert (router.decide("s3://plain", Operation.STORE, US)).outcome is Outcome.ALLOW
        assert (await router.set_policy(EXAMPLE_POLICY.read_text("utf-8"))).applied
        old_decision = denied.decision_id
    finally:
        await router.close()

    # Restart without a policy file: the policy last set is active again, and a decision made
    # under the builtin default can still be replayed.
    router = await Router.start(app)
    try:
        assert router.get_policy().version == "2026.12.1"
        replay = await router.replay(old_decision)
        assert replay.matches and replay.replayed.policy_version == "builtin-default-1"
    finally:
        await router.close()
        await app.store.close()


async def test_a_bad_policy_file_stops_start_with_its_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE_POLICY.read_text("utf-8").replace("exemptible: false", "exemptable: false", 1), "utf-8")
    app = await make_app(tmp_path, policy=bad)
    try:
        with pytest.raises(DomicileError) as info:
            await Router.start(app)
        assert info.value.code is ErrorCode.FAILED_PRECONDITION
        assert f"{bad}:" in str(info.value) and "exemptable" in str(info.value)
    finally:
        await app.store.close()


async def test_a_policy_file_reusing_a_recorded_version_with_other_text_stops_start(tmp_path):
    app = await make_app(tmp_path)
    await (await Router.start(app)).close()
    changed = tmp_path / "changed.yaml"
    changed.write_text(EXAMPLE_POLICY.read_text("utf-8").replace("SANCTIONED: [RU,", "SANCTIONED: [VE, RU,"), "utf-8")
    second = await make_app(tmp_path, policy=changed)
    try:
        with pytest.raises(DomicileError) as info:
            await Router.start(second)
        assert info.value.reason == "POLICY_VERSION_CONFLICT"
    finally:
        await app.store.close()
        await second.store.close()


async def test_durable_decisions_are_in_the_log_after_a_restart(tmp_path):
    app = await make_app(tmp_path, durable_decision_log=True)
    app.router = router = await Router.start(app)
    try:
        await upsert(app, "s3://a")
        decision = router.decide("s3://a", Operation.STORE, US)
    finally:
        await router.close()
    router = await Router.start(app)
    try:
        assert (await router.get_decision(decision.decision_id)).decision == decision
    finally:
        await router.close()
        await app.store.close()


JOB_POLICY = """\
apiVersion: domicile/v1
kind: ResidencyPolicy
metadata: {name: job-check, version: "1"}
defaults: {classified: allow, unclassified: allow}
rules:
  - {id: pii, match: {classifications: [PII]}, store: {deny: [US]}}
  - {id: payment, match: {classifications: [FINANCIAL.PAYMENT]}, store: {deny: [US]}}
  - {id: internal, match: {classifications: [INTERNAL]}, store: {deny: [US]}}
  - {id: india, match: {origins: [IN]}, store: {deny: [US]}}
declassifiers:
  - {transform: anonymize, removes: [PII], jobs: ["airflow-eu/anonymize_*"]}
"""


def test_a_job_output_inherits_its_inputs_minus_what_a_granted_transform_removes_plus_its_own():
    engine = Engine(compile_policy(load_policy(JOB_POLICY)))
    engine.add(
        [
            Dataset.create("in1", classifications=["PII.CONTACT", "FINANCIAL.PAYMENT"], origins=["DE"]),
            Dataset.create("in2", origins=["IN"]),
            Dataset.create("out", classifications=["INTERNAL"], locations=[US]),
        ],
        [],
    )

    def output_reasons(inputs, output, transform, job):
        *_, (dataset, op, region, verdict) = engine.check_job(inputs, [output], FRANKFURT, US, transform, job, NOW)
        assert (dataset, op, region) == (output, Operation.STORE, US)
        return verdict, {r.rule_id: r.lineage_path for r in verdict.reasons}

    granted = "airflow-eu/anonymize_customers"
    verdict, paths = output_reasons(["in1", "in2"], "out", "anonymize", granted)
    assert paths == {"payment": ("in1", "out"), "internal": ("out",), "india": ("in2", "out")}
    assert not verdict.inherited_only
    # An input the catalog does not describe: the output would carry that doubt (fail closed).
    verdict, _ = output_reasons(["in1", "in2", "missing"], "out", "anonymize", granted)
    assert verdict.outcome is Outcome.DENY
    assert [(r.code, r.lineage_path) for r in verdict.reasons] == [(ReasonCode.UNKNOWN_DATASET, ("missing", "out"))]
    # A new output is a derived placeholder: judged by what it inherits.
    verdict, paths = output_reasons(["in1"], "new", "", "")
    assert set(paths) == {"pii", "payment"} and verdict.inherited_only
    # A claimed transform is honoured only for a job the policy grants it, and never without one.
    for job in ("", "airflow-us/anonymize_customers"):
        _, paths = output_reasons(["in1"], "out", "anonymize", job)
        assert "pii" in paths, job


async def test_decisions_carry_every_field_under_its_name(tmp_path):
    # Router.decide and batch_decide build Decision tuples positionally (the hot path): each
    # field must land under its own name, and an unknown region stays a bad request whether
    # the engine (known dataset) or the router (unknown dataset) notices it.
    app = await make_app(tmp_path)
    app.router = router = await Router.start(app)
    try:
        await upsert(app, "s3://a", classifications=["PII"], origins=["DE"], locations=[US])
        made = [
            router.decide("s3://a", Operation.STORE, US),
            *await router.batch_decide([("s3://a", Operation.PROCESS, FRANKFURT)]),
            (await router.route("s3://a", Operation.STORE, [US])).decision,
        ]
        for dataset_id in ("s3://a", "s3://unknown"):
            with pytest.raises(DomicileError) as info:
                router.decide(dataset_id, Operation.STORE, "aws:nowhere-9")
            assert info.value.code is ErrorCode.INVALID_ARGUMENT
            assert [v.field for v in info.value.violations] == ["region"]
    finally:
        await router.close()
        await app.store.close()
    questions = [(Operation.STORE, US), (Operation.PROCESS, FRANKFURT), (Operation.STORE, US)]
    for decision, (op, region) in zip(made, questions, strict=True):
        verdict = router._engine.decide("s3://a", op, region, decision.decide_time)
        assert decision == Decision(
            decision_id=decision.decision_id,
            outcome=verdict.outcome,
            dataset_id="s3://a",
            operation=op,
            region=region,
            allowed_regions=verdict.allowed_regions,
            reasons=verdict.reasons,
            policy_version=router.get_policy().version,
            catalog_revision=router.catalog_revision,
            decide_time=decision.decide_time,
            caller="",
        )
        assert decision.decide_time.tzinfo is not None
    ids = [d.decision_id for d in made]
    replica, prefix = ids[0].split(":")[0], ids[0].split(":")[1][:12]
    assert ids == [f"{replica}:{prefix}{n:010x}" for n in range(1, 4)]
    assert made[0].outcome is Outcome.DENY and made[0].reasons  # the test exercises the DENY path


async def test_every_kind_of_decision_is_logged_with_its_question_and_policy(tmp_path):
    app = await make_app(tmp_path)
    app.router = router = await Router.start(app)
    try:
        await upsert(app, "s3://a", classifications=["PII"], origins=["DE"], locations=[US])
        router.decide("s3://a", Operation.STORE, US)
        await router.logged()
        await router.batch_decide([("s3://a", Operation.PROCESS, FRANKFURT), ("s3://x", Operation.STORE, US)])
        await router.route("s3://a", Operation.STORE, [US, FRANKFURT])
        await router.check_job(["s3://a"], ["s3://out"], FRANKFURT, US, "anonymize", "airflow-eu/anonymize_a")
        await router.scan_violations()
        policy_hash = router.get_policy().content_hash
    finally:
        await router.close()
        await app.store.close()
    signer = CheckpointSigner.from_file(checkpoint_key_path(app.settings))
    report = verify_series(Series(app.settings.decision_log_path).files(), TrustedKeys([signer.public_key]))
    assert report.ok and report.checkpoints >= 1  # (one at close)
    # (entry, decision row) pairs, in the order logged, whatever lines they fell into.
    logged = [
        (entry, row)
        for line in app.settings.decision_log_path.read_bytes().split(b"\n")[:-1]  # lines are UTF-8
        for entry in json.loads(line).get("entries", ())
        for row in entry["decisions"]
    ]
    assert [(entry["kind"], row[1], row[4]) for entry, row in logged] == [
        ("decide", "s3://a", "deny"),
        ("batch_decide", "s3://a", "allow"),
        ("batch_decide", "s3://x", "deny"),
        ("route", "s3://a", "allow"),
        ("check_job", "s3://a", "allow"),
        ("check_job", "s3://out", "allow"),
        ("scan_violations", "s3://a", "deny"),
    ]
    assert {request["policy_hash"] for request, _ in logged} == {policy_hash}
    assert logged[5][0]["context"] == {
        "check_job_inputs": "s3://a",
        "check_job_job": "airflow-eu/anonymize_a",
        "check_job_transform": "anonymize",
    }
    assert "context" not in logged[4][0]


async def test_a_batch_that_cannot_be_logged_is_not_answered(started):
    app, router = started
    await upsert(app, "s3://a", locations=[US])
    decisions = await router.batch_decide([("s3://a", Operation.STORE, US), ("s3://nope", Operation.STORE, US)])
    assert [d.outcome for d in decisions] == [Outcome.ALLOW, Outcome.DENY]
    await router._log.close()
    with pytest.raises(DomicileError) as info:
        await router.batch_decide([("s3://a", Operation.STORE, US)])
    assert info.value.code is ErrorCode.UNAVAILABLE


async def test_observed_flows_behind_a_finding_are_on_disk_before_it_is_answered(tmp_path):
    # An auditor must find the decision behind every finding the service reported; ALLOWs,
    # which nobody is answered from, go with the next write somebody waits for, or the timer.
    app = await make_app(tmp_path, durable_decision_log=True)
    app.router = router = await Router.start(app)
    on_disk = app.settings.decision_log_path
    log, waits = router._log, []
    flush = log.flush

    async def counted_flush():
        await flush()
        waits.append(on_disk.read_text())

    log.flush = counted_flush
    try:
        await upsert(app, "s3://eu", classifications=["PII.CONTACT"], origins=["DE"])
        context = {"observed_job": "etl/nightly", "observed_run_id": "r1"}
        assert await router.judge_observed([("s3://eu", Operation.PROCESS, FRANKFURT)], context) == []
        assert waits == []
        (denied,) = await router.judge_observed(
            [("s3://eu", Operation.PROCESS, FRANKFURT), ("s3://eu", Operation.PROCESS, US)], context
        )
        assert (denied.outcome, denied.region) == (Outcome.DENY, US)
        # The DENY's answer waited for its run's decisions and everything held before them:
        # the ALLOW before it, and the one asked beside it.
        assert len(waits) == 1
        logged = observed_in(on_disk, context)
        assert [(d.region, d.outcome) for d in logged] == [
            (FRANKFURT, Outcome.ALLOW),
            (FRANKFURT, Outcome.ALLOW),
            (US, Outcome.DENY),
        ]
        assert logged[-1] == denied
        assert await router.judge_observed([("s3://eu", Operation.STORE, FRANKFURT)], context) == []
        assert len(waits) == 1
        # Nobody waits for it: the writer's timer writes it (within its flush interval; the
        # deadline here only bounds a hung test).
        deadline = time.monotonic() + 30
        while len(observed_in(on_disk, context)) < 4:
            assert time.monotonic() < deadline, "a held decision was never written"
            await asyncio.sleep(0.01)
        assert len(waits) == 1
    finally:
        await router.close()
        await app.store.close()


async def test_large_batches_are_decided_off_the_event_loop_and_logged_alike(tmp_path):
    """A large BatchDecide is decided on the router's batch threads, not on the event loop;
    batches decided side by side get ids of their own, every decision is logged once with
    the policy that made it, and a small batch is decided on the loop as before."""
    from domicile.router import runtime
    from domicile.v1 import residency_pb2

    app = await make_app(tmp_path)
    app.router = router = await Router.start(app)
    threads: set[str] = set()
    decide_wire = router._engine.batch_decide_wire

    def recorded(*args, **kwargs):
        threads.add(threading.current_thread().name)
        return decide_wire(*args, **kwargs)

    router._engine.batch_decide_wire = recorded
    try:
        await upsert(app, "s3://a", classifications=["PII"], origins=["DE"])
        large = residency_pb2.BatchDecideRequest(
            requests=[
                residency_pb2.DecideRequest(
                    dataset_id="s3://a" if n % 2 else f"s3://unknown/{n}", operation=1, region=(US, FRANKFURT)[n % 2]
                )
                for n in range(3_000)
            ]
        ).SerializeToString()
        assert len(large) >= runtime._OFF_LOOP_REQUEST_BYTES
        answers = await asyncio.gather(*(router.batch_decide_wire(large, 10_000, caller=f"c{n}") for n in range(4)))
        assert threads and all(name.startswith("batch-decide") for name in threads)
        threads.clear()
        small = residency_pb2.BatchDecideRequest(
            requests=[residency_pb2.DecideRequest(dataset_id="s3://a", operation=1, region=US)]
        ).SerializeToString()
        await router.batch_decide_wire(small, 10_000)
        assert threads == {threading.current_thread().name}
        policy_hash = router.get_policy().content_hash
    finally:
        await router.close()
        await app.store.close()
    for answer, decisions in answers:
        response = residency_pb2.BatchDecideResponse.FromString(answer)
        assert [d.decision_id for d in response.decisions] == [d.decision_id for d in decisions]
        assert [d.outcome for d in response.decisions[:2]] == [residency_pb2.OUTCOME_DENY, residency_pb2.OUTCOME_ALLOW]
    ids = [d.decision_id for _, decisions in answers for d in decisions]
    assert len(set(ids)) == len(ids) == 12_000
    logged = [
        (entry["caller"], entry["policy_hash"], row[0])
        for line in app.settings.decision_log_path.read_bytes().split(b"\n")[:-1]
        for entry in json.loads(line).get("entries", ())
        if entry["kind"] == "batch_decide"
        for row in entry["decisions"]
    ]
    assert len(logged) == 12_001 and {h for _, h, _ in logged} == {policy_hash}
    assert Counter(caller for caller, _, _ in logged) == Counter(
        {"c0": 3000, "c1": 3000, "c2": 3000, "c3": 3000, "": 1}
    )
    assert {decision_id for _, _, decision_id in logged} >= set(ids)


def observed_in(path: Path, context: dict[str, str]) -> list[Decision]:
    """The observed-flow decisions logged with `context` in the log at `path`, in order."""
    lines = [
        line for line in path.read_bytes().splitlines(keepends=True) if line.endswith(b"\n")
    ]  # not one being written
    logged = [d for line in lines for d in decisions_of_line(line)]
    return [d.decision for d in logged if d.kind == "observed_flow" and d.context == context]


def tallied(tally: _engine.IntentTally) -> Counter:
    """What `tally` counted, per (actor, dataset, operation, region) (all at one time here)."""
    return Counter({(actor, dataset, op, region): n for actor, dataset, op, region, n, *_ in tally.take()})


def new_tally() -> _engine.IntentTally:
    return _engine.IntentTally(("intent_store", "intent_process"), "(unauthenticated)")


async def test_a_batch_decides_intents_are_counted_as_its_decisions_say(tmp_path):
    from domicile.router.decision_log import count_intents
    from domicile.v1 import residency_pb2

    app = await make_app(tmp_path)
    app.router = router = await Router.start(app)
    try:
        await upsert(app, "s3://a", classifications=["PII"], origins=["DE"])
        await upsert(app, "s3://b")
        questions = [("s3://a", US), ("s3://b", FRANKFURT), ("s3://a", US), ("s3://unknown", US)] * 3
        request = residency_pb2.BatchDecideRequest(
            requests=[
                residency_pb2.DecideRequest(dataset_id=d, operation=residency_pb2.OPERATION_STORE, region=r)
                for d, r in questions
            ]
        )
        _, batch = await router.batch_decide_wire(request.SerializeToString(), 100, caller="alice")
        single = router.decide("s3://b", Operation.PROCESS, US)
    finally:
        await router.close()
        await app.store.close()
    every = Counter((d.caller, d.dataset_id, "intent_store", d.region) for d in batch)
    assert every[("alice", "s3://a", "intent_store", US)] == 6
    # The batch's intents are counted by the engine, a queued single decision's from its Decision
    # (without a caller: the anonymous actor's).
    single = Decision(*(getattr(single, field) for field in Decision._fields))
    assert single.caller == ""
    tally = new_tally()
    count_intents([(batch, None, "batch_decide", "h"), (single, None, "decide", "h")], tally, 1_000_000)
    assert tallied(tally) == every + Counter({("(unauthenticated)", "s3://b", "intent_process", US): 1})
    count_intents([(batch, None, "observed_flow", "h")], tally, 1_000_000)
    assert len(tally) == 0


async def test_decide_hands_its_intents_to_the_sink_through_the_engine(tmp_path):
    # Decide's decisions reach the log through the engine's lane, which counts their intents.
    app = await make_app(tmp_path)
    app.router = router = await Router.start(app)
    tally = new_tally()
    router.set_intent_sink(tally)
    try:
        await upsert(app, "s3://a")
        for caller in ("alice", "alice", "bob"):
            router.decide("s3://a", Operation.STORE, US, caller=caller)
        router.decide("s3://a", Operation.PROCESS, FRANKFURT, caller="alice")
        await router.flush_decision_log()
    finally:
        await router.close()
        await app.store.close()
    assert tallied(tally) == {
        ("alice", "s3://a", "intent_store", US): 2,
        ("bob", "s3://a", "intent_store", US): 1,
        ("alice", "s3://a", "intent_process", FRANKFURT): 1,
    }


async def test_decide_is_refused_while_the_log_cannot_write_and_logged_once_it_can(tmp_path):
    # A Decide whose decision cannot be logged is not answered (`logged` raises): while the log
    # cannot write, the engine's lane takes no decision (nothing is decided), and the log
    # resumes by itself.
    app = await make_app(tmp_path, durable_decision_log=True)
    app.router = router = await Router.start(app)
    log = router._log
    real = os.dup(log._file._fd)
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        await upsert(app, "s3://a")
        answered = [(router.decide("s3://a", Operation.STORE, US)).decision_id]
        os.dup2(full, log._file._fd)  # every write now fails with ENOSPC, like a full disk
        made = router.decide("s3://a", Operation.STORE, US)
        with pytest.raises(DomicileError) as unwritten:  # made, but its line is not durable
            await router.logged()
        assert made.outcome is Outcome.ALLOW
        assert unwritten.value.code is ErrorCode.UNAVAILABLE
        assert unwritten.value.reason == "DECISION_LOG_UNWRITABLE"
        with pytest.raises(DomicileError) as refused:  # refused at once: nothing decided
            router.decide("s3://a", Operation.STORE, US)
        assert refused.value.reason == "DECISION_LOG_UNWRITABLE"
        os.dup2(real, log._file._fd)
        for _ in range(1500):  # the writer retries with backoff (at most 5 s apart)
            if not log.failure():
                break
            await asyncio.sleep(0.02)
        answered.append((router.decide("s3://a", Operation.STORE, US)).decision_id)
    finally:
        os.close(full)
        os.close(real)
        await router.close()
        await app.store.close()
    logged = row_ids(log.path)
    # The decision queued before the fault is written once it cleared; the refused one never was.
    assert len(logged) == 3 and logged[0] == answered[0] and logged[2] == answered[1]
    signer = CheckpointSigner.from_file(checkpoint_key_path(app.settings))
    assert verify_series(Series(log.path).files(), TrustedKeys([signer.public_key])).ok


async def test_decisions_beyond_a_full_lane_wait_for_the_writer(tmp_path, monkeypatch):
    # Backpressure: a Decide finding the engine's lane full waits until the log writer takes
    # it, as an append to a full queue does; every decision is answered and logged.
    from domicile.router.decision_log import assembly
    from domicile.router.decision_log.writer import DecisionLog

    class SmallQueue(DecisionLog):
        @classmethod
        async def open(cls, path, **options):
            return await super().open(path, max_queue=2, flush_interval=0.5, **options)

    monkeypatch.setattr(assembly, "DecisionLog", SmallQueue)
    app = await make_app(tmp_path, durable_decision_log=False)
    app.router = router = await Router.start(app)
    try:
        await upsert(app, "s3://a")
        answered = [(router.decide("s3://a", Operation.STORE, US)).decision_id for _ in range(7)]
        await router.flush_decision_log()
    finally:
        await router.close()
        await app.store.close()
    assert row_ids(router._log.path) == answered
