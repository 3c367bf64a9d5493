"""The C line renderer (router/_logline.c) against the reference, `_LineBuilder`: for any
entries, the same line parts, so the same bytes on disk; and for shapes it does not take, None
(the log then renders the line in Python)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domicile.router import decision_log
from domicile.router.decision_log import ZERO_HASH
from domicile.router.types import Decision, Operation, Outcome, Reason, ReasonCode

native = decision_log._native


def test_the_c_renderer_is_built() -> None:
    # `pip install -e .` builds it (setup.py); without a C compiler the log still works, in
    # Python, but this suite is meant to run where the fast path is the one in use.
    assert native is not None, "router/_logline.c was not built: is a C compiler installed? (pip install -e .)"


def render_both(entries: list, start: int = 0, stop: int | None = None):
    stop = len(entries) if stop is None else stop
    return (
        native.render(entries, start, stop, decision_log._request_parts, decision_log._format_time),
        decision_log._render_python(entries, start, stop),
    )


def assert_same_line(entries: list) -> None:
    fast, reference = render_both(entries)
    assert fast is not None
    assert fast == reference
    assert decision_log._line(fast, 3, "ab" * 32) == decision_log._line(reference, 3, "ab" * 32)


class LaterDatetime(datetime):
    """A datetime subclass, as a test clock library might hand out."""


ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=10)  # control characters included
SOME_TEXT = st.sampled_from(["", "a", "é", "\u2028", '"\\', "\x00\x1f\x7f", "s3://bank/ds"])
TEXT = st.one_of(ANY_TEXT, SOME_TEXT)
UTC_TIMES = st.datetimes(timezones=st.just(timezone.utc))
TIMES = st.one_of(
    UTC_TIMES,
    UTC_TIMES.map(lambda t: t.replace(microsecond=0)),
    st.datetimes(timezones=st.just(timezone(timedelta(hours=5, minutes=30)))),
    UTC_TIMES.map(lambda t: LaterDatetime.fromisoformat(t.isoformat())),
)


@st.composite
def entries(draw) -> list:
    """Queue entries as the router appends them: decisions sharing (or not) their region
    tuples, reasons, request keys and decide times -- as the same objects or equal copies."""
    region_sets = draw(st.lists(st.tuples(*[TEXT] * 2) | st.just(()), min_size=1, max_size=3))
    reasons = draw(st.lists(
        st.builds(Reason, st.sampled_from(list(ReasonCode)), TEXT, TEXT, TEXT,
                  st.one_of(st.lists(TEXT, max_size=3).map(tuple), st.lists(TEXT, max_size=2))),
        min_size=1, max_size=3,
    ))
    requests = draw(st.lists(
        st.tuples(TEXT, st.integers(0, 2**63 - 1), st.one_of(st.none(), st.dictionaries(TEXT, TEXT, max_size=2)),
                  st.sampled_from(["decide", "batch_decide", "route"]), TEXT, TEXT),
        min_size=1, max_size=3,
    ))
    times = draw(st.lists(TIMES, min_size=1, max_size=2))
    result = []
    for n in range(draw(st.integers(1, 12))):
        caller, revision, context, kind, policy_hash, version = draw(st.sampled_from(requests))
        if draw(st.booleans()):  # equal values, other objects: the line must not tell them apart
            revision, context = int(str(revision)), (dict(context) if context is not None else None)
            caller, version = "".join(list(caller)), "".join(list(version))
        regions = draw(st.sampled_from(region_sets))
        if draw(st.booleans()):
            regions = tuple(list(regions))
        picked = tuple(draw(st.lists(st.sampled_from(reasons), max_size=3)))
        decision = Decision(
            decision_id=draw(TEXT) + f"-{n}",
            outcome=draw(st.sampled_from(list(Outcome))),
            dataset_id=draw(TEXT),
            operation=draw(st.sampled_from(list(Operation))),
            region=draw(TEXT),
            allowed_regions=regions,
            reasons=picked,
            policy_version=version,
            catalog_revision=revision,
            decide_time=draw(st.sampled_from(times)),
            caller=caller,
        )
        result.append((decision, context, kind, policy_hash))
    return result


@settings(max_examples=400, deadline=None)
@given(entries())
def test_the_c_renderer_gives_the_reference_line(queued: list) -> None:
    assert_same_line(queued)


@settings(max_examples=50, deadline=None)
@given(entries(), st.data())
def test_a_slice_renders_as_a_line_of_its_own(queued: list, data) -> None:
    start = data.draw(st.integers(0, len(queued)))
    stop = data.draw(st.integers(start, len(queued)))
    fast, reference = render_both(queued, start, stop)
    assert fast == reference == decision_log._render_python(queued[start:stop], 0, stop - start)


def entry(**changes) -> tuple:
    fields = dict(
        decision_id="d1", outcome=Outcome.DENY, dataset_id="s3://bank-eu/customers", operation=Operation.STORE,
        region="aws:us-east-1", allowed_regions=("aws:eu-central-1",),
        reasons=(Reason(ReasonCode.RULE_DENIED, "EU personal data stays in the EU", "gdpr", "GDPR Art. 44",
                        ("s3://bank-eu/customers",)),),
        policy_version="2026.11.1", catalog_revision=7,
        decide_time=datetime(2026, 11, 30, 10, 0, 0, 5, tzinfo=timezone.utc), caller="",
    )
    fields.update(changes)
    return (Decision(**fields), None, "decide", "ff" * 32)


@pytest.mark.parametrize(
    "odd",
    [
        pytest.param(entry(decision_id=17), id="id-not-text"),
        pytest.param(entry(allowed_regions=["aws:eu-central-1"]), id="regions-list"),
        pytest.param(entry(allowed_regions=("aws:eu-central-1", 3)), id="region-not-text"),
        pytest.param(entry(reasons=[]), id="reasons-list"),
        pytest.param(entry(reasons=(("RULE_DENIED", "m", "r", "c", ()),)), id="code-not-enum"),
        pytest.param(entry(operation="store"), id="operation-text"),
        pytest.param(("not", "an", "entry"), id="short-entry"),
    ],
)
def test_shapes_the_router_never_appends_are_left_to_python(odd: tuple) -> None:
    good = entry()
    assert native.render([good, odd], 0, 2, decision_log._request_parts, decision_log._format_time) is None


def test_operation_text_renders_through_the_fallback_like_the_reference() -> None:
    # A str where an Enum is expected: C declines, the reference decides (it raises here).
    queued = [entry(operation="store")]
    with pytest.raises(AttributeError):
        decision_log._render_python(queued, 0, 1)
    with pytest.raises(AttributeError):
        decision_log._render_line(queued, 0, 1)


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        pytest.param(entry(dataset_id="\ud800"), UnicodeEncodeError, id="lone-surrogate"),
        pytest.param(entry(decide_time=datetime(2026, 11, 30)), ValueError, id="naive-time"),
    ],
)
def test_what_the_reference_refuses_the_c_renderer_refuses(bad: tuple, error: type[Exception]) -> None:
    with pytest.raises(error):
        native.render([bad], 0, 1, decision_log._request_parts, decision_log._format_time)
    with pytest.raises(Exception):  # orjson raises its own error type for the surrogate
        decision_log._render_python([bad], 0, 1)


def test_bad_arguments_raise() -> None:
    queued = [entry()]
    with pytest.raises(IndexError):
        native.render(queued, 0, 2, decision_log._request_parts, decision_log._format_time)
    with pytest.raises(TypeError):
        native.render(tuple(queued), 0, 1, decision_log._request_parts, decision_log._format_time)
    with pytest.raises(TypeError):
        native.render(queued, 0, 1, lambda key: "not bytes", decision_log._format_time)


def test_many_distinct_region_sets_and_reasons_in_one_line() -> None:
    # More distinct objects than the identity tables start with: they grow.
    queued = [
        entry(decision_id=f"d{n}", allowed_regions=(f"r{n % 300}",),
              reasons=(Reason(ReasonCode.RULE_DENIED, f"m{n % 200}", "r", "c", (f"p{n}",)),))
        for n in range(1000)
    ]
    assert_same_line(queued)
    fast, _ = render_both(queued)
    assert len(fast[2]) == 300 and len(fast[3]) == 200


def test_a_written_log_verifies_whichever_renderer_wrote_it(tmp_path, monkeypatch) -> None:
    import asyncio

    async def write(name: str) -> bytes:
        log = await decision_log.DecisionLog.open(tmp_path / name, durable=True)
        for n in range(5):
            log.append_many([entry(decision_id=f"d{n}-{i}")[0] for i in range(3)], kind="batch_decide")
            await log.flush()
        await log.close()
        return (tmp_path / name).read_bytes()

    with_c = asyncio.run(write("c.jsonl"))
    monkeypatch.setattr(decision_log, "_native", None)
    in_python = asyncio.run(write("python.jsonl"))
    assert with_c == in_python
    assert decision_log.verify(tmp_path / "c.jsonl").ok
    assert ZERO_HASH in with_c.split(b"\n")[0].decode()
