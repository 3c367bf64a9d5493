"""A BatchDecide's decision-log entries: rendered by the engine into one buffer and written
from where they lie (views of it) -- the bytes the log held before, the chain over many
batches through rotations and checkpoints, and a write that fails part way."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson

from domicile.catalog.model import Dataset, Edge
from domicile.errors import DomicileError
from domicile.router import _engine
from domicile.router.decision_log.format import TAIL_BYTES, ZERO_HASH, decisions_line, decisions_of_line
from domicile.router.engine import DecisionBatch, Engine, compile_policy
from domicile.router.policy import load_policy
from domicile.router.types import Operation
from tests.unit.decision_log_helpers import T0, lines, open_log, records, row_ids, verify

ROOT = Path(__file__).resolve().parents[2]
# The entries of `_fixture_batch`, one per line, as the renderer of main at 59dd192 wrote them
# (an entry at a time, joined into a bytes object): what the log must keep writing.
FIXTURE = ROOT / "tests" / "fixtures" / "batch_log_entries.jsonl"
REGIONS = ("aws:eu-central-1", "aws:us-east-1", "aws:ap-south-1", "onprem:fra-dc1", "gcp:asia-east2")
LABELS = (["PII.CONTACT"], ["PII.SPECIAL"], ["FINANCIAL.PAYMENT"], ["PII"], [], ["SECURITY.KEY_MATERIAL"])
ORIGINS = (["DE"], ["IN"], ["CN"], ["FR", "IN"], [], ["US"])


def _engine_with_catalog() -> Engine:
    """examples/policy.yaml over datasets with labels and origins of every kind, derived ones
    (lineage paths in the reasons), placeholders, and ids that JSON escapes."""
    engine = Engine(compile_policy(load_policy((ROOT / "examples" / "policy.yaml").read_text())))
    sources = [
        Dataset.create(f's3://bank/src-{n}-"q"\\é', classifications=LABELS[n % 6], origins=ORIGINS[n % 5])
        for n in range(12)
    ]
    derived = [Dataset.create(f"s3://bank/derived-{n}", placeholder=n % 3 == 0) for n in range(12)]
    edges = [Edge(input=sources[n].id, output=derived[n].id, job="etl/copy", run_id=f"r{n}") for n in range(12)] + [
        Edge(input=derived[n].id, output=derived[n + 1].id, job="etl/join", run_id=f"j{n}") for n in range(0, 11, 2)
    ]
    engine.add([*sources, *derived], edges)
    return engine


def _questions() -> list[tuple[str, Operation, str]]:
    ids = [f's3://bank/src-{n}-"q"\\é' for n in range(12)] + [f"s3://bank/derived-{n}" for n in range(12)]
    ids.append("s3://nowhere/unknown")
    return [
        (dataset, operation, REGIONS[(n + m) % len(REGIONS)])
        for n, dataset in enumerate(ids)
        for m, operation in enumerate((Operation.STORE, Operation.PROCESS, Operation.STORE))
    ]


def _fixture_batch() -> tuple[DecisionBatch, str]:
    engine = _engine_with_catalog()
    lane = _engine.LogLane("eu-1:", 100, 10_000, lambda: None)
    lane.take_ids(5)
    return engine.batch_decide(_questions(), T0, None, 11, lane, "spiffe://bank/pipeline"), engine.policy.content_hash


def _fixture_entries() -> list[bytes]:
    """The entries of the fixture batch: all of it in entries of 7, then a part in one entry,
    with context facts that JSON escapes."""
    batch, policy_hash = _fixture_batch()
    rendered = [
        *batch.log_entries({"ticket": 'T-1 "é"\n'}, "batch_decide", policy_hash, 7),
        *batch[3:40].log_entries(None, "check_job", policy_hash, 1_000),
    ]
    return [bytes(data) for data, _ in rendered]


def test_entries_are_the_bytes_the_log_held_before() -> None:
    """One renderer, one buffer: each entry (a view of the buffer) is the bytes the previous
    renderer wrote, byte for byte, and its ids are the decisions it holds."""
    assert _fixture_entries() == FIXTURE.read_bytes().splitlines()
    batch, policy_hash = _fixture_batch()
    entries = batch.log_entries(None, "batch_decide", policy_hash, 7)
    assert all(isinstance(data, memoryview) for data, _ in entries)
    assert [list(ids) for _, ids in entries] == [
        [d.decision_id for d in batch[start : start + 7]] for start in range(0, len(batch), 7)
    ]
    line, _ = decisions_line(1, ZERO_HASH, [data for data, _ in entries])
    assert [logged.decision for logged in decisions_of_line(line)] == list(batch)


def test_a_view_outlives_the_batch_and_the_other_views() -> None:
    """An entry's view keeps the buffer it lies in: the batch and the other entries may go."""
    batch, policy_hash = _fixture_batch()
    expected = [bytes(data) for data, _ in batch.log_entries(None, "batch_decide", policy_hash, 10)]
    last = batch.log_entries(None, "batch_decide", policy_hash, 10)[-1][0]
    del batch
    assert last.readonly and bytes(last) == expected[-1]
    assert orjson.loads(last)["kind"] == "batch_decide"


def _batches(count: int) -> tuple[str, list[DecisionBatch]]:
    engine = _engine_with_catalog()
    lane = _engine.LogLane("eu-1:", 100, 10_000, lambda: None)
    questions = _questions()
    return engine.policy.content_hash, [
        engine.batch_decide(questions[n % 7 :], T0, None, 11, lane, f"caller-{n}") for n in range(count)
    ]


async def test_the_chain_holds_over_many_batches_rotations_and_checkpoints(tmp_path) -> None:
    """Many batches, rendered on other threads into buffers and written from them, through
    rotations and checkpoints: every file verifies as one chain, every decision is there once
    in order, and one read back from a rotated file (the bytes this process wrote) is it."""
    path = tmp_path / "decisions.jsonl"
    policy_hash, batches = _batches(24)
    log = await open_log(path, line_decisions=16, rotate_bytes=60_000, checkpoint_lines=5)
    try:
        with ThreadPoolExecutor(2) as render:
            for n, batch in enumerate(batches):
                log.append_many(batch, kind="batch_decide", policy_hash=policy_hash, render=render)
                if n % 5 == 4:
                    await log.flush()
            await log.flush()
        first = batches[0][3]
        logged = await log.get(first.decision_id)
    finally:
        await log.close()
    assert logged is not None and logged.decision == first
    files = sorted(tmp_path.glob("decisions.*.jsonl"))
    assert len(files) >= 3  # rotated
    report = verify(path)
    assert report.ok and report.state.decisions == sum(map(len, batches))
    ids = [row for file in [*files, path] for row in row_ids(file)]
    assert ids == [d.decision_id for batch in batches for d in batch]
    decisions_lines = [record for file in [*files, path] for record in records(file) if record["type"] == "decisions"]
    assert max(len(entry["decisions"]) for record in decisions_lines for entry in record["entries"]) == 16


async def test_a_write_cut_short_then_failing_leaves_each_line_once(tmp_path, monkeypatch) -> None:
    """A writev that writes part of a batch's lines (a piece cut in the middle) and then fails:
    the writer cuts the file back and writes the same views again -- each line once, the
    chain whole, the bytes those of a log that never failed."""
    policy_hash, batches = _batches(4)
    calls = [0]
    lock = threading.Lock()
    real_writev = os.writev

    def writev(fd: int, buffers) -> int:
        with lock:
            calls[0] += 1
            call = calls[0]
        if call == 1:  # the first batch's write: half of its first entry, then a full disk
            first = [bytes(buffer) for buffer in buffers]
            cut = sum(map(len, first[:2])) + len(first[2]) // 2
            return real_writev(fd, [b"".join(first)[:cut]])
        if call in (2, 3):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_writev(fd, buffers)

    async def write(directory: Path) -> tuple[Path, list[str]]:
        path = directory / "decisions.jsonl"
        refusals = []
        log = await open_log(path, line_decisions=16, retry_initial=0.01, retry_max=0.02)
        try:
            with ThreadPoolExecutor(1) as render:
                for batch in batches:
                    log.append_many(batch, kind="batch_decide", policy_hash=policy_hash, render=render)
                    try:
                        await log.flush()
                    except DomicileError as refused:  # while the writer retries; it carries on
                        refusals.append(refused.reason)
                        await _written(log)
        finally:
            await log.close()
        return path, refusals

    clean, refused = await write(tmp_path / "clean")
    assert not refused
    monkeypatch.setattr("domicile.appendfile.os.writev", writev)
    faulty, refused = await write(tmp_path / "faulty")
    assert calls[0] >= 4 and refused == ["DECISION_LOG_UNWRITABLE"]
    assert verify(faulty).ok
    assert row_ids(faulty) == [d.decision_id for batch in batches for d in batch]

    def decision_lines(path: Path) -> list[bytes]:
        return [line for line in lines(path) if b'"type":"decisions"' in line]

    # The same decisions lines as the log that never failed (the chains differ only by their
    # first lines: each file's own creation time).
    def bodies(path: Path) -> list[bytes]:
        return [line[line.index(b',"type"') : -TAIL_BYTES] for line in decision_lines(path)]

    assert bodies(faulty) == bodies(clean)


async def _written(log) -> None:
    """Until the log wrote everything queued (its writer retries by itself after a fault)."""
    deadline = asyncio.get_running_loop().time() + 30
    while log.queued() or log.failure():
        assert asyncio.get_running_loop().time() < deadline, "the writer did not resume"
        await asyncio.sleep(0.01)
