"""Decision search over a real decision log file (router/decision_search.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from domicile.errors import DomicileError, ErrorCode
from domicile.router.decision_search import DecisionQuery, search, summarize
from domicile.router.types import Outcome
from tests.unit.decision_log_helpers import REPLICA, T0, decision, open_log, write_one_per_line


@pytest.fixture
async def log_path(tmp_path: Path) -> Path:
    """20 decisions, one line each, a second apart: odd ones ALLOW, every fifth by another caller."""
    log = await open_log(tmp_path / "decisions.jsonl")
    for n in range(20):
        log.append(
            decision(
                n,
                outcome=Outcome.ALLOW if n % 2 else Outcome.DENY,
                reasons=() if n % 2 else decision(n).reasons,
                caller="auditor" if n % 5 == 0 else "spiffe://bank/pipeline",
            )
        )
        await log.flush()
    await log.close()
    return tmp_path / "decisions.jsonl"


def ids(page) -> list[str]:
    return [d.decision.decision_id.removeprefix(f"{REPLICA}:") for d in page.decisions]


def test_newest_first_with_filters(log_path):
    assert ids(search(log_path, DecisionQuery(), 3)) == ["d0019", "d0018", "d0017"]
    assert ids(search(log_path, DecisionQuery(caller="auditor"), 10)) == ["d0015", "d0010", "d0005", "d0000"]
    assert ids(search(log_path, DecisionQuery(outcome=Outcome.ALLOW, caller="auditor"), 10)) == ["d0015", "d0005"]
    assert ids(search(log_path, DecisionQuery(rule_id="gdpr-personal-data"), 2)) == ["d0018", "d0016"]
    assert ids(search(log_path, DecisionQuery(dataset_id="s3://bank-eu/customers-7"), 5)) == ["d0007"]
    window = DecisionQuery(start=T0 + timedelta(seconds=3), end=T0 + timedelta(seconds=6))
    assert ids(search(log_path, window, 10)) == ["d0005", "d0004", "d0003"]


def test_pages_continue_without_gaps(log_path):
    seen, token = [], ""
    while True:
        page = search(log_path, DecisionQuery(outcome=Outcome.DENY), 3, token)
        seen += ids(page)
        token = page.next_token
        if not token:
            break
    assert seen == [f"d{n:04d}" for n in range(18, -1, -2)]


def test_the_scan_budget_stops_a_search_that_can_go_on(log_path):
    first = search(log_path, DecisionQuery(caller="auditor"), 10, budget_bytes=1)
    assert not first.complete and first.next_token
    found = ids(first)
    token = first.next_token
    for _ in range(100):
        page = search(log_path, DecisionQuery(caller="auditor"), 10, token, budget_bytes=1)
        found += ids(page)
        token = page.next_token
        if not token:
            break
    assert found == ["d0015", "d0010", "d0005", "d0000"]


def test_a_token_of_other_filters_is_refused(log_path):
    token = search(log_path, DecisionQuery(), 1).next_token
    with pytest.raises(DomicileError) as raised:
        search(log_path, DecisionQuery(caller="auditor"), 1, token)
    assert raised.value.code is ErrorCode.INVALID_ARGUMENT


def test_a_forged_line_stops_the_search(log_path):
    data = log_path.read_bytes().replace(b'"deny"', b'"allow"', 1)
    log_path.write_bytes(data)
    with pytest.raises(DomicileError) as raised:
        search(log_path, DecisionQuery(), 100)
    assert raised.value.reason == "DECISION_LOG_CORRUPT"


def test_summary_counts_per_bucket(log_path):
    buckets, complete = summarize(log_path, T0, T0 + timedelta(seconds=20), timedelta(seconds=10))
    assert complete
    assert [(b.allow, b.deny) for b in buckets] == [(5, 5), (5, 5)]
    _, partial = summarize(log_path, T0, T0 + timedelta(seconds=20), timedelta(seconds=10), budget_bytes=1)
    assert not partial


def test_missing_log_reads_as_empty(tmp_path):
    assert ids(search(tmp_path / "absent.jsonl", DecisionQuery(), 10)) == []


async def test_write_helper_is_shared(tmp_path):
    log = await open_log(tmp_path / "d.jsonl")
    await write_one_per_line(log, range(2))
    await log.close()
    assert ids(search(tmp_path / "d.jsonl", DecisionQuery(), 5)) == ["d0001", "d0000"]


async def test_decisions_logged_before_ids_were_normalised_are_found_as_written(tmp_path: Path) -> None:
    log = await open_log(tmp_path / "decisions.jsonl")
    log.append(decision(0, dataset_id="S3://Bank-EU/customers"))  # as an earlier release logged it
    log.append(decision(1, dataset_id="s3://bank-eu/customers"))
    log.append(decision(2, dataset_id="s3://bank-eu/other"))
    await log.flush()
    await log.close()
    path = tmp_path / "decisions.jsonl"
    both = DecisionQuery(dataset_id="s3://bank-eu/customers", dataset_id_as_written="S3://Bank-EU/customers")
    assert ids(search(path, both, 10)) == ["d0001", "d0000"]
    assert ids(search(path, DecisionQuery(dataset_id="s3://bank-eu/customers"), 10)) == ["d0001"]
    first = search(path, both, 1)
    assert ids(first) == ["d0001"] and ids(search(path, both, 1, first.next_token)) == ["d0000"]
