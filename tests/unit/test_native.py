"""router/_native.c against the Python it stands in for: the decision log's line renderer
against `_LineBuilder` (for any queue, the same line parts and positions, so the same bytes on
disk), the BatchDecide encoder against `DecisionEncoder.encode_batch_python` (the same bytes);
for shapes they do not take, None (the caller then uses the Python); and `untrack`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from domicile.router import decision_log
from domicile.router.convert import _OPERATION, DecisionEncoder
from domicile.router.decision_log import ZERO_HASH
from domicile.router.types import Decision, Operation, Outcome, Reason, ReasonCode
from domicile.v1 import residency_pb2

native = decision_log._native


def test_the_c_renderer_is_built() -> None:
    # `pip install -e .` builds it (setup.py); without a C compiler the log still works, in
    # Python, but this suite is meant to run where the fast path is the one in use.
    assert native is not None, "router/_native.c was not built: is a C compiler installed? (pip install -e .)"


def render(queue: list, item: int = 0, offset: int = 0, limit: int = 1_000_000):
    return native.render(queue, item, offset, limit, decision_log._request_parts, decision_log._format_time)


def render_both(queue: list, item: int = 0, offset: int = 0, limit: int = 1_000_000):
    return render(queue, item, offset, limit), decision_log._render_python(queue, item, offset, limit)


def assert_same_line(queue: list) -> None:
    fast, reference = render_both(queue)
    assert fast is not None
    assert fast == reference
    assert fast[1:] == (len(queue), 0)
    assert decision_log._line(fast[0], 3, "ab" * 32) == decision_log._line(reference[0], 3, "ab" * 32)


class PathTuple(tuple):
    """A tuple subclass, which orjson does not serialize."""


class LaterDatetime(datetime):
    """A datetime subclass, as a test clock library might hand out."""


ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=10)  # control characters included
SOME_TEXT = st.sampled_from(["", "a", "é", "\u2028", '"\\', "\x00\x1f\x7f", "s3://bank/ds"])
TEXT = st.one_of(ANY_TEXT, SOME_TEXT)
# (From year 2: an offset time in year 1 has no UTC equivalent; both paths refuse it alike.)
UTC_TIMES = st.datetimes(min_value=datetime(2, 1, 1), timezones=st.just(UTC))
TIMES = st.one_of(
    UTC_TIMES,
    UTC_TIMES.map(lambda t: t.replace(microsecond=0)),
    st.datetimes(min_value=datetime(2, 1, 1), timezones=st.just(timezone(timedelta(hours=5, minutes=30)))),
    UTC_TIMES.map(lambda t: LaterDatetime.fromisoformat(t.isoformat())),
)


@st.composite
def queues(draw) -> list:
    """Queues as the router fills them: items of one decision (`append`) or a tuple of them
    (`append_many`), sharing (or not) their region tuples, reasons, request keys and decide
    times -- as the same objects or equal copies."""
    region_sets = draw(st.lists(st.tuples(*[TEXT] * 2) | st.just(()), min_size=1, max_size=3))
    reasons = draw(
        st.lists(
            st.builds(
                Reason,
                st.sampled_from(list(ReasonCode)),
                TEXT,
                TEXT,
                TEXT,
                st.one_of(st.lists(TEXT, max_size=3).map(tuple), st.lists(TEXT, max_size=2)),
            ),
            min_size=1,
            max_size=3,
        )
    )
    requests = draw(
        st.lists(
            st.tuples(
                TEXT,
                st.integers(0, 2**63 - 1),
                st.one_of(st.none(), st.dictionaries(TEXT, TEXT, max_size=2)),
                st.sampled_from(["decide", "batch_decide", "route"]),
                TEXT,
                TEXT,
            ),
            min_size=1,
            max_size=3,
        )
    )
    times = draw(st.lists(TIMES, min_size=1, max_size=2))
    result = []
    n = 0
    for _ in range(draw(st.integers(1, 6))):
        caller, revision, context, kind, policy_hash, version = draw(st.sampled_from(requests))
        if draw(st.booleans()):  # equal values, other objects: the line must not tell them apart
            revision, context = int(str(revision)), (dict(context) if context is not None else None)
            caller, version = "".join(list(caller)), "".join(list(version))
        decisions = []
        for _ in range(draw(st.integers(1, 5))):
            n += 1
            decisions.append(draw(decision_of(n, caller, revision, version, region_sets, reasons, times)))
        if len(decisions) == 1 and draw(st.booleans()):
            result.append((decisions[0], context, kind, policy_hash))
        else:
            result.append((tuple(decisions), context, kind, policy_hash))
    return result


@st.composite
def decision_of(draw, n, caller, revision, version, region_sets, reasons, times) -> Decision:
    """Decision `n` of a request, its regions and reasons drawn from the queue's shared ones."""
    regions = draw(st.sampled_from(region_sets))
    if draw(st.booleans()):
        regions = tuple(regions)  # an equal tuple, another object
    return Decision(
        decision_id=draw(TEXT) + f"-{n}",
        outcome=draw(st.sampled_from(list(Outcome))),
        dataset_id=draw(TEXT),
        operation=draw(st.sampled_from(list(Operation))),
        region=draw(TEXT),
        allowed_regions=regions,
        reasons=tuple(draw(st.lists(st.sampled_from(reasons), max_size=3))),
        policy_version=version,
        catalog_revision=revision,
        decide_time=draw(st.sampled_from(times)),
        caller=caller,
    )


@settings(max_examples=400, deadline=None)
@given(queues())
def test_the_c_renderer_gives_the_reference_line(queue: list) -> None:
    assert_same_line(queue)


@settings(max_examples=100, deadline=None)
@given(queues(), st.integers(1, 7))
def test_lines_of_at_most_limit_decisions_start_where_the_last_ended(queue: list, limit: int) -> None:
    total = sum(len(item[0]) if type(item[0]) is tuple else 1 for item in queue)
    item = offset = seen = 0
    while item < len(queue):
        fast, reference = render_both(queue, item, offset, limit)
        assert fast == reference
        (ids, *_), item, offset = fast
        assert 1 <= len(ids) <= limit
        seen += len(ids)
    assert seen == total and offset == 0


def entry(**changes) -> tuple:
    fields = {
        "decision_id": "d1",
        "outcome": Outcome.DENY,
        "dataset_id": "s3://bank-eu/customers",
        "operation": Operation.STORE,
        "region": "aws:us-east-1",
        "allowed_regions": ("aws:eu-central-1",),
        "reasons": (
            Reason(
                ReasonCode.RULE_DENIED,
                "EU personal data stays in the EU",
                "gdpr",
                "GDPR Art. 44",
                ("s3://bank-eu/customers",),
            ),
        ),
        "policy_version": "2026.11.1",
        "catalog_revision": 7,
        "decide_time": datetime(2026, 11, 30, 10, 0, 0, 5, tzinfo=UTC),
        "caller": "",
    }
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
        pytest.param(
            entry(reasons=(Reason(ReasonCode.RULE_DENIED, "m", "r", "c", PathTuple(("p",))),)), id="path-tuple-subclass"
        ),  # (orjson refuses tuple subclasses)
        pytest.param(("not", "an", "entry"), id="short-entry"),
    ],
)
def test_shapes_the_router_never_appends_are_left_to_python(odd: tuple) -> None:
    good = entry()
    assert render([good, odd]) is None
    assert render([good, (odd[0], *odd[1:])] if len(odd) == 4 else [odd]) is None  # inside a batch too


def test_operation_text_renders_through_the_fallback_like_the_reference() -> None:
    # A str where an Enum is expected: C declines, the reference decides (it raises here).
    queue = [entry(operation="store")]
    with pytest.raises(AttributeError):
        decision_log._render_python(queue, 0, 0, 10)
    with pytest.raises(AttributeError):
        decision_log._render_line(queue, 0, 0, 10)


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        pytest.param(entry(dataset_id="\ud800"), UnicodeEncodeError, id="lone-surrogate"),
        pytest.param(entry(decide_time=datetime(2026, 11, 30)), ValueError, id="naive-time"),
    ],
)
def test_what_the_reference_refuses_the_c_renderer_refuses(bad: tuple, error: type[Exception]) -> None:
    with pytest.raises(error):
        render([bad])
    with pytest.raises((error, TypeError)):  # orjson's error for the surrogate is a TypeError
        decision_log._render_python([bad], 0, 0, 10)


def test_bad_arguments_raise() -> None:
    queue = [entry()]
    for item, offset, limit in ((2, 0, 1), (0, 2, 1), (0, 0, 0), (-1, 0, 1)):
        with pytest.raises(IndexError):
            render(queue, item, offset, limit)
    with pytest.raises(TypeError):
        native.render(tuple(queue), 0, 0, 1, decision_log._request_parts, decision_log._format_time)
    with pytest.raises(TypeError):
        native.render(queue, 0, 0, 1, lambda key: "not bytes", decision_log._format_time)


def test_many_distinct_region_sets_and_reasons_in_one_line() -> None:
    # More distinct objects than the identity tables start with: they grow.
    queue = [
        entry(
            decision_id=f"d{n}",
            allowed_regions=(f"r{n % 300}",),
            reasons=(Reason(ReasonCode.RULE_DENIED, f"m{n % 200}", "r", "c", (f"p{n}",)),),
        )
        for n in range(1000)
    ]
    assert_same_line(queue)
    (_, _, region_sets, reasons), _, _ = render(queue)
    assert len(region_sets) == 300 and len(reasons) == 200


@pytest.mark.parametrize("special", ['"', "\\", "\n", "\x00", "\x1f", "\x7f", "é", "\u2028", " ", "~"])
def test_strings_render_alike_whatever_the_position_of_a_special_character(special: str) -> None:
    # The C renderer scans eight bytes at a time for characters to escape: each position in
    # and around those words, in ids, messages and lineage paths alike.
    for position in range(26):
        text = "s3://bank/"[:position] + "x" * max(0, position - 10) + special + "yz" * (position % 5)
        reason = Reason(ReasonCode.RULE_DENIED, "m" + text, "r", "c" + text, (text, "a" + text))
        assert_same_line([entry(dataset_id=text, reasons=(reason,)), entry(decision_id=text + text)])


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


def test_untrack_takes_decisions_and_their_reasons_out_of_the_collectors_sight() -> None:
    import gc

    decisions = [
        entry(
            decision_id=f"d{n}",
            reasons=(
                Reason(ReasonCode.RULE_DENIED, "m", "r", "c", ("s3://a", f"s3://b{n}")),
                Reason(ReasonCode.DEFAULT_DENIED, "no rule"),
            ),
        )[0]
        for n in range(3)
    ]
    reasons = [d.reasons for d in decisions] + [r for d in decisions for r in d.reasons]
    others = [[1], ("a", [2]), {"k": [3]}]
    assert all(gc.is_tracked(o) for o in decisions + reasons + others)
    native.untrack(decisions + others)
    assert not any(gc.is_tracked(o) for o in decisions + reasons)
    assert all(gc.is_tracked(o) for o in others)
    native.untrack(decisions)  # idempotent
    del decisions, reasons  # reference counting still frees them
    with pytest.raises(TypeError):
        native.untrack(tuple(others))


class Text(str):
    """A str subclass: its instances have a __dict__, so they can hold anything."""


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"reasons": ([1], ("not", "a", "reason"))}, id="reasons-not-reasons"),
        pytest.param({"reasons": [Reason(ReasonCode.DEFAULT_DENIED, "no rule")]}, id="reasons-list"),
        pytest.param({"reasons": (Reason(ReasonCode.RULE_DENIED, "m", "r", "c", ["s3://a"]),)}, id="path-list"),
        pytest.param({"dataset_id": Text("s3://a")}, id="id-subclass"),
        pytest.param({"decide_time": LaterDatetime(2026, 11, 30, tzinfo=UTC)}, id="time-subclass"),
        pytest.param({"allowed_regions": ("aws:eu-central-1", [1])}, id="regions-not-text"),
    ],
)
def test_untrack_leaves_decisions_that_could_be_in_a_cycle_tracked(changes: dict) -> None:
    # Whatever holds something that could refer back to the decision stays in the
    # collector's sight, whole: a cycle through it is still found and freed.
    import gc
    import weakref

    decision = entry(**changes)[0]
    native.untrack([decision])
    assert gc.is_tracked(decision)
    if "dataset_id" in changes:  # a decision that refers to itself through its dataset id
        holder = Text("s3://cycle")
        cyclic = entry(dataset_id=holder)[0]
        holder.decision = cyclic
        native.untrack([cyclic])
        alive = weakref.ref(holder)
        del holder, cyclic
        gc.collect()
        assert alive() is None


# -- encode_batch --------------------------------------------------------------------------------


def encode_both(decisions: list) -> tuple[bytes | None, bytes]:
    fast_encoder, reference = DecisionEncoder(), DecisionEncoder()
    fast = native.encode_batch(
        decisions,
        _OPERATION,
        fast_encoder._verdict_fragment,
        fast_encoder._context_fragment,
        fast_encoder._reason_texts,
    )
    return fast, reference.encode_batch_python(decisions)


@settings(max_examples=300, deadline=None)
@given(queues())
def test_the_c_encoder_writes_the_reference_bytes(queue: list) -> None:
    decisions = [d for item in queue for d in (item[0] if type(item[0]) is tuple else (item[0],))]
    decisions = [
        d._replace(reasons=tuple(r._replace(lineage_path=tuple(r.lineage_path)) for r in d.reasons)) for d in decisions
    ]
    fast, reference = encode_both(decisions)
    assert fast == reference
    assert fast == encode_both(decisions + decisions)[0][: len(fast)]  # and again, from its caches
    assert len(residency_pb2.BatchDecideResponse.FromString(fast).decisions) == len(decisions)


def test_the_encoder_uses_c_and_falls_back_to_python_for_odd_shapes() -> None:
    good = entry()[0]
    assert encode_both([])[0] == b""
    encoder = DecisionEncoder()
    callbacks = (encoder._verdict_fragment, encoder._context_fragment, encoder._reason_texts)
    for odd in (good._replace(reasons=[]), good._replace(dataset_id=3), "not a decision"):
        assert native.encode_batch([good, odd], _OPERATION, *callbacks) is None
    with pytest.raises(TypeError):
        native.encode_batch([good], _OPERATION, *callbacks[:2], lambda reason: b"not a pair")
    encoder = DecisionEncoder()
    assert encoder.encode_batch(iter([good])) == DecisionEncoder().encode_batch_python([good])
    with pytest.raises(UnicodeEncodeError):
        DecisionEncoder().encode_batch([good._replace(region="\ud800")])


# -- parse_batch ---------------------------------------------------------------------------------

from domicile.catalog.regions import RegionRegistry  # noqa: E402
from domicile.errors import DomicileError  # noqa: E402
from domicile.router.service import _OPERATIONS_BY_VALUE, MAX_BATCH, _batch_questions  # noqa: E402

REGIONS = RegionRegistry.builtin()
REGION_TEXT = st.sampled_from(["aws:eu-central-1", "aws:us-east-1", "aws:nowhere-1", "", " aws:us-east-1", "é"])
ID_TEXT = st.one_of(
    st.sampled_from(["s3://bank/a", "s3://bank/b c", " s3://x", "s3://x ", "", "x" * 513, "x" * 512]),
    st.text(max_size=6),
)


def parse_both(data: bytes):
    fast = native.parse_batch(data, REGIONS.by_id, _OPERATIONS_BY_VALUE, MAX_BATCH)
    try:
        reference = _batch_questions(residency_pb2.BatchDecideRequest.FromString(data), REGIONS)
    except (DomicileError, Exception):  # invalid fields, or not protobuf at all
        reference = None
    return fast, reference


@settings(max_examples=300, deadline=None)
@given(
    requests=st.lists(
        st.builds(residency_pb2.DecideRequest, dataset_id=ID_TEXT, operation=st.integers(0, 3), region=REGION_TEXT),
        max_size=4,
    ),
    noise=st.binary(max_size=6),
    where=st.integers(0, 2),
)
def test_parse_batch_reads_plain_requests_as_protobuf_and_the_checks_do(requests, noise, where) -> None:
    data = residency_pb2.BatchDecideRequest(requests=requests).SerializeToString()
    # Unknown fields, repeated fields, damage: spliced in at the start, the middle or the end.
    at = (0, len(data) // 2, len(data))[where]
    for variant in (data, data[:at] + noise + data[at:], data + data):
        fast, reference = parse_both(variant)
        if fast is not None:  # what it takes, it reads exactly as protobuf and the checks do
            assert fast == reference
    fast, reference = parse_both(data)
    plain = all(r.dataset_id.isascii() and r.dataset_id.isprintable() for r in requests)
    if reference is not None and plain:  # and it takes every plain valid batch
        assert fast == reference
    if fast:  # its questions are out of the collector's sight (text and an enum member)
        import gc

        assert not any(gc.is_tracked(question) for question in fast)


def test_parse_batch_takes_unknown_and_repeated_fields_as_protobuf_does() -> None:
    item = residency_pb2.DecideRequest(dataset_id="s3://a", operation=1, region="aws:us-east-1").SerializeToString()
    item += b"\x0a\x06s3://b" + b"\x10\x02" + b"\x98\x01\x05" + b"\x22\x00"  # later id and operation win; unknowns
    data = b"\x0a" + bytes([len(item)]) + item + b"\x10\x07"  # an unknown varint field in the batch
    fast, reference = parse_both(data)
    assert fast == reference == [("s3://b", _OPERATIONS_BY_VALUE[2], "aws:us-east-1")]
    for broken in (data[:-1], b"\x0a\x05abc", b"\x00\x01", b"\x0b", b"\x08\x01"):
        assert native.parse_batch(broken, REGIONS.by_id, _OPERATIONS_BY_VALUE, MAX_BATCH) is None
    # What protobuf calls corrupt, C never takes: over-long tags and lengths, field numbers past
    # 2^29 - 1, and a string copy that is not UTF-8 even when a later copy replaces it.
    plain_item = b"\x0a\x03abc\x10\x01\x1a\x0daws:us-east-1"
    assert native.parse_batch(
        b"\x0a" + bytes([len(plain_item)]) + plain_item, REGIONS.by_id, _OPERATIONS_BY_VALUE, MAX_BATCH
    ) == [("abc", _OPERATIONS_BY_VALUE[1], "aws:us-east-1")]

    def request(item: bytes) -> bytes:
        return b"\x0a" + bytes([len(item)]) + item

    corrupt = [
        request(b"\x88\x80\x80\x80\x80\x01\x01" + plain_item),  # a 6-byte tag inside a request
        b"\x8a\x80\x80\x80\x80\x00" + bytes([len(plain_item)]) + plain_item,  # ... for the request itself
        b"\x0a\x80\x80\x80\x80\x80\x00",  # a 6-byte length
        request(b"\x88\x80\x80\x80\x80\x02\x01" + plain_item),  # field number 2^32 + 1
        request(b"\x0a\x01\xff" + plain_item),  # a dataset_id copy that is not UTF-8
        request(b"\x1a\x01\xff" + plain_item),  # a region copy likewise
        request(plain_item + b"\x20" + b"\x80" * 10 + b"\x00"),  # an 11-byte varint
    ]
    for data in corrupt:
        with pytest.raises(DecodeError):
            residency_pb2.BatchDecideRequest.FromString(data)
        assert native.parse_batch(data, REGIONS.by_id, _OPERATIONS_BY_VALUE, MAX_BATCH) is None
    assert native.parse_batch(data * 3, REGIONS.by_id, _OPERATIONS_BY_VALUE, 2) is None  # too many: checked in Python


# -- decide_batch --------------------------------------------------------------------------------

from dataclasses import dataclass  # noqa: E402

from domicile.router.types import Verdict  # noqa: E402


@dataclass(slots=True)
class FakeAttrs:
    engine_cache: object = None


def test_decide_batch_looks_up_what_it_can_and_asks_python_for_the_rest() -> None:
    token = object()
    allow = Verdict(Outcome.ALLOW, ("r1",), ())
    explanation = object()
    cached = (token, ({"r1": allow}, None), ({"r2": explanation}, None), "signature", (), ())
    views = {
        "a": FakeAttrs(cached),
        "b": FakeAttrs(None),  # nothing remembered yet
        "c": FakeAttrs((object(), *cached[1:])),  # remembered by an earlier policy
        "d": FakeAttrs("odd"),
        "e": FakeAttrs((token, ({"r1": ("not", "a verdict")}, None), *cached[2:])),
        "f": type("Other", (), {"engine_cache": cached})(),  # not the attributes type
    }
    asked = []

    def deny(attrs, entry, found):
        asked.append(("deny", attrs is views["a"], entry is cached, found is explanation))
        return Verdict(Outcome.DENY, (), (Reason(ReasonCode.RULE_DENIED, "m"),))

    def slow(dataset_id, op, region):
        asked.append(("slow", dataset_id, op, region))
        return Verdict(Outcome.DENY, (), ())

    requests = [
        ("a", Operation.STORE, "r1"),
        ["a", Operation.STORE, "r2"],
        ("a", Operation.STORE, "r3"),
        ("a", Operation.PROCESS, "r1"),
        ("b", Operation.STORE, "r1"),
        ("c", Operation.STORE, "r1"),
        ("d", Operation.STORE, "r1"),
        ("e", Operation.STORE, "r1"),
        ("f", Operation.STORE, "r1"),
        ("zz", Operation.STORE, "r1"),
    ]
    now = datetime(2026, 11, 30, tzinfo=UTC)
    ids = iter(f"id{n}" for n in range(100))
    decisions = native.decide_batch(
        requests,
        views,
        FakeAttrs,
        token,
        Operation.STORE,
        Decision,
        Reason,
        Outcome.DENY,
        ReasonCode.RULE_DENIED,
        ids,
        "v1",
        7,
        now,
        "alice",
        deny,
        slow,
    )
    # (a request given as a list is unpacked as the Python loop unpacks it)
    assert asked == [("deny", True, True, True)] + [("slow", *request) for request in requests[2:]]
    assert decisions[0] == Decision(
        "id0", Outcome.ALLOW, "a", Operation.STORE, "r1", ("r1",), (), "v1", 7, now, "alice"
    )
    assert decisions[1].reasons == (Reason(ReasonCode.RULE_DENIED, "m"),)
    assert [d.decision_id for d in decisions] == [f"id{n}" for n in range(len(requests))]
    assert all(type(d) is Decision for d in decisions)


def test_decide_batch_refuses_bad_arguments_and_passes_errors_on() -> None:
    now = datetime(2026, 11, 30, tzinfo=UTC)

    def call(requests, slow, ids=None):
        return native.decide_batch(
            requests,
            {},
            FakeAttrs,
            object(),
            Operation.STORE,
            Decision,
            Reason,
            Outcome.DENY,
            ReasonCode.RULE_DENIED,
            ids or iter(["x", "y"]),
            "v1",
            7,
            now,
            "",
            slow,
            slow,
        )

    def failing(*args):
        raise RuntimeError("from Python")

    with pytest.raises(ValueError):
        call([("a", Operation.STORE)], failing)  # not a (dataset_id, operation, region)
    with pytest.raises(TypeError):
        call([17], failing)
    with pytest.raises(TypeError):
        call([("a", Operation.STORE, "r")], lambda *args: ("not", "a verdict"))
    with pytest.raises(RuntimeError, match="from Python"):
        call([("a", Operation.STORE, "r")], failing)
    with pytest.raises(RuntimeError, match="ran out"):
        call([("a", Operation.STORE, "r")], lambda *args: Verdict(Outcome.DENY, (), ()), ids=iter([]))
    with pytest.raises(TypeError):
        native.decide_batch([], {}, FakeAttrs)
    with pytest.raises(TypeError):  # no engine_cache slot
        native.decide_batch(
            [],
            {},
            int,
            object(),
            Operation.STORE,
            Decision,
            Reason,
            Outcome.DENY,
            ReasonCode.RULE_DENIED,
            iter([]),
            "v",
            1,
            now,
            "",
            None,
            None,
        )
