"""Hypothesis-driven abuse of a running `--dev` server: malformed requests for every RPC
(typed messages with hostile values, and bytes that are no message at all), malformed
OpenLineage events, and arbitrary documents for the policy loader.

Whatever the input: never INTERNAL (or UNKNOWN, or HTTP 5xx), never a hang (a deadline only a
hang reaches), never a partial write (a refused call leaves the catalog's revision as it was),
and a bystander -- another principal deciding all along -- is answered every time, never
STALE_CATALOG, never refused.

The server runs on an event loop of its own thread, so that Hypothesis drives plain
synchronous clients against it.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import descriptor, message_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domicile.router.policy import MAX_ERRORS, MAX_MESSAGE, PolicyInvalid, load_policy
from domicile.security.dev_credentials import dev_paths, mint_dev_token
from domicile.server import create_server
from domicile.v1 import (
    access_pb2,
    audit_pb2,
    catalog_pb2,
    catalog_pb2_grpc,
    lineage_pb2,
    policy_pb2,
    residency_pb2,
    residency_pb2_grpc,
)
from tests.abuse.conftest import HANG, bearer, client_credentials, dev_settings, http_ssl

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same inputs on every run: CI failures reproduce
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

METHODS = [
    method
    for module in (access_pb2, audit_pb2, catalog_pb2, lineage_pb2, policy_pb2, residency_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
]
KNOWN = "s3://fuzz/known"  # among the strings fuzzed: it may be changed or deleted
BYSTANDERS = "s3://bystander/own"  # never fuzzed: the bystander's decisions stay ALLOW
REGION = "aws:eu-west-1"


# ---- the server under attack, and a bystander deciding all along ---------------------------


@dataclass(repr=False)
class Bystander:
    """Decides on a known dataset in a loop, as another principal, and keeps what went wrong."""

    channel: grpc.Channel
    metadata: list[tuple[str, str]]
    answered: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        residency = residency_pb2_grpc.ResidencyServiceStub(self.channel)
        request = residency_pb2.DecideRequest(
            dataset_id=BYSTANDERS, operation=residency_pb2.OPERATION_STORE, region=REGION
        )
        while not self.stop.is_set():
            try:
                decision = residency.Decide(request, metadata=self.metadata, timeout=HANG).decision
            except grpc.RpcError as error:
                self.failures.append(f"{error.code()}: {error.details()}")
            else:
                if decision.outcome != residency_pb2.OUTCOME_ALLOW:
                    self.failures.append(f"{decision.outcome}: {[r.code for r in decision.reasons]}")
                self.answered += 1
            time.sleep(0.01)


@dataclass(repr=False)  # Hypothesis prints the arguments of a failing example
class Target:
    run: Callable[[Coroutine[Any, Any, Any]], Any]
    server: Any
    channel: grpc.Channel
    metadata: list[tuple[str, str]]
    http_url: str
    http_ssl: ssl.SSLContext
    bystander: Bystander

    def revision(self) -> int:
        return self.run(self.server.app.store.revision())

    def post_lineage(self, body: bytes) -> tuple[int, str]:
        request = urllib.request.Request(
            f"{self.http_url}/api/v1/lineage",
            data=body,
            headers={"Content-Type": "application/json", "Authorization": self.metadata[0][1]},
        )
        try:
            with urllib.request.urlopen(request, timeout=HANG, context=self.http_ssl) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fuzz")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzzed-server", daemon=True)
    thread.start()

    def run(coroutine, timeout=HANG):
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout)

    server = run(create_server(dev_settings(directory)), timeout=10 * HANG)
    paths = dev_paths(directory)
    address = f"localhost:{server.port}"
    channel = grpc.secure_channel(address, client_credentials(paths))
    metadata = bearer(mint_dev_token(directory, subject="fuzzer"))
    for dataset_id in (KNOWN, BYSTANDERS):
        catalog_pb2_grpc.CatalogServiceStub(channel).UpsertDataset(
            catalog_pb2.UpsertDatasetRequest(dataset=catalog_pb2.Dataset(id=dataset_id, locations=[REGION])),
            metadata=metadata,
            timeout=HANG,
        )
    bystander = Bystander(
        grpc.secure_channel(address, client_credentials(paths)),
        bearer(mint_dev_token(directory, subject="bystander", scopes=["residency:decide"])),
    )
    deciding = threading.Thread(target=bystander.run, name="bystander", daemon=True)
    deciding.start()
    try:
        yield Target(
            run, server, channel, metadata, f"https://localhost:{server.http_port}", http_ssl(paths), bystander
        )
    finally:
        bystander.stop.set()
        deciding.join(HANG)
        channel.close()
        bystander.channel.close()
        run(server.stop(0))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(HANG)


def check_bystander(target: Target) -> None:
    assert target.bystander.failures == [], target.bystander.failures[:5]


# ---- requests: every field of every message, with hostile values ----------------------------

STRINGS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            KNOWN,
            "s3://fuzz/other",
            REGION,
            "*",
            "etl/job",
            "x" * 5000,
            "é" * 3000,
            "\x00",
            "\ud7ff\n\t",
            "{" * 2000,
            "eyJrIjogImRhdGFzZXRzIn0",
            "? [&a [x, x], *a]\n: x\n",
            "2026-01-01T00:00:00Z",
        ]
    ),
)
_INTEGER_BOUNDS = {
    descriptor.FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    descriptor.FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    descriptor.FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    descriptor.FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    descriptor.FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    descriptor.FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    descriptor.FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    descriptor.FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    descriptor.FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    descriptor.FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(low, high), st.sampled_from([0, 1, -1 if low < 0 else 2, low, high]))


def _scalar(field_descriptor: descriptor.FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field_descriptor.type
    if kind == descriptor.FieldDescriptor.TYPE_STRING:
        return STRINGS
    if kind == descriptor.FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == descriptor.FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (descriptor.FieldDescriptor.TYPE_DOUBLE, descriptor.FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=32 if kind == descriptor.FieldDescriptor.TYPE_FLOAT else 64)
    if kind == descriptor.FieldDescriptor.TYPE_ENUM:
        return _integers(-(2**31), 2**31 - 1)  # open enums: unknown values arrive too
    return _integers(*_INTEGER_BOUNDS[kind])


def messages(message_descriptor: descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    """Messages of this type whose every field may be set to anything its type allows."""
    cls = message_factory.GetMessageClass(message_descriptor)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field_descriptor in message_descriptor.fields:
        if field_descriptor.message_type is not None:
            if depth >= 3:
                continue
            entry = field_descriptor.message_type
            if entry.GetOptions().map_entry:
                fields[field_descriptor.name] = st.dictionaries(
                    _scalar(entry.fields_by_name["key"]), _scalar(entry.fields_by_name["value"]), max_size=4
                )
                continue
            value = messages(entry, depth + 1)
        else:
            value = _scalar(field_descriptor)
        fields[field_descriptor.name] = st.lists(value, max_size=4) if field_descriptor.is_repeated else value
    return st.fixed_dictionaries({}, optional=fields).map(lambda values: cls(**values))


def _call(target: Target, method: descriptor.MethodDescriptor, request: bytes) -> grpc.RpcError | None:
    path = f"/{method.containing_service.full_name}/{method.name}"
    call = target.channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    try:
        call(request, metadata=target.metadata, timeout=HANG)
    except grpc.RpcError as error:
        return error
    return None


def _survives(target: Target, method: descriptor.MethodDescriptor, request: bytes) -> None:
    before = target.revision()
    error = _call(target, method, request)
    if error is None:
        return
    assert error.code() not in (
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    ), f"{method.full_name}: {error.code()}: {error.details()}"
    assert target.revision() == before, f"{method.full_name} refused ({error.code()}) but wrote"


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name.removeprefix("domicile.v1."))
@FUZZ
@given(data=st.data())
def test_typed_requests_with_hostile_values(target, method, data):
    request = data.draw(messages(method.input_type), label="request")
    _survives(target, method, request.SerializeToString())
    check_bystander(target)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name.removeprefix("domicile.v1."))
@FUZZ
@given(raw=st.binary(min_size=1, max_size=200))
def test_bytes_that_are_no_request(target, method, raw):
    _survives(target, method, raw)
    check_bystander(target)


# ---- the OpenLineage endpoint ---------------------------------------------------------------

JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), STRINGS),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(STRINGS, children, max_size=4)),
    max_leaves=20,
)


def _valid_event() -> dict:
    return {
        "eventType": "COMPLETE",
        "eventTime": "2026-01-05T10:00:00Z",
        "producer": "https://example.com/fuzz",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent",
        "run": {"runId": "01937c5e-8f7a-7bbb-8d2b-6a5d3c9f0a11", "facets": {}},
        "job": {"namespace": "etl", "name": "fuzzed"},
        "inputs": [{"namespace": "s3://fuzz", "name": "known"}],
        "outputs": [
            {
                "namespace": "s3://fuzz",
                "name": "out",
                "facets": {"residency": {"region": REGION, "classifications": ["PII"], "origins": ["DE"]}},
            }
        ],
    }


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


@st.composite
def mutated_events(draw) -> bytes:
    """A valid event with one part replaced by arbitrary JSON, or arbitrary JSON, or bytes."""
    how = draw(st.sampled_from(["mutate", "json", "bytes"]))
    if how == "bytes":
        return draw(st.binary(max_size=300))
    if how == "json":
        return json.dumps(draw(JSON)).encode()
    event = _valid_event()
    path = draw(st.sampled_from(_paths(event)[1:]))
    parent = event
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = draw(JSON)
    return json.dumps(event).encode()


@FUZZ
@given(body=mutated_events())
def test_malformed_openlineage_events(target, body):
    before = target.revision()
    status, text = target.post_lineage(body)
    assert status < 500, text
    if status != 200:
        assert target.revision() == before, text
    check_bystander(target)


# ---- the policy loader ----------------------------------------------------------------------

YAML_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), STRINGS),
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(STRINGS, children, max_size=5)),
    max_leaves=30,
)


@st.composite
def policy_documents(draw) -> str:
    """Policy-shaped YAML with arbitrary values, arbitrary YAML, or arbitrary text."""
    how = draw(st.sampled_from(["policy", "yaml", "text"]))
    if how == "text":
        return draw(st.text(max_size=300))
    if how == "yaml":
        return yaml.safe_dump(draw(YAML_VALUES), allow_unicode=True)
    document = {
        "apiVersion": "domicile/v1",
        "kind": "ResidencyPolicy",
        "metadata": {"name": "fuzz", "version": "1"},
    }
    for section in draw(
        st.lists(
            st.sampled_from(
                ["regions", "groups", "rules", "declassifiers", "exemptions", "defaults", "tests", "metadata"]
            ),
            max_size=4,
        )
    ):
        document[section] = draw(YAML_VALUES)
    return yaml.safe_dump(document, allow_unicode=True)


@FUZZ
@given(text=policy_documents())
def test_the_policy_loader_loads_or_refuses_anything(text):
    errors: list = []
    try:
        load_policy(text)
    except PolicyInvalid as refused:
        errors = refused.errors
        assert errors
    assert len(errors) <= MAX_ERRORS + 1
    assert all(len(e.message) <= MAX_MESSAGE and len(e.path) <= MAX_MESSAGE for e in errors)


def test_the_bystander_was_answered_throughout(target):
    answered = target.bystander.answered
    deadline = time.monotonic() + HANG
    while target.bystander.answered == answered and time.monotonic() < deadline:
        time.sleep(0.05)
    assert target.bystander.answered > answered
    check_bystander(target)
