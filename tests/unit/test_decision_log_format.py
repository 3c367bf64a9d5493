"""The line format: whatever the strings hold, a line the engine renders reads back what was
logged; any JSON encoder can write an entry; a line whose hash is right but whose content is not a log's is refused."""

from __future__ import annotations

import json
from datetime import UTC, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domicile.router import _engine
from domicile.router.decision_log import Entry
from domicile.router.decision_log.format import (
    ZERO_HASH,
    LineError,
    decisions_line,
    find_decision,
    parse_line,
)
from domicile.router.types import Reason, ReasonCode
from tests.unit.decision_log_helpers import T0, decision, open_log, reseal, verify

text = st.text(st.characters(codec="utf-8"), max_size=12)  # control characters, U+2028, quotes...


@settings(max_examples=150, deadline=None)
@given(
    strings=st.lists(text, min_size=8, max_size=8),
    path=st.lists(text, max_size=3),
    context=st.one_of(st.none(), st.dictionaries(text, text, max_size=3)),
    seq=st.integers(min_value=1, max_value=2**53),
    revision=st.integers(min_value=0, max_value=2**63 - 1),
    offset=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
    whole_second=st.booleans(),
)
def test_a_line_reads_back_what_was_logged(strings, path, context, seq, revision, offset, whole_second) -> None:
    caller, decision_id, dataset_id, region, version, message, rule_id, kind = strings
    moment = T0.astimezone(offset).replace(microsecond=0 if whole_second else T0.microsecond)
    d = decision(
        1,
        caller=caller,
        decision_id=decision_id,
        dataset_id=dataset_id,
        region=region,
        policy_version=version,
        allowed_regions=tuple(path),
        catalog_revision=revision,
        decide_time=moment,
        reasons=(Reason(ReasonCode.DEFAULT_DENIED, message, rule_id, "", tuple(path)),),
    )
    facts = list(context.items()) if context else []
    line, digest = decisions_line(seq, ZERO_HASH, [_engine.log_entry([d], facts, kind, "ff" * 32)])
    record = parse_line(line)
    assert record["hash"] == digest and record["seq"] == seq
    logged = find_decision(record, decision_id)
    assert logged is not None and logged.decision == d and logged.kind == kind
    assert dict(logged.context or {}) == (context or {})


async def test_an_entry_written_by_another_json_encoder_is_logged_and_read_back(tmp_path) -> None:
    # The standard library's encoder, ASCII escapes and spaces after separators: not orjson's bytes.
    d = decision(1, dataset_id="s3://bank-eu/clients-é")
    entry = {
        "kind": "batch_decide",
        "caller": d.caller,
        "policy_version": d.policy_version,
        "policy_hash": "ab" * 32,
        "catalog_revision": d.catalog_revision,
        "region_sets": [list(d.allowed_regions)],
        "reason_sets": [[[r.code.value, r.message, r.rule_id, r.citation, list(r.lineage_path)] for r in d.reasons]],
        "decisions": [[d.decision_id, d.dataset_id, "store", d.region, "deny", 0, 0, d.decide_time.isoformat()]],
    }
    data = json.dumps(entry, ensure_ascii=True).encode("ascii")
    log = await open_log(tmp_path / "decisions.jsonl")
    try:
        log.append_entries([Entry(data, (d.decision_id,), d.catalog_revision)])
        await log.flush()
        found = await log.get(d.decision_id)
        assert found is not None and found.decision == d
        assert log.max_catalog_revision == d.catalog_revision
    finally:
        await log.close()
    assert data in (tmp_path / "decisions.jsonl").read_bytes() and verify(tmp_path / "decisions.jsonl").ok


def entry_line(**changes) -> bytes:
    line, _ = decisions_line(1, ZERO_HASH, [_engine.log_entry([decision(1)], [], "decide", "")])
    body = json.loads(line)
    entry = body["entries"][0]
    for key, value in changes.items():
        entry[key] = value
    return reseal(line, entries=[entry])


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        pytest.param({"region_sets": []}, "decision 1 is malformed", id="dangling-region-set"),
        pytest.param({"reason_sets": []}, "decision 1 is malformed", id="dangling-reason-set"),
        pytest.param({"reason_sets": [[["MAYBE", "m", "r", "c", []]]]}, "reason_sets", id="unknown-reason-code"),
        pytest.param({"kind": 3}, "not text", id="kind"),
        pytest.param({"catalog_revision": "7"}, "catalog_revision", id="revision"),
        pytest.param({"decisions": []}, "no decisions", id="no-decisions"),
        pytest.param({"context": {"a": 1}}, "not text facts", id="context"),
        pytest.param(
            {"decisions": [["d", "s3://a", "store", "aws:us-east-1", "maybe", 0, 0, "2026-11-30T00:00:00Z"]]},
            "malformed",
            id="outcome",
        ),
        pytest.param(
            {"decisions": [["d", "s3://a", "store", "aws:us-east-1", "deny", 0, 0, "yesterday"]]},
            "not RFC 3339",
            id="time",
        ),
    ],
)
def test_a_line_with_a_correct_hash_but_not_a_logs_content_is_refused(changes, problem) -> None:
    with pytest.raises(LineError) as info:
        parse_line(entry_line(**changes))
    assert problem in str(info.value)
