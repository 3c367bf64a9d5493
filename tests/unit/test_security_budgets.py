"""Per-principal budgets per resource: one cost model for requests, decisions and edges."""

from __future__ import annotations

import json

import pytest

from domicile.config import load_settings
from domicile.errors import DomicileError, ErrorCode
from domicile.router.service import MAX_BATCH
from domicile.security.budgets import Budget, Budgets, Resource
from domicile.security.context import Caller, current_caller
from domicile.security.events import SecurityEventLog


def budgets(events=None) -> Budgets:
    return Budgets(
        {
            Resource.REQUESTS: Budget(per_second=0.001, burst=3),
            Resource.DECISIONS: Budget(per_second=0.001, burst=10),
            Resource.LINEAGE_EDGES: Budget(per_second=0.001, burst=100),
        },
        events,
    )


def refusal(call) -> DomicileError:
    with pytest.raises(DomicileError) as info:
        call()
    return info.value


def test_a_charge_takes_its_amount_or_nothing():
    spent = budgets()
    spent.charge("svc", Resource.DECISIONS, 7)
    refused = refusal(lambda: spent.charge("svc", Resource.DECISIONS, 4))
    assert (refused.code, refused.reason) == (ErrorCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    assert refused.metadata["resource"] == "decisions" and refused.retry_after > 0
    spent.charge("svc", Resource.DECISIONS, 3)  # the refused charge took nothing
    assert refusal(lambda: spent.charge("svc", Resource.DECISIONS, 1)).reason == "RATE_LIMITED"


def test_resources_and_principals_have_budgets_of_their_own():
    spent = budgets()
    spent.charge("svc", Resource.DECISIONS, 10)
    spent.charge("svc", Resource.LINEAGE_EDGES, 100)
    for _ in range(3):
        spent.charge("svc", Resource.REQUESTS)
    spent.charge("other", Resource.DECISIONS, 10)
    spent.charge("", Resource.DECISIONS, 10)  # the anonymous principal (--insecure)


def test_a_charge_larger_than_the_burst_can_never_succeed_and_says_so():
    refused = refusal(lambda: budgets().charge("svc", Resource.DECISIONS, 11))
    assert refused.retry_after is None
    assert "costs 11 decisions" in refused.message and "split it" in refused.message


def test_refusals_are_security_events(tmp_path):
    events = SecurityEventLog(tmp_path / "security.jsonl")
    spent = budgets(events)
    spent.charge("svc", Resource.LINEAGE_EDGES, 100)
    refusal(lambda: spent.charge("svc", Resource.LINEAGE_EDGES, 5, method="/m", peer="ipv4:1.2.3.4:5", trace_id="t"))
    events.close()
    (event,) = [json.loads(line) for line in (tmp_path / "security.jsonl").read_text().splitlines()]
    assert (event["event"], event["principal"], event["reason"], event["method"]) == (
        "rate_limited",
        "svc",
        "RATE_LIMITED",
        "/m",
    )
    assert event["detail"]["resource"] == "lineage_edges" and event["detail"]["amount"] == 5


def test_charge_caller_charges_the_principal_of_the_request():
    spent = budgets()
    token = current_caller.set(Caller(subject="svc-a", actors=("airflow",)))
    try:
        spent.charge_caller(Resource.DECISIONS, 10)
        assert refusal(lambda: spent.charge_caller(Resource.DECISIONS, 1)).reason == "RATE_LIMITED"
    finally:
        current_caller.reset(token)
    spent.charge_caller(Resource.DECISIONS, 10)  # outside a request: the anonymous principal


def test_defaults_allow_a_full_batch_and_can_be_turned_off():
    limits = load_settings().rate_limit
    assert limits.decision_burst >= MAX_BATCH
    assert Budgets.from_settings(limits).budgets[Resource.DECISIONS] == Budget(500_000.0, 500_000)
    assert Budgets.from_settings(load_settings(rate_limit={"enabled": False}).rate_limit) is None
