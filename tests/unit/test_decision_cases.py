"""Runs every decision case file (tests/cases/*.yaml) in process, no server, with the residency
engine as the router drives it. The gRPC suite runs the same files over a channel."""

from __future__ import annotations

import pytest

from domicile.errors import invalid_field
from domicile.router.types import Outcome, Reason, ReasonCode, Verdict
from tests.cases.runner import (
    Case,
    CaseFile,
    case_files,
    check_case,
    error_code,
    in_process_decider,
    load_case_file,
)

CASE_FILES = {path.stem: load_case_file(path) for path in case_files()}


def _params() -> list:
    return [
        pytest.param(case_file, case, id=f"{name}:{case.line}")
        for name, case_file in CASE_FILES.items()
        for case in case_file.cases
    ]


@pytest.fixture(scope="module")
def deciders() -> dict:
    return {}


@pytest.mark.parametrize(("case_file", "case"), _params())
def test_decision_case(case_file: CaseFile, case: Case, deciders: dict) -> None:
    decide = deciders.get(case_file.path)
    if decide is None:
        decide = deciders[case_file.path] = in_process_decider(case_file)
    check_case(case, decide)


def test_every_case_file_has_cases() -> None:
    expected = {"eu_personal_data", "indian_payment_data", "joined_lineage", "exemptions", "unknown_inputs"}
    assert set(CASE_FILES) >= expected
    for name, case_file in CASE_FILES.items():
        assert case_file.cases, f"{name} has no cases"


# -- the runner itself: a case must fail when the decider disagrees -------------------------------

DENY_CASE = Case(
    note="n",
    dataset="d",
    operation="store",
    region="aws:us-east-1",
    want={
        "outcome": "deny",
        "reason_codes": ["RULE_DENIED"],
        "rule_ids": ["r"],
        "lineage_path": ["a", "d"],
        "allowed_regions": [],
    },
)


def _verdict(outcome: Outcome, *reasons: Reason, allowed: tuple[str, ...] = ()) -> Verdict:
    return Verdict(outcome, allowed, reasons)


RULE_R = Reason(ReasonCode.RULE_DENIED, "m", rule_id="r", lineage_path=("a", "d"))


def test_check_case_accepts_a_matching_verdict() -> None:
    check_case(DENY_CASE, lambda case: _verdict(Outcome.DENY, RULE_R))


@pytest.mark.parametrize(
    ("verdict", "complaint"),
    [
        (_verdict(Outcome.ALLOW, RULE_R), "outcome allow, want deny"),
        (_verdict(Outcome.DENY, RULE_R, Reason(ReasonCode.DEFAULT_DENIED, "m")), "reason codes"),
        (_verdict(Outcome.DENY, Reason(ReasonCode.RULE_DENIED, "m", rule_id="s", lineage_path=("a", "d"))), "rule ids"),
        (
            _verdict(Outcome.DENY, Reason(ReasonCode.RULE_DENIED, "m", rule_id="r", lineage_path=("d",))),
            "lineage paths",
        ),
        (_verdict(Outcome.DENY, RULE_R, allowed=("aws:eu-west-1",)), "allowed regions"),
    ],
)
def test_check_case_reports_each_mismatch(verdict: Verdict, complaint: str) -> None:
    with pytest.raises(AssertionError, match=complaint):
        check_case(DENY_CASE, lambda case: verdict)


def test_check_case_expected_errors() -> None:
    error_case = DENY_CASE.model_copy(update={"want": None, "want_error": "INVALID_ARGUMENT"})

    def bad_region(case: Case) -> Verdict:
        raise invalid_field("region", "unknown")

    check_case(error_case, bad_region)
    with pytest.raises(AssertionError, match="got error INVALID_ARGUMENT"):
        check_case(DENY_CASE, bad_region)
    with pytest.raises(AssertionError, match="want error INVALID_ARGUMENT"):
        check_case(error_case, lambda case: _verdict(Outcome.DENY, RULE_R))


def test_grpc_style_errors_are_recognised_by_their_code_name() -> None:
    class StatusCode:
        name = "INVALID_ARGUMENT"

    class FakeRpcError(Exception):
        def code(self) -> StatusCode:
            return StatusCode()

    assert error_code(FakeRpcError()) == "INVALID_ARGUMENT"
    assert error_code(RuntimeError("bug")) is None

    def crash(case: Case) -> Verdict:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        check_case(DENY_CASE, crash)


def test_a_case_needs_exactly_one_expectation() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Case(note="n", dataset="d", operation="store", region="r")
