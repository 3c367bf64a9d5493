"""Data written by the release before declassifiers named their jobs keeps working.

tests/fixtures/release_2026_11 holds what that release wrote (see generate.py there): a
catalog export, the policy history and the decision log of decisions on registered, derived,
placeholder, deleted and revived datasets under a policy whose declassifiers name no jobs.
Loaded into the current release (on each store backend), every logged decision replays
unchanged, the recorded policy keeps its meaning, and a policy set now brings inheritance
without bringing back the dataset that release revived as a placeholder.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from domicile.app import App
from domicile.catalog.stores import open_store
from domicile.config import load_settings
from domicile.router.runtime import Router
from domicile.router.types import Operation, Outcome, ReasonCode

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "release_2026_11"
US = "aws:us-east-1"
EXAMPLE_POLICY = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"


def logged_decisions() -> list[tuple[str, dict]]:
    """(kind, decision entry) of every decision in the fixture's decision log."""
    return [
        (request["kind"], entry)
        for line in (FIXTURE / "decisions.jsonl").read_bytes().split(b"\n")[:-1]
        for request in json.loads(line)["requests"]
        for entry in request["decisions"]
    ]


@pytest.fixture(params=["sqlite", pytest.param("neo4j", marks=pytest.mark.neo4j)])
async def upgraded(request, tmp_path) -> AsyncIterator[App]:
    """An app over the fixture's catalog, policy history and decision log (no policy file: the
    history's policy is active), with its router started."""
    settings = load_settings(store=f"sqlite:///{tmp_path / 'catalog.db'}", data_dir=tmp_path, insecure=True)
    if request.param == "neo4j":
        from tests.neo4j_plugin import open_clean_neo4j_store

        store = await open_clean_neo4j_store(request.getfixturevalue("neo4j_uri"))
    else:
        store = await open_store(settings.store)

    async def records():
        with (FIXTURE / "catalog.jsonl").open(encoding="utf-8") as source:
            for line in source:
                yield json.loads(line)

    await store.import_history(records())
    for name in ("policies.jsonl", "decisions.jsonl"):
        shutil.copy(FIXTURE / name, tmp_path / name)
    app = App(settings=settings, store=store)
    app.router = await Router.start(app)
    yield app
    await app.router.close()
    await store.close()


async def test_every_logged_decision_replays_unchanged(upgraded: App) -> None:
    decisions = logged_decisions()
    assert len(decisions) > 40 and {kind for kind, _ in decisions} >= {"decide", "batch_decide", "check_job"}
    for _, entry in decisions:
        result = await upgraded.router.replay(entry["decision_id"])
        assert result.matches, (result.original, result.replayed)
        assert not result.replayed.inherited_only


async def test_the_recorded_policy_keeps_its_meaning(upgraded: App) -> None:
    router = upgraded.router
    assert router.get_policy().version == "2026.11.1"
    # Placeholders stay undescribed under it, and a claimed transform is honoured for any job.
    for kind, entry in logged_decisions():
        if kind == "check_job" or entry["operation"] != "store":
            continue
        now = router.decide(entry["dataset_id"], Operation.STORE, entry["region"])
        assert now.outcome.value == entry["outcome"] and not now.inherited_only, entry["dataset_id"]
    assert (router.decide("s3://bank-eu/counts", Operation.STORE, US)).outcome is Outcome.DENY  # undescribed
    check = await router.check_job(["s3://bank-eu/customers"], ["s3://x"], "aws:eu-central-1", US, "aggregate")
    assert check.allowed


async def test_a_policy_set_now_brings_inheritance_but_not_back_a_revived_dataset(upgraded: App) -> None:
    router = upgraded.router
    update = await router.set_policy(EXAMPLE_POLICY.read_text("utf-8"))
    assert update.applied, update.errors
    derived = router.decide("s3://bank-eu/fraud-scores", Operation.STORE, US)
    assert derived.inherited_only and [r.rule_id for r in derived.reasons] == ["gdpr-personal-data"]
    # Job "rollup" (default/rollup) is not granted `aggregate` by the new policy: a plain copy.
    counts = router.decide("s3://bank-eu/counts", Operation.STORE, US)
    assert counts.inherited_only and {r.rule_id for r in counts.reasons} == {
        "gdpr-personal-data",
        "rbi-payment-storage",
    }
    # That release brought the deleted dataset back as a placeholder when lineage named it
    # again; it is still the deleted dataset, so unknown -- also after a restart (snapshot).
    for attempt in range(2):
        revived = router.decide("s3://bank-eu/legacy", Operation.STORE, "aws:eu-central-1")
        assert [r.code for r in revived.reasons] == [ReasonCode.UNKNOWN_DATASET], attempt
        await router.close()
        upgraded.router = router = await Router.start(upgraded)
