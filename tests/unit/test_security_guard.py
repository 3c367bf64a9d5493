"""Guard admission order and the security event log format."""

from __future__ import annotations

import asyncio
import json
import stat
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from domicile.errors import DomicileError, ErrorCode
from domicile.security.budgets import Budget, Budgets, Resource
from domicile.security.events import SecurityEventLog
from domicile.security.guard import Guard, bearer_token, peer_host, trace_id_from
from domicile.security.ratelimit import RateLimiter
from domicile.security.tokens import TokenVerifier, VerificationKey, mint_token

KEY = ec.generate_private_key(ec.SECP256R1())
EVENT_KEYS = {"time", "event", "outcome", "principal", "method", "peer", "trace_id", "reason", "detail"}
METHOD = "/domicile.v1.CatalogService/UpsertDataset"


def bearer(scopes=("catalog:write",), subject="svc-a") -> str:
    return "Bearer " + mint_token(
        KEY, algorithm="ES256", issuer="iss", audience="aud", subject=subject, scopes=scopes, ttl_seconds=60
    )


@pytest.fixture
def log_path(tmp_path):
    return tmp_path / "security.jsonl"


@pytest.fixture
def guard(log_path):
    verifier = TokenVerifier(
        [VerificationKey(KEY.public_key(), None, "t")],
        issuer="iss",
        audience="aud",
        algorithms=["ES256"],
        leeway_seconds=0,
    )
    events = SecurityEventLog(log_path)
    budgets = Budgets(
        {
            Resource.REQUESTS: Budget(per_second=0.001, burst=2),
            Resource.DECISIONS: Budget(per_second=1, burst=10),
            Resource.LINEAGE_EDGES: Budget(per_second=1, burst=10),
        },
        events,
    )
    yield Guard(verifier, events, budgets)
    events.close()


def events_in(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def admit(guard, authorization, required=frozenset({"catalog:write"}), method=METHOD):
    return asyncio.run(
        guard.admit(
            method=method,
            required=required,
            authorization=authorization,
            certificate_der=None,
            peer="ipv4:10.0.0.7:5000",
            trace_id="t" * 32,
        )
    )


def refusal(call) -> DomicileError:
    with pytest.raises(DomicileError) as info:
        call()
    return info.value


def test_admitted_caller_and_no_event(guard, log_path):
    assert admit(guard, bearer()).subject == "svc-a"
    assert events_in(log_path) == []


def test_each_refusal_has_its_code_and_one_event(guard, log_path):
    missing = refusal(lambda: admit(guard, None))
    assert (missing.code, missing.reason, missing.metadata["trace_id"]) == (
        ErrorCode.UNAUTHENTICATED,
        "MISSING_TOKEN",
        "t" * 32,
    )
    assert refusal(lambda: admit(guard, "Basic dXNlcjpwdw==")).reason == "MISSING_TOKEN"
    assert refusal(lambda: admit(guard, "Bearer nonsense")).code is ErrorCode.UNAUTHENTICATED
    denied = refusal(lambda: admit(guard, bearer(scopes=["catalog:read"], subject="reader")))
    assert (denied.code, denied.reason) == (ErrorCode.PERMISSION_DENIED, "MISSING_SCOPE")
    unmapped = refusal(lambda: admit(guard, bearer(subject="other"), required=None, method="/x.Y/Z"))
    assert (unmapped.code, unmapped.reason) == (ErrorCode.PERMISSION_DENIED, "UNMAPPED_METHOD")
    logged = events_in(log_path)
    assert [(e["event"], e["reason"]) for e in logged] == [
        ("auth_failure", "MISSING_TOKEN"),
        ("auth_failure", "MISSING_TOKEN"),
        ("auth_failure", "MALFORMED_TOKEN"),
        ("authz_denied", "MISSING_SCOPE"),
        ("authz_denied", "UNMAPPED_METHOD"),
    ]
    for event in logged:
        assert set(event) == EVENT_KEYS
        assert event["outcome"] == "denied" and event["peer"] == "ipv4:10.0.0.7:5000" and event["trace_id"] == "t" * 32
    assert logged[3]["principal"] == "reader" and logged[3]["detail"] == {"required": "catalog:write"}
    assert "nonsense" not in log_path.read_text()


def test_rate_limit_applies_per_principal_before_scopes(guard, log_path):
    admit(guard, bearer())
    admit(guard, bearer())
    limited = refusal(lambda: admit(guard, bearer(scopes=["catalog:read"])))
    assert (limited.code, limited.reason) == (ErrorCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    assert limited.retry_after > 0
    assert admit(guard, bearer(subject="svc-b")).subject == "svc-b"
    (event,) = events_in(log_path)
    assert event["event"] == "rate_limited" and event["principal"] == "svc-a"
    assert event["detail"]["retry_after_seconds"] > 0 and event["detail"]["resource"] == "requests"


def test_event_log_file_is_private_and_rejects_unknown_types(log_path):
    events = SecurityEventLog(log_path)
    events.record("policy_change", outcome="ok", principal="alice (via ci)", trace_id="abc", version="v7")
    with pytest.raises(ValueError):
        events.record("something_else", outcome="ok")
    events.close()
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o600
    (event,) = events_in(log_path)
    assert event["event"] == "policy_change" and event["detail"] == {"version": "v7"}
    assert time.strftime("%Y-%m-%dT", time.gmtime()) in event["time"] and event["time"].endswith("Z")


def test_bearer_and_trace_parsing():
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc ") == "abc"
    assert bearer_token("Bearer ") is None and bearer_token(None) is None
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert trace_id_from(parent) == "4bf92f3577b34da6a3ce929d0e0e4736"
    generated = trace_id_from("garbage")
    assert len(generated) == 32 and generated != trace_id_from(None)


def admit_from(guard, authorization, *, peer="ipv4:10.0.0.7:5000", certificate_der=None):
    return asyncio.run(
        guard.admit(
            method=METHOD,
            required=frozenset({"catalog:write"}),
            authorization=authorization,
            certificate_der=certificate_der,
            peer=peer,
            trace_id="t" * 32,
        )
    )


@pytest.fixture
def throttling_guard(log_path):
    verifier = TokenVerifier(
        [VerificationKey(KEY.public_key(), None, "t")],
        issuer="iss",
        audience="aud",
        algorithms=["ES256"],
        leeway_seconds=0,
    )
    events = SecurityEventLog(log_path)
    yield Guard(verifier, events, None, failure_limiter=RateLimiter(rate=0.001, burst=3))
    events.close()


def test_a_client_spending_its_failure_budget_gets_no_log_line_per_failure(throttling_guard, log_path):
    guard = throttling_guard
    for _ in range(3):
        assert refusal(lambda: admit_from(guard, "Bearer not-a-jwt")).code is ErrorCode.UNAUTHENTICATED
    # The 4th failure spends the budget; further failures are refused without a log line.
    assert refusal(lambda: admit_from(guard, None)).code is ErrorCode.UNAUTHENTICATED
    before = len(events_in(log_path))
    for _ in range(20):
        throttled = refusal(lambda: admit_from(guard, "Bearer not-a-jwt"))
        assert throttled.code is ErrorCode.RESOURCE_EXHAUSTED and throttled.reason == "TOO_MANY_AUTH_FAILURES"
        assert throttled.retry_after and throttled.retry_after > 0
    assert len(events_in(log_path)) == before, "a throttled client must not grow the log"
    assert [e["reason"] for e in events_in(log_path)].count("TOO_MANY_AUTH_FAILURES") == 1


def test_a_valid_token_is_never_refused_for_failures_at_its_address(throttling_guard):
    """Clients behind one NAT or sidecar share an address: one of them sending bad tokens
    must not lock the others out."""
    guard = throttling_guard
    for _ in range(10):
        refusal(lambda: admit_from(guard, "Bearer not-a-jwt"))
    assert refusal(lambda: admit_from(guard, "Bearer not-a-jwt")).reason == "TOO_MANY_AUTH_FAILURES"
    assert admit_from(guard, bearer()).subject == "svc-a"
    assert admit_from(guard, bearer(subject="svc-b")).subject == "svc-b"


def test_failures_are_budgeted_per_client_certificate(throttling_guard):
    guard = throttling_guard
    for _ in range(10):
        refusal(lambda: admit_from(guard, "Bearer not-a-jwt", certificate_der=b"certificate of client a"))
    spent = refusal(lambda: admit_from(guard, "Bearer not-a-jwt", certificate_der=b"certificate of client a"))
    assert spent.reason == "TOO_MANY_AUTH_FAILURES"
    # Another certificate over the same address has a budget of its own, and so has the
    # address itself (clients without a certificate).
    other = refusal(lambda: admit_from(guard, "Bearer not-a-jwt", certificate_der=b"certificate of client b"))
    assert other.code is ErrorCode.UNAUTHENTICATED
    assert refusal(lambda: admit_from(guard, "Bearer not-a-jwt")).code is ErrorCode.UNAUTHENTICATED


def test_peer_host():
    assert peer_host("ipv4:10.0.0.7:5000") == "10.0.0.7"
    assert peer_host("ipv6:[::1]:5000") == "::1"
    assert peer_host("192.168.1.5") == "192.168.1.5"
