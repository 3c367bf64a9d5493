"""The violations the router keeps up to date (router/violations.py): after any sequence of
catalog, lineage and policy changes they equal a judgement of the whole catalog by an engine
built from scratch,
and an exemption that expires brings its violation back. A real SQLite store behind a real
router."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domicile.app import App
from domicile.catalog.model import Dataset, EdgeKey, Run
from domicile.catalog.stores import open_store
from domicile.config import load_settings
from domicile.router import runtime, violations
from domicile.router.engine import Engine
from domicile.router.runtime import Router
from domicile.router.violations import ResidencyState

EXAMPLE_POLICY = Path(__file__).parents[2] / "examples" / "policy.yaml"
US, FRANKFURT, MUMBAI, MOSCOW = "aws:us-east-1", "aws:eu-central-1", "aws:ap-south-1", "onprem:msk-dc1"


async def make_router(tmp_path: Path, policy: Path = EXAMPLE_POLICY, clock=None) -> tuple[App, Router]:
    settings = load_settings(
        store=f"sqlite:///{tmp_path / 'catalog.db'}", data_dir=tmp_path, policy=policy, insecure=True
    )
    app = App(settings=settings, store=await open_store(settings.store))
    app.router = await Router.start(app, **({"clock": clock} if clock else {}))
    return app, app.router


async def judged_from_scratch(app: App, router: Router) -> list[tuple[str, str, tuple[str, ...]]]:
    """Every violation, judged by an engine built afresh from the store."""
    engine = Engine(router.policy)
    engine.load(await app.store.residency_snapshot())
    found = engine.scan_violations(datetime.now(UTC))
    return [(dataset_id, region, tuple(r.rule_id for r in verdict.reasons)) for dataset_id, region, verdict in found]


async def listed(router: Router) -> list[tuple[str, str, tuple[str, ...]]]:
    """Every violation, as ListViolations reads them once the router has judged everything."""
    page = await router.list_violations("", 10_000, "")
    while page.datasets_to_judge:
        page = await router.list_violations("", 10_000, "")
    assert not page.next_page_token and page.total == len(page.violations)
    assert sum(page.by_region.values()) == page.total
    return [(v.dataset_id, v.region, tuple(r.rule_id for r in v.verdict.reasons)) for v in page.violations]


@pytest.mark.parametrize("chunk", [1_000, 2])
async def test_kept_violations_equal_a_judgement_from_scratch_after_every_change(tmp_path, monkeypatch, chunk):
    """With small chunks, a read is under way (between two chunks) while each change lands."""
    monkeypatch.setattr(violations, "CHUNK", chunk)
    rng = random.Random(20)
    app, router = await make_router(tmp_path)
    ids = [f"s3://lake/d{i}" for i in range(10)]
    labels = ["PII.CONTACT", "FINANCIAL.PAYMENT", "INTERNAL"]
    jobs = [("airflow-eu/anonymize_x", "anonymize"), ("airflow-in/daily_rollup", "aggregate"), ("other/copy", "")]
    strict = EXAMPLE_POLICY.read_text("utf-8").replace('version: "2026.12.1"', 'version: "strict"')
    strict = strict.replace('jobs: ["airflow-eu/anonymize_*"]', 'jobs: ["nobody/*"]')
    policies = [EXAMPLE_POLICY.read_text("utf-8"), strict]
    assert policies[0] != policies[1]
    store = app.store
    try:
        for step in range(80):
            reading = asyncio.create_task(router.list_violations("", 10_000, ""))
            await asyncio.sleep(0)
            action = rng.random()
            if action < 0.45:
                await store.upsert_dataset(
                    Dataset.create(
                        rng.choice(ids),
                        classifications=rng.sample(labels, rng.randint(0, 2)),
                        origins=rng.sample(["DE", "IN", "US"], rng.randint(0, 2)),
                        locations=rng.sample([US, FRANKFURT, MUMBAI, MOSCOW], rng.randint(0, 2)),
                    )
                )
            elif action < 0.75:
                job, transform = rng.choice(jobs)
                inputs, output = rng.sample(ids, 2), rng.choice(ids)
                run = Run(job, f"run-{step}", FRANKFURT, transform)
                await store.record_lineage(run, [EdgeKey(i, output, job) for i in inputs if i != output])
            elif action < 0.85:
                dataset = await store.get_dataset(rng.choice(ids))
                if dataset is not None and not dataset.placeholder:
                    await store.delete_dataset(dataset.id)
            elif action < 0.93:
                job, _ = rng.choice(jobs)
                await store.end_edges([EdgeKey(rng.choice(ids), rng.choice(ids), job)])
            else:
                assert (await router.set_policy(rng.choice(policies))).applied
            await app.after_write(await store.revision())
            await reading
            assert await listed(router) == await judged_from_scratch(app, router), f"step {step}"
        assert await listed(router), "the sequence should leave some violations to compare"
    finally:
        await router.close()
        await store.close()


async def test_an_expired_exemption_brings_its_violation_back(tmp_path):
    expires = datetime(2030, 1, 1, tzinfo=UTC)
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        EXAMPLE_POLICY.read_text("utf-8").replace(
            '    operation: process\n    regions: ["aws:us-east-1"]\n    expires: "2027-01-31T00:00:00Z"',
            '    operation: store\n    regions: ["aws:us-east-1"]\n    expires: "2030-01-01T00:00:00Z"',
        )
    )
    now = [expires - timedelta(days=1)]
    app, router = await make_router(tmp_path, policy, clock=lambda: now[0])
    try:
        await app.store.upsert_dataset(
            Dataset.create("s3://bank-eu/customers", classifications=["PII.CONTACT"], origins=["DE"], locations=[US])
        )
        await app.after_write(await app.store.revision())
        assert await listed(router) == []
        now[0] = expires
        assert await listed(router) == [("s3://bank-eu/customers", US, ("gdpr-personal-data",))]
    finally:
        await router.close()
        await app.store.close()


@pytest.mark.parametrize(
    "token", ["nonsense", "eyJrIjoidmlvbGF0aW9ucyIsImFmdGVyIjoibm8tc2VwYXJhdG9yIiwiYXNfb2YiOm51bGwsImYiOiIifQ"]
)
async def test_a_page_token_that_is_not_ours_is_a_bad_request(tmp_path, token):
    from domicile.errors import DomicileError, ErrorCode

    app, router = await make_router(tmp_path)
    try:
        with pytest.raises(DomicileError) as info:
            await router.list_violations("", 10, token)
        assert info.value.code is ErrorCode.INVALID_ARGUMENT
    finally:
        await router.close()
        await app.store.close()


async def test_reads_after_a_start_answer_with_what_is_judged_so_far(tmp_path, monkeypatch):
    """A budget spent by every chunk: each ListViolations judges one chunk more and says how
    many datasets are left, never showing a verdict of another policy; GetResidencyStates and
    ScanViolations judge what they need first; the router stops at once, judging unfinished."""
    monkeypatch.setattr(violations, "CHUNK", 2)
    monkeypatch.setattr(runtime, "_LIST_JUDGING_BUDGET", 0.0)
    store = await open_store(f"sqlite:///{tmp_path / 'catalog.db'}")
    ids = [f"s3://lake/d{i}" for i in range(9)]
    try:
        for i, dataset_id in enumerate(ids):
            await store.upsert_dataset(
                Dataset.create(
                    dataset_id,
                    classifications=["PII.CONTACT"] if i % 2 else [],
                    origins=["DE"],
                    locations=[US if i % 3 else FRANKFURT, MOSCOW] if i % 4 else [FRANKFURT],
                )
            )
    finally:
        await store.close()
    app, router = await make_router(tmp_path)
    try:
        everything = await judged_from_scratch(app, router)
        assert everything, "the catalog should hold violations"
        first = await router.list_violations("", 1_000, "")
        assert first.datasets_to_judge == len(ids) - 2
        assert first.total == len(first.violations) == sum(first.by_region.values())
        assert {(v.dataset_id, v.region) for v in first.violations} <= {(d, r) for d, r, _ in everything}

        # The states of datasets not judged yet are judged for the answer.
        states = await router.residency_states(ids)
        expected = {d for d, _, _ in everything}
        assert [s.state is ResidencyState.VIOLATION for s in states.states] == [d in expected for d in ids]

        reads = 1
        page = first
        while page.datasets_to_judge:
            page = await router.list_violations("", 1_000, "")
            reads += 1
        assert reads <= len(ids) // 2 + 1
        assert await listed(router) == everything

        # Another policy: the verdicts of the old one are gone, not shown beside the new ones.
        lenient = EXAMPLE_POLICY.read_text("utf-8").replace('version: "2026.12.1"', 'version: "lenient"')
        lenient = lenient.replace("store:   {allow: [EU_PLUS_ADEQUATE]}", "store:   {allow: ['*']}")
        assert (await router.set_policy(lenient)).applied
        partial = await router.list_violations("", 1_000, "")
        assert partial.datasets_to_judge == len(ids) - 2
        now_judged = await judged_from_scratch(app, router)
        assert now_judged != everything
        assert {(v.dataset_id, v.region) for v in partial.violations} <= {(d, r) for d, r, _ in now_judged}

        # A scan judges everything before it answers.
        scanned = await router.scan_violations()
        assert [(v.dataset_id, v.region) for v in scanned] == [(d, r) for d, r, _ in now_judged]

        assert (await router.set_policy(EXAMPLE_POLICY.read_text("utf-8"))).applied
        assert (await router.list_violations("", 1_000, "")).datasets_to_judge > 0
    finally:
        # Nothing judges in the background: stopping does not wait for the judging to end.
        await asyncio.wait_for(router.close(), 30)
        await app.store.close()
