"""The audit trail through a real server: each way an attacker or an operator broke it before,
now refused, reported or survived -- over real gRPC channels, on real files."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import threading
import time
from pathlib import Path

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from domicile.backup import backup, restore
from domicile.catalog.stores.sqlite import path_from_uri
from domicile.errors import DomicileError
from domicile.router.decision_log import Series, verify_series
from domicile.router.decision_log.format import seal
from domicile.server import create_server
from domicile.v1 import residency_pb2
from tests.e2e.conftest import insecure_settings
from tests.e2e.residency_harness import (
    CUSTOMERS,
    DENY,
    EXAMPLE_POLICY,
    FRANKFURT,
    STORE,
    US,
    expect_error,
    start_residency,
    stop_residency,
)
from tests.small_disk import fill
from tests.small_disk import small_disk as mounted

RESIDENCY = "domicile.v1.ResidencyService"
# Generous against a loaded machine: only a server that never recovers misses it.
RECOVERY_DEADLINE = 30.0


async def describe(harness) -> None:
    await harness.put(CUSTOMERS, classifications=["PII.CONTACT"], origins=["DE"], locations=[FRANKFURT])


def logged_ids(log_path: Path) -> list[str]:
    ids = []
    for path in Series(log_path).files():
        for line in path.read_bytes().splitlines():
            ids += [row[0] for entry in json.loads(line).get("entries", ()) for row in entry["decisions"]]
    return ids


def forge(log_path: Path, decision_id: str) -> int:
    """Turn the logged DENY `decision_id` into an ALLOW and recompute that line's hash, as an
    attacker with write access to the file would; returns the line number (1-based)."""
    lines = log_path.read_bytes().splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines) if decision_id.encode() in line)
    body = json.loads(lines[number])
    for entry in body["entries"]:
        for row in entry["decisions"]:
            if row[0] == decision_id:
                row[4] = "allow"
    del body["hash"]
    lines[number] = seal(json.dumps(body, separators=(",", ":")).encode()[:-1])[0]
    log_path.write_bytes(b"".join(lines))
    return number + 1


async def test_a_forged_decision_is_refused_by_get_decision_and_at_the_next_start(tmp_path) -> None:
    harness = await start_residency(tmp_path, policy=EXAMPLE_POLICY)
    try:
        await describe(harness)
        denied = await harness.decide(CUSTOMERS, US)
        for _ in range(3):
            await harness.decide(CUSTOMERS, FRANKFURT)  # lines after it
        assert denied.outcome == DENY
        got = await harness.residency.GetDecision(residency_pb2.GetDecisionRequest(decision_id=denied.decision_id))
        assert got.decision == denied and got.proof.line_seq > 0 and got.proof.replica_id
        line = forge(harness.app.settings.decision_log_path, denied.decision_id)
        details = await expect_error(
            harness.residency.GetDecision(residency_pb2.GetDecisionRequest(decision_id=denied.decision_id)),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert details["reason"] == "DECISION_LOG_CORRUPT"
    finally:
        await stop_residency(harness)
    with pytest.raises(DomicileError) as info:
        await create_server(insecure_settings(tmp_path, policy=EXAMPLE_POLICY, http_listen=""))
    assert info.value.reason == "DECISION_LOG_CORRUPT" and f"line {line + 1}" in str(info.value)


async def test_garbage_in_a_middle_line_stops_the_server_from_starting(tmp_path) -> None:
    harness = await start_residency(tmp_path, policy=EXAMPLE_POLICY)
    try:
        for _ in range(3):
            await harness.decide(CUSTOMERS, US)
    finally:
        await stop_residency(harness)
    log_path = harness.app.settings.decision_log_path
    lines = log_path.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2][:20] + b"\x00\x00 not json \xff" + lines[2][40:]
    log_path.write_bytes(b"".join(lines))
    with pytest.raises(DomicileError) as info:
        await create_server(insecure_settings(tmp_path, policy=EXAMPLE_POLICY, http_listen=""))
    assert info.value.reason == "DECISION_LOG_CORRUPT" and "line 3" in str(info.value)


async def test_get_decision_names_the_replica_that_made_another_replicas_decision(tmp_path) -> None:
    harness = await start_residency(tmp_path, policy=EXAMPLE_POLICY, audit={"replica_id": "eu-west-a"})
    try:
        decision = await harness.decide(CUSTOMERS, US)
        assert decision.decision_id.startswith("eu-west-a:")
        other = "eu-west-b:" + decision.decision_id.split(":", 1)[1]
        details = await expect_error(
            harness.residency.GetDecision(residency_pb2.GetDecisionRequest(decision_id=other)),
            grpc.StatusCode.NOT_FOUND,
        )
        assert details["reason"] == "DECISION_OF_ANOTHER_REPLICA" and details["metadata"] == {"replica": "eu-west-b"}
    finally:
        await stop_residency(harness)


async def test_a_batch_whose_answer_cannot_be_sent_is_refused_before_anything_is_logged(tmp_path) -> None:
    harness = await start_residency(tmp_path, policy=EXAMPLE_POLICY, max_message_bytes=64 * 1024)
    try:
        await describe(harness)
        await harness.decide(CUSTOMERS, US)
        before = logged_ids(harness.app.settings.decision_log_path)
        batch = residency_pb2.BatchDecideRequest(
            requests=[residency_pb2.DecideRequest(dataset_id=CUSTOMERS, operation=STORE, region=US)] * 1000
        )
        details = await expect_error(harness.residency.BatchDecide(batch), grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert details["reason"] == "ANSWER_TOO_LARGE" and int(details["metadata"]["answer_bytes"]) > 64 * 1024
        await harness.router.flush_decision_log()
        assert logged_ids(harness.app.settings.decision_log_path) == before  # nothing of the batch
        small = residency_pb2.BatchDecideRequest(requests=batch.requests[:10])
        assert len((await harness.residency.BatchDecide(small)).decisions) == 10
    finally:
        await stop_residency(harness)


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (needs root; skipped otherwise)."""
    with mounted(tmp_path, "1m") as mount_point:
        yield mount_point


async def until(harness, service: str, status: int) -> None:
    deadline = asyncio.get_running_loop().time() + RECOVERY_DEADLINE
    while await health_of(harness, service) != status:
        assert asyncio.get_running_loop().time() < deadline, f"{service} did not become {status}"
        await asyncio.sleep(0.05)


async def health_of(harness, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(harness.channel)
    return (await stub.Check(health_pb2.HealthCheckRequest(service=service))).status


async def test_a_full_disk_then_freed_decisions_resume_without_a_restart(tmp_path, small_disk) -> None:
    harness = await start_residency(
        tmp_path,
        policy=EXAMPLE_POLICY,
        http_listen="127.0.0.1:0",
        decision_log=small_disk / "decisions.jsonl",
        audit={"min_free_bytes": 0},
    )
    http = f"http://127.0.0.1:{harness.running.http_port}/healthz"
    try:
        await describe(harness)
        assert (await harness.decide(CUSTOMERS, US)).outcome == DENY
        filler = fill(small_disk)
        details = await expect_error(
            harness.residency.Decide(residency_pb2.DecideRequest(dataset_id=CUSTOMERS, operation=STORE, region=US)),
            grpc.StatusCode.UNAVAILABLE,
        )
        assert details["reason"] == "DECISION_LOG_UNWRITABLE" and details["retry_after"] >= 1
        await until(harness, RESIDENCY, health_pb2.HealthCheckResponse.NOT_SERVING)  # (health checks every 2 s)
        assert await health_of(harness, "") == health_pb2.HealthCheckResponse.NOT_SERVING
        async with aiohttp.ClientSession() as session, session.get(http) as response:
            body = await response.json()
            assert response.status == 503 and any("No space left" in problem for problem in body["problems"])
        filler.unlink()
        await until(harness, RESIDENCY, health_pb2.HealthCheckResponse.SERVING)
        decision = await harness.decide(CUSTOMERS, US)
        async with aiohttp.ClientSession() as session, session.get(http) as response:
            assert response.status == 200
    finally:
        await stop_residency(harness)
    assert decision.decision_id in logged_ids(small_disk / "decisions.jsonl")


async def test_backup_and_restore_keep_catalog_history_and_log_together(tmp_path) -> None:
    harness = await start_residency(tmp_path, policy=EXAMPLE_POLICY)
    settings = harness.app.settings
    try:
        await describe(harness)
        before = await harness.decide(CUSTOMERS, US)
        report = await backup(settings, tmp_path / "backup")  # while the server runs
        assert report.catalog_revision >= report.log_max_catalog_revision >= 1
        await harness.put("s3://bank-eu/later", origins=["DE"])
        after = await harness.decide("s3://bank-eu/later", US)
    finally:
        await stop_residency(harness)
    copies = [path for path in (tmp_path / "backup").iterdir() if path.name != "backup.json"]
    assert {path.stat().st_mode & 0o777 for path in copies} == {0o600}  # as private as the originals
    aside = restore(settings, tmp_path / "backup")
    assert (aside / "decisions.jsonl").exists()  # what was there is kept
    restored = [settings.decision_log_path, settings.data_dir / "policies.jsonl", path_from_uri(settings.store)]
    assert {path.stat().st_mode & 0o777 for path in restored} == {0o600}
    harness = await start_residency(tmp_path, policy=EXAMPLE_POLICY)  # passes the start-up checks
    try:
        got = await harness.residency.GetDecision(residency_pb2.GetDecisionRequest(decision_id=before.decision_id))
        assert got.decision == before
        await expect_error(
            harness.residency.GetDecision(residency_pb2.GetDecisionRequest(decision_id=after.decision_id)),
            grpc.StatusCode.NOT_FOUND,
        )
        assert harness.router.catalog_revision == report.catalog_revision
    finally:
        await stop_residency(harness)


async def test_a_catalog_behind_its_decision_log_is_refused_unless_accepted(tmp_path) -> None:
    harness = await start_residency(tmp_path, policy=EXAMPLE_POLICY)
    settings = harness.app.settings
    try:
        await describe(harness)
        await backup(settings, tmp_path / "old")
        for n in range(3):  # acknowledged writes the old catalog will not have
            await harness.put(f"s3://bank-eu/later-{n}", origins=["DE"])
        await harness.decide("s3://bank-eu/later-2", US)
        logged = harness.router.catalog_revision
    finally:
        await stop_residency(harness)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp_path / 'catalog.db'}{suffix}").unlink(missing_ok=True)
    shutil.copy(tmp_path / "old" / "catalog.db", tmp_path / "catalog.db")  # the catalog alone goes back
    with pytest.raises(DomicileError) as info:
        await create_server(insecure_settings(tmp_path, policy=EXAMPLE_POLICY, http_listen=""))
    assert info.value.reason == "CATALOG_ROLLED_BACK" and f"revision {logged}" in str(info.value)
    assert "--allow-catalog-rollback" in str(info.value)
    harness = await start_residency(tmp_path, policy=EXAMPLE_POLICY, allow_catalog_rollback=True)
    await stop_residency(harness)
    notes = [
        json.loads(line)
        for line in (tmp_path / "decisions.jsonl").read_bytes().splitlines()
        if json.loads(line)["type"] == "note"
    ]
    assert notes[0]["note"] == "catalog_rollback_accepted" and notes[0]["detail"]["log_revision"] == logged
    harness = await start_residency(tmp_path, policy=EXAMPLE_POLICY)  # accepted once: the log starts from there
    await stop_residency(harness)


def test_serve_refuses_an_empty_catalog_file_unless_init(tmp_path) -> None:
    from tests.e2e.test_server_process import run_serve

    (tmp_path / "catalog.db").write_bytes(b"")
    result = run_serve(
        tmp_path,
        "--insecure",
        "--store",
        f"sqlite:///{tmp_path / 'catalog.db'}",
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "",
        "--data-dir",
        str(tmp_path),
    )
    assert result.returncode != 0 and "0-byte" in result.stderr and "--init" in result.stderr


async def test_the_security_log_anchors_checkpoints_that_audit_verify_checks(tmp_path) -> None:
    from click.testing import CliRunner

    from domicile.cli.audit import audit
    from domicile.router.decision_log.assembly import DEV_CHECKPOINT_KEY

    harness = await start_residency(
        tmp_path,
        policy=EXAMPLE_POLICY,
        audit={"anchor_file": tmp_path / "anchors" / "checkpoints.jsonl", "checkpoint_every_lines": 2},
    )
    try:
        for _ in range(5):
            await harness.decide(CUSTOMERS, US)
    finally:
        await stop_residency(harness)
    log_path = tmp_path / "decisions.jsonl"
    args = ["verify", "--log", str(log_path), "--public-key", str(tmp_path / DEV_CHECKPOINT_KEY)]
    anchors = ["--anchors", str(tmp_path / "anchors" / "checkpoints.jsonl")]
    assert CliRunner().invoke(audit, args + anchors).exit_code == 0
    lines = log_path.read_bytes().splitlines(keepends=True)
    log_path.write_bytes(b"".join(lines[:3]))  # cut after the first checkpoint
    result = CliRunner().invoke(audit, args + anchors)
    assert result.exit_code == 1 and "cut off the end" in result.output
    assert verify_series(Series(log_path).files(), None).ok  # the chain alone cannot tell


def test_after_sigkill_under_load_every_answered_decision_is_in_the_log(tmp_path) -> None:
    """The default (durable) mode: an answer leaves only after its line is fsynced, so a crash
    loses no decision a client received."""
    from domicile.v1 import residency_pb2_grpc
    from tests.e2e.test_server_process import start_server

    process, port = start_server(tmp_path)
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(number: int) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = residency_pb2_grpc.ResidencyServiceStub(channel)
            request = residency_pb2.DecideRequest(dataset_id=f"s3://load/{number}", operation=STORE, region=US)
            batch = residency_pb2.BatchDecideRequest(requests=[request] * 50)
            while not stop.is_set():
                try:
                    if number % 2:
                        ids = [(stub.Decide(request, timeout=10)).decision.decision_id]
                    else:
                        ids = [d.decision_id for d in stub.BatchDecide(batch, timeout=10).decisions]
                except grpc.RpcError:
                    return  # the server is gone
                with lock:
                    answered.extend(ids)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while len(answered) < 2_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert len(answered) >= 2_000
    logged = set()
    for path in Series(tmp_path / "decisions.jsonl").files():
        for line in path.read_bytes().split(b"\n")[:-1]:  # (a torn last line has no newline)
            logged.update(row[0] for entry in json.loads(line).get("entries", ()) for row in entry["decisions"])
    missing = [decision_id for decision_id in answered if decision_id not in logged]
    assert missing == [], f"{len(missing)} of {len(answered)} answered decisions are not in the log"
