"""Runs every decision case file (tests/cases/*.yaml) through ResidencyService.Decide over a
real gRPC channel: one server (`create_server`, SQLite) per case file, loaded with the file's
policy and catalog through CatalogService and LineageService (and its deletions through
DeleteDataset). Cases with `now` are decided with the router's clock set to it."""

from __future__ import annotations

from datetime import datetime

import grpc
import pytest

from domicile.router.runtime import utc_clock
from domicile.router.types import Outcome, Reason, ReasonCode, Verdict
from domicile.v1 import catalog_pb2, lineage_pb2, residency_pb2
from tests.cases.runner import Answer, Case, CaseFile, case_files, check_case, load_case_file
from tests.e2e.residency_harness import start_residency, stop_residency

CASE_FILES = {path.stem: load_case_file(path) for path in case_files()}
OPERATIONS = {"store": residency_pb2.OPERATION_STORE, "process": residency_pb2.OPERATION_PROCESS}
OUTCOMES = {residency_pb2.OUTCOME_ALLOW: Outcome.ALLOW, residency_pb2.OUTCOME_DENY: Outcome.DENY}


class SettableClock:
    """The router's clock: a case's `now` when it has one, the real time otherwise."""

    def __init__(self) -> None:
        self.now: datetime | None = None

    def __call__(self) -> datetime:
        return self.now or utc_clock()


def answer_of(decision: residency_pb2.Decision) -> Answer:
    verdict = Verdict(
        OUTCOMES[decision.outcome],
        tuple(decision.allowed_regions),
        tuple(
            Reason(
                ReasonCode(r.code),
                r.message,
                rule_id=r.rule_id,
                citation=r.citation,
                lineage_path=tuple(r.lineage_path),
            )
            for r in decision.reasons
        ),
    )
    return Answer(verdict, decision.inherited_only)


@pytest.fixture(scope="module")
async def servers(tmp_path_factory):
    """Started servers by case file, created on first use, stopped after the module."""
    started: dict = {}

    async def server_for(case_file: CaseFile):
        if case_file.path not in started:
            directory = tmp_path_factory.mktemp(case_file.path.stem)
            policy = directory / "policy.yaml"
            policy.write_text(case_file.policy_yaml, "utf-8")
            clock = SettableClock()
            harness = await start_residency(directory, clock=clock, policy=policy)
            started[case_file.path] = (harness, clock)
            for d in case_file.catalog.datasets:
                await harness.put(d.id, classifications=d.classifications, origins=d.origins, locations=d.locations)
            for run in case_file.catalog.lineage:
                await harness.lineage.RecordLineage(
                    lineage_pb2.RecordLineageRequest(
                        job=run.job,
                        run_id=f"{run.job}-run",
                        inputs=run.inputs,
                        outputs=run.outputs,
                        transform=run.transform,
                    )
                )
            for dataset_id in case_file.catalog.deleted:
                await harness.catalog.DeleteDataset(catalog_pb2.DeleteDatasetRequest(id=dataset_id))
        return started[case_file.path]

    yield server_for
    for harness, _ in started.values():
        await stop_residency(harness)


def _params() -> list:
    return [
        pytest.param(case_file, case, id=f"{name}:{case.line}")
        for name, case_file in CASE_FILES.items()
        for case in case_file.cases
    ]


@pytest.mark.parametrize(("case_file", "case"), _params())
async def test_decision_case_over_grpc(case_file: CaseFile, case: Case, servers) -> None:
    harness, clock = await servers(case_file)
    clock.now = case.now
    request = residency_pb2.DecideRequest(
        dataset_id=case.dataset, operation=OPERATIONS[case.operation], region=case.region
    )
    try:
        outcome: Answer | grpc.aio.AioRpcError = answer_of((await harness.residency.Decide(request)).decision)
    except grpc.aio.AioRpcError as error:
        outcome = error
    finally:
        clock.now = None

    def decide(_: Case) -> Answer:
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    check_case(case, decide)
