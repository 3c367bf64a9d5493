"""router/_native.c's BatchDecide request parser against the protobuf parsing and checks it
stands in for: for any request it takes, the same questions; plain valid batches it always
takes. (Its other helpers predate `Decision.inherited_only` and are not called.)"""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from domicile.catalog.regions import RegionRegistry
from domicile.errors import DomicileError
from domicile.router.native import native
from domicile.router.service import _OPERATIONS_BY_VALUE, MAX_BATCH, _batch_questions
from domicile.v1 import residency_pb2


def test_the_c_parser_is_built() -> None:
    # `pip install -e .` builds it (setup.py); without a C compiler BatchDecide still works, in
    # Python, but this suite is meant to run where the fast path is the one in use.
    assert native is not None, "router/_native.c was not built: is a C compiler installed? (pip install -e .)"


# -- parse_batch ---------------------------------------------------------------------------------


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
