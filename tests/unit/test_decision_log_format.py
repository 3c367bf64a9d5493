"""The line format: whatever the strings hold, a line the engine renders reads back what was
logged; any JSON encoder can write an entry, of format 4 or of format 3 (which is still read);
a line whose hash is right but whose content is not a log's is refused."""

from __future__ import annotations

import json
from datetime import UTC, timedelta, timezone
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domicile.router import _engine
from domicile.router.decision_log import Entry
from domicile.router.decision_log.format import (
    ZERO_HASH,
    LineError,
    decisions_line,
    decisions_of_line,
    find_decision,
    parse_line,
    seal,
)
from domicile.router.types import Decision, Outcome, Reason, ReasonCode
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


def plain_entry(decisions: list[Decision], context: dict | None, kind: str, policy_hash: str, format: int) -> dict:
    """The entry of `decisions` (which share caller, policy version and catalog revision) as
    format `format` lays it out, made plainly: each region set, reason text and reason set
    listed once by content, in the order first named."""

    def number(values: list, value) -> int:
        if value not in values:
            values.append(value)
        return values.index(value)

    region_sets: list = []
    reason_texts: list = []
    reason_sets: list = []
    rows = []
    for d in decisions:
        if format == 3:
            reasons = [[r.code.value, r.message, r.rule_id, r.citation, list(r.lineage_path)] for r in d.reasons]
        else:
            reasons = [
                [number(reason_texts, [r.code.value, r.message, r.rule_id, r.citation]), list(r.lineage_path)]
                for r in d.reasons
            ]
        rows.append(
            [
                d.decision_id,
                d.dataset_id,
                d.operation.value,
                d.region,
                d.outcome.value,
                number(region_sets, list(d.allowed_regions)),
                number(reason_sets, reasons),
                d.decide_time.isoformat(),
                d.inherited_only,
            ]
        )
    first = decisions[0]
    return {
        "kind": kind,
        "caller": first.caller,
        "policy_version": first.policy_version,
        "policy_hash": policy_hash,
        "catalog_revision": first.catalog_revision,
        **({"context": context} if context else {}),
        "region_sets": region_sets,
        **({"reason_texts": reason_texts} if format == 4 else {}),
        "reason_sets": reason_sets,
        "decisions": rows,
    }


def plain_line(entry: dict, format: int, ascii: bool) -> bytes:
    """A decisions line of `format` holding `entry`, written by the standard library's encoder."""
    head = f'{{"format": {format}, "seq": 1, "prev": "{ZERO_HASH}", "type": "decisions", "entries": ['
    return seal(head.encode(), json.dumps(entry, ensure_ascii=ascii).encode(), b"]")[0]


REASON_POOL = [
    (ReasonCode.RULE_DENIED, "EU personal data stays in the EU", "gdpr-personal-data", "GDPR Art. 44\u201345"),
    (ReasonCode.RULE_DENIED, 'a "quoted"\nmessage\u2028', "rbi", ""),
    (ReasonCode.DEFAULT_DENIED, "no rule applies", "", ""),
    (ReasonCode.EXEMPTION_APPLIED, "exempt until 2027", "ex-1", "ticket 7"),
]


@st.composite
def related_decisions(draw) -> list[Decision]:
    """Decisions of one request whose reasons share texts (as a batch's do) and lineage paths
    that differ, with strings of every kind."""
    caller, version = draw(text), draw(text)
    revision = draw(st.integers(min_value=0, max_value=2**63 - 1))
    made = []
    for n in range(draw(st.integers(min_value=1, max_value=5))):
        reasons = tuple(
            Reason(*REASON_POOL[index], tuple(draw(st.lists(text, max_size=3))))
            for index in draw(st.lists(st.integers(0, len(REASON_POOL) - 1), max_size=3))
        )
        made.append(
            decision(
                n,
                decision_id=draw(text),
                dataset_id=draw(text),
                caller=caller,
                policy_version=version,
                catalog_revision=revision,
                outcome=Outcome.DENY if reasons else Outcome.ALLOW,
                allowed_regions=tuple(draw(st.lists(st.sampled_from(["aws:eu-west-1", "aws:eu-central-1"])))),
                reasons=reasons,
                inherited_only=draw(st.booleans()),
            )
        )
    return made


@settings(max_examples=150, deadline=None)
@given(
    decisions=related_decisions(),
    context=st.one_of(st.none(), st.dictionaries(text, text, min_size=1, max_size=3)),
    ascii=st.booleans(),
)
def test_entries_of_either_format_read_back_the_decisions(decisions, context, ascii) -> None:
    facts = list(context.items()) if context else []
    rendered = _engine.log_entry(decisions, facts, "route", "ab" * 32)
    engine_line, _ = decisions_line(1, ZERO_HASH, [rendered])
    # The engine lists each reason text and region set once, as the plain rendering does.
    plain = plain_entry(decisions, context, "route", "ab" * 32, 4)
    engine_entry = json.loads(rendered)
    assert engine_entry["reason_texts"] == plain["reason_texts"]
    assert engine_entry["region_sets"] == plain["region_sets"]
    lines = [engine_line] + [
        plain_line(plain_entry(decisions, context, "route", "ab" * 32, f), f, ascii) for f in (3, 4)
    ]
    for line in lines:
        logged = decisions_of_line(line)
        assert [found.decision for found in logged] == decisions
        assert all(found.kind == "route" and dict(found.context or {}) == (context or {}) for found in logged)


async def test_an_entry_written_by_another_json_encoder_is_logged_and_read_back(tmp_path) -> None:
    # The standard library's encoder, ASCII escapes and spaces after separators: not orjson's bytes.
    d = decision(1, dataset_id="s3://bank-eu/clients-é")
    data = json.dumps(plain_entry([d], None, "batch_decide", "ab" * 32, 4), ensure_ascii=True).encode("ascii")
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


def test_an_entry_with_a_reason_code_the_engine_does_not_know_is_refused() -> None:
    unknown = SimpleNamespace(value="NOT_A_CODE")
    d = decision(1, reasons=(Reason(unknown, "m"),))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match='unknown reason code "NOT_A_CODE"'):
        _engine.log_entry([d], [], "decide", "")


def entry_line(format: int = 4, **changes) -> bytes:
    if format == 4:
        line, _ = decisions_line(1, ZERO_HASH, [_engine.log_entry([decision(1)], [], "decide", "")])
    else:
        line = plain_line(plain_entry([decision(1)], None, "decide", "", 3), 3, False)
    body = json.loads(line)
    entry = body["entries"][0]
    for key, value in changes.items():
        entry[key] = value
    return reseal(line, entries=[entry])


COMMON_PROBLEMS = [
    pytest.param({"region_sets": []}, "decision 1 is malformed", id="dangling-region-set"),
    pytest.param({"reason_sets": []}, "decision 1 is malformed", id="dangling-reason-set"),
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
]


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        *COMMON_PROBLEMS,
        pytest.param({"reason_texts": [["MAYBE", "m", "r", "c"]]}, "reason_texts", id="unknown-reason-code"),
        pytest.param({"reason_texts": [["RULE_DENIED", "m", "r"]]}, "reason_texts", id="short-text"),
        pytest.param({"reason_texts": []}, "reason_sets", id="dangling-text"),
        pytest.param({"reason_sets": [[[0, "s3://a"]]]}, "reason_sets", id="path-not-a-list"),
        pytest.param({"reason_sets": [[["RULE_DENIED", "m", "r", "c", []]]]}, "reason_sets", id="format-3-reason"),
    ],
)
def test_a_line_with_a_correct_hash_but_not_a_logs_content_is_refused(changes, problem) -> None:
    with pytest.raises(LineError) as info:
        parse_line(entry_line(**changes))
    assert problem in str(info.value)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        *COMMON_PROBLEMS,
        pytest.param({"reason_sets": [[["MAYBE", "m", "r", "c", []]]]}, "reason_sets", id="unknown-reason-code"),
        pytest.param({"reason_sets": [[[0, ["s3://a"]]]]}, "reason_sets", id="format-4-reason"),
    ],
)
def test_a_format_3_line_not_of_a_logs_content_is_refused(changes, problem) -> None:
    parse_line(entry_line(3))  # (as it was written, it reads)
    with pytest.raises(LineError) as info:
        parse_line(entry_line(3, **changes))
    assert problem in str(info.value)


@pytest.mark.parametrize("format", [2, 5, "4", 4.0, None])
def test_a_line_of_a_format_not_read_here_is_refused(format) -> None:
    line = entry_line()
    body = json.loads(line)
    del body["hash"]
    body["format"] = format
    with pytest.raises(LineError) as info:
        parse_line(seal(json.dumps(body).encode()[:-1])[0])
    assert "format is" in str(info.value)
