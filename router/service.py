"""ResidencyService and PolicyService servicers: validate requests, call the Router, translate.

Errors are raised as DomicileError and mapped to gRPC statuses by
`domicile.grpc_errors.ErrorMappingInterceptor`. Every request field is checked and all
problems of a request are reported together (BadRequest field violations).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from domicile.app import App
from domicile.catalog.dataset_ids import lookup_form
from domicile.catalog.model import utcnow
from domicile.catalog.validation import check_id, check_length, check_region
from domicile.errors import DomicileError, ErrorCode, FieldErrors
from domicile.grpc_services import add_service
from domicile.lineage.recording import check_job
from domicile.router.convert import (
    OPERATION_FROM_PROTO,
    OUTCOME_FROM_PROTO,
    DecisionEncoder,
    explanation_to_proto,
    policy_change_to_proto,
    policy_error_to_proto,
    proof_to_proto,
    proposal_to_proto,
    residency_states_to_proto,
    violation_page_to_proto,
    violation_to_proto,
)
from domicile.router.decision_search import DecisionQuery
from domicile.router.policy import MAX_POLICY_BYTES
from domicile.router.policy_changes import PolicyChanges
from domicile.router.runtime import JobCheck, Router, Violation, caller_context
from domicile.router.types import Operation
from domicile.security.budgets import Resource
from domicile.security.context import current_principal
from domicile.telemetry.decisions import describe_decisions, observe_batch, observe_decisions
from domicile.telemetry.tracing import optional_span
from domicile.timeconv import optional_time, to_timestamp
from domicile.v1 import policy_pb2, policy_pb2_grpc, residency_pb2, residency_pb2_grpc

Answer = TypeVar("Answer", bound=Message)
Decided = TypeVar("Decided")

# Bounds on request sizes. A batch answer of 10,000 decisions is a few MB; one that would exceed
# `max_message_bytes` is refused before anything is logged (`ResidencyServicer._sendable`).
MAX_BATCH = 10_000
MAX_CANDIDATES = 256
MAX_JOB_DATASETS = 1_000
MAX_TRANSFORM = 256
MAX_DECISION_ID = 128
MAX_POLICY_VERSION = 256
MAX_CALLER = 1024
MAX_RULE_ID = 256
MAX_REGION = 256
DEFAULT_DECISION_PAGE = 50
DEFAULT_VIOLATION_PAGE = 100
# GetResidencyStates: a lineage graph of the console is at most a few thousand datasets.
MAX_STATE_DATASETS = 5_000
MAX_PAGE = 1000
# SummarizeDecisions: a day of minutes, a year of hours.
MAX_BUCKETS = 10_000
MAX_PROPOSAL_ID = 64
MAX_REASON = 2000
# A summary's default start is an hour before its end; an end earlier than this has none.
_EARLIEST_END = datetime.min.replace(tzinfo=UTC) + timedelta(hours=1)
# A request's `context`: facts about the asker logged with its decisions.
MAX_CONTEXT_ENTRIES = 32
MAX_CONTEXT_KEY = 128
MAX_CONTEXT_VALUE = 1024
_CONTEXT_KEY = re.compile(r"[A-Za-z0-9._:/-]+")

# The control characters `check_id` rejects (Unicode category Cc); protobuf strings are valid
# UTF-8, so they never hold surrogates (Cs). Used to skip the per-character check for ids
# that are clearly fine, which matters at 10,000 ids per BatchDecide.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _check_id(errors: FieldErrors, path: str, value: str) -> str:
    """`catalog.validation.check_id` (the id to look up), quickly for the common case."""
    # 512 characters are at most 2048 UTF-8 bytes: only longer ids need encoding.
    if (
        value
        and len(value) <= 512
        and not value[0].isspace()
        and not value[-1].isspace()
        and _CONTROL.search(value) is None
    ):
        return lookup_form(value)
    return check_id(errors, path, value)


def _check_operation(errors: FieldErrors, path: str, value: int) -> Operation | None:
    op = OPERATION_FROM_PROTO.get(value)
    if op is None:
        errors.add(path, "must be OPERATION_STORE or OPERATION_PROCESS")
    return op


def _check_policy_yaml(errors: FieldErrors, value: str) -> None:
    if not value.strip():
        errors.add("policy_yaml", "must not be empty")
    elif len(value) > MAX_POLICY_BYTES or len(value.encode("utf-8")) > MAX_POLICY_BYTES:
        errors.add("policy_yaml", f"must be at most {MAX_POLICY_BYTES} bytes")


def _check_proposal_id(errors: FieldErrors, value: str) -> None:
    if not value:
        errors.add("proposal_id", "must not be empty")
    else:
        check_length(errors, "proposal_id", value, MAX_PROPOSAL_ID)


def _check_text(errors: FieldErrors, path: str, value: str) -> None:
    """A free-text field (a reason, a comment): at most MAX_REASON characters, no control
    characters but line breaks."""
    check_length(errors, path, value, MAX_REASON)
    if _CONTROL.search(value.replace("\n", "")):
        errors.add(path, "must not contain control characters")


def _policy_changes(app: App) -> PolicyChanges:
    if app.policy_changes is None:
        raise DomicileError(
            "the residency router is not running", ErrorCode.UNAVAILABLE, "ROUTER_NOT_READY", retry_after=1.0
        )
    return app.policy_changes


def _router(app: App) -> Router:
    if app.router is None:
        raise DomicileError(
            "the residency router is not running", ErrorCode.UNAVAILABLE, "ROUTER_NOT_READY", retry_after=1.0
        )
    return app.router


class ResidencyServicer(residency_pb2_grpc.ResidencyServiceServicer):
    """domicile.v1.ResidencyService over `app.router`."""

    def __init__(self, app: App) -> None:
        self._app = app
        self._encoder = DecisionEncoder()

    async def Decide(self, request: residency_pb2.DecideRequest, context) -> bytes:
        """Answers with the serialized DecideResponse, encoded by the residency engine (see
        `add_residency_service`); the decision is counted in the metrics by the engine when the
        log takes it."""
        router = _router(self._app)
        errors = FieldErrors()
        dataset_id = _check_id(errors, "dataset_id", request.dataset_id)
        op = _check_operation(errors, "operation", request.operation)
        check_region(errors, "region", request.region, router.regions())
        _check_context(errors, "context", request.context)
        errors.raise_if_any()
        assert op is not None  # else raise_if_any raised
        self._app.charge(Resource.DECISIONS, 1)
        with optional_span("router.decide"):
            decision = router.decide(dataset_id, op, request.region, request.context, caller=current_principal())
            await router.logged()
            describe_decisions((decision,))
        return decision.answer()

    async def BatchDecide(self, request: bytes, context) -> bytes:
        """Answers with the serialized BatchDecideResponse. The request arrives serialized (see
        `add_residency_service`) and goes to the residency engine as it is: it parses and checks
        it (naming every problem, a request's `context` included: a batch logs none), decides
        and encodes the answer. The decisions are charged to the caller's budget and the
        answer's size checked before anything is logged or answered."""
        limit = self._app.settings.max_message_bytes

        def admit(count: int, answer: bytes) -> None:
            self._app.charge(Resource.DECISIONS, count)
            _check_answer_size(len(answer), limit)

        with optional_span("router.batch_decide"):
            answer, decisions = await _router(self._app).batch_decide_wire(
                request, MAX_BATCH, caller=current_principal(), admit=admit
            )
            observe_batch(decisions)
        return answer

    async def Route(self, request: residency_pb2.RouteRequest, context) -> residency_pb2.RouteResponse:
        router = _router(self._app)
        errors = FieldErrors()
        dataset_id = _check_id(errors, "dataset_id", request.dataset_id)
        op = _check_operation(errors, "operation", request.operation)
        if not request.candidates:
            errors.add("candidates", "must not be empty")
        elif len(request.candidates) > MAX_CANDIDATES:
            errors.add("candidates", f"at most {MAX_CANDIDATES} candidates")
        else:
            registry = router.regions()
            for i, region in enumerate(request.candidates):
                check_region(errors, f"candidates[{i}]", region, registry)
        errors.raise_if_any()
        assert op is not None  # else raise_if_any raised
        self._app.charge(Resource.DECISIONS, 1)
        with optional_span("router.route"):
            result = await router.route(dataset_id, op, list(request.candidates), caller=current_principal())
            describe_decisions((result.decision,))
        response = residency_pb2.RouteResponse(region=result.region)
        self._encoder.fill(response.decision, result.decision)
        return response

    async def CheckJob(self, request: residency_pb2.CheckJobRequest, context) -> residency_pb2.CheckJobResponse:
        router = _router(self._app)
        errors = FieldErrors()
        registry = router.regions()
        if not request.inputs and not request.outputs:
            errors.add("inputs", "a job needs at least one input or output")
        datasets: dict[str, list[str]] = {}
        for name in ("inputs", "outputs"):
            ids = getattr(request, name)
            if len(ids) > MAX_JOB_DATASETS:
                errors.add(name, f"at most {MAX_JOB_DATASETS} datasets")
                continue
            datasets[name] = [_check_id(errors, f"{name}[{i}]", dataset_id) for i, dataset_id in enumerate(ids)]
        if request.inputs or request.run_region:
            check_region(errors, "run_region", request.run_region, registry)
        if request.outputs or request.output_region:
            check_region(errors, "output_region", request.output_region, registry)
        check_length(errors, "transform", request.transform, MAX_TRANSFORM)
        if request.job:
            check_job(errors, "job", request.job)
        _check_context(errors, "context", request.context)
        errors.raise_if_any()
        self._app.charge(Resource.DECISIONS, len(request.inputs) + len(request.outputs))

        def answer(result: JobCheck) -> residency_pb2.CheckJobResponse:
            response = residency_pb2.CheckJobResponse(allowed=result.allowed)
            add = response.decisions.add
            for decision in result.decisions:
                self._encoder.fill(add(), decision)
            return response

        with optional_span("router.check_job"):
            result, response = await router.check_job(
                datasets["inputs"],
                datasets["outputs"],
                request.run_region,
                request.output_region,
                request.transform,
                request.job,
                request.context,
                answer=self._sendable(answer),
                caller=current_principal(),
            )
            describe_decisions(result.decisions)
        return response

    async def Explain(self, request: residency_pb2.ExplainRequest, context) -> residency_pb2.ExplainResponse:
        router = _router(self._app)
        errors = FieldErrors()
        dataset_id = _check_id(errors, "dataset_id", request.dataset_id)
        as_of = optional_time(errors, request, "as_of")
        errors.raise_if_any()
        if as_of is not None:
            return explanation_to_proto(await router.explain_at(dataset_id, as_of))
        return explanation_to_proto(router.explain(dataset_id))

    async def SummarizeDatasets(
        self, request: residency_pb2.SummarizeDatasetsRequest, context
    ) -> residency_pb2.SummarizeDatasetsResponse:
        summary = _router(self._app).summarize_datasets()

        def counts(values: dict[str, int]) -> list[residency_pb2.LabelCount]:
            return [residency_pb2.LabelCount(value=v, datasets=n) for v, n in sorted(values.items())]

        return residency_pb2.SummarizeDatasetsResponse(
            datasets=summary.datasets,
            classifications=counts(summary.classifications),
            origins=counts(summary.origins),
            regions=[
                residency_pb2.RegionCount(region=r, datasets=n, classified=c)
                for r, (n, c) in sorted(summary.regions.items())
            ],
            catalog_revision=summary.catalog_revision,
        )

    async def ScanViolations(
        self, request: residency_pb2.ScanViolationsRequest, context
    ) -> residency_pb2.ScanViolationsResponse:
        def answer(violations: list[Violation]) -> residency_pb2.ScanViolationsResponse:
            return residency_pb2.ScanViolationsResponse(
                violations=[violation_to_proto(v, self._encoder) for v in violations]
            )

        with optional_span("router.scan_violations"):
            violations, response = await _router(self._app).scan_violations(
                answer=self._sendable(answer), caller=current_principal()
            )
            observe_decisions([v.decision for v in violations])
        return response

    async def ListViolations(
        self, request: residency_pb2.ListViolationsRequest, context
    ) -> residency_pb2.ListViolationsResponse:
        router = _router(self._app)
        errors = FieldErrors()
        # Not checked against the registry: a location the policy no longer knows is a violation.
        check_length(errors, "region", request.region, MAX_REGION)
        check_length(errors, "page_token", request.page_token, 4096)
        size = _page_size(errors, request.page_size, DEFAULT_VIOLATION_PAGE)
        errors.raise_if_any()
        return violation_page_to_proto(await router.list_violations(request.region, size, request.page_token))

    async def GetResidencyStates(
        self, request: residency_pb2.GetResidencyStatesRequest, context
    ) -> residency_pb2.GetResidencyStatesResponse:
        router = _router(self._app)
        errors = FieldErrors()
        dataset_ids: list[str] = []
        if not request.dataset_ids:
            errors.add("dataset_ids", "must name at least one dataset")
        elif len(request.dataset_ids) > MAX_STATE_DATASETS:
            errors.add("dataset_ids", f"must name at most {MAX_STATE_DATASETS} datasets")
        else:
            # Named in the answer as Decide names them: in normal form (as stored).
            dataset_ids = [_check_id(errors, f"dataset_ids[{i}]", d) for i, d in enumerate(request.dataset_ids)]
        as_of = optional_time(errors, request, "as_of")
        errors.raise_if_any()
        if as_of is not None:
            return residency_states_to_proto(await router.residency_states_at(dataset_ids, as_of))
        return residency_states_to_proto(await router.residency_states(dataset_ids))

    async def GetDecision(
        self, request: residency_pb2.GetDecisionRequest, context
    ) -> residency_pb2.GetDecisionResponse:
        router = _router(self._app)
        _check_decision_id(request.decision_id)
        entry = await router.get_decision(request.decision_id)
        response = residency_pb2.GetDecisionResponse(
            decision=self._encoder.to_proto(entry.decision), proof=proof_to_proto(entry.proof)
        )
        response.decision.context.update(caller_context(entry.context))
        return response

    async def ReplayDecision(
        self, request: residency_pb2.ReplayDecisionRequest, context
    ) -> residency_pb2.ReplayDecisionResponse:
        router = _router(self._app)
        _check_decision_id(request.decision_id)
        result = await router.replay(request.decision_id)
        return residency_pb2.ReplayDecisionResponse(
            original=self._encoder.to_proto(result.original),
            replayed=self._encoder.to_proto(result.replayed),
            matches=result.matches,
            proof=proof_to_proto(result.proof),
        )

    async def ListDecisions(
        self, request: residency_pb2.ListDecisionsRequest, context
    ) -> residency_pb2.ListDecisionsResponse:
        router = _router(self._app)
        errors = FieldErrors()
        dataset_id = _check_id(errors, "dataset_id", request.dataset_id) if request.dataset_id else ""
        check_length(errors, "caller", request.caller, MAX_CALLER)
        check_length(errors, "rule_id", request.rule_id, MAX_RULE_ID)
        outcome = OUTCOME_FROM_PROTO.get(request.outcome)
        if request.outcome and outcome is None:
            errors.add("outcome", "must be OUTCOME_ALLOW or OUTCOME_DENY (or unset)")
        start, end = optional_time(errors, request, "start_time"), optional_time(errors, request, "end_time")
        if start and end and start >= end:
            errors.add("end_time", "must be after start_time")
        check_length(errors, "page_token", request.page_token, 4096)
        size = _page_size(errors, request.page_size, DEFAULT_DECISION_PAGE)
        errors.raise_if_any()
        query = DecisionQuery(
            dataset_id, request.caller, outcome, request.rule_id, start, end, dataset_id_as_written=request.dataset_id
        )
        page = await router.search_decisions(query, size, request.page_token)
        response = residency_pb2.ListDecisionsResponse(next_page_token=page.next_token, complete=page.complete)
        for d in page.decisions:
            item = response.decisions.add(caller=d.decision.caller, kind=d.kind, line=d.seq, line_hash=d.hash)
            self._encoder.fill(item.decision, d.decision)
            item.decision.context.update(caller_context(d.context))
        return response

    async def SummarizeDecisions(
        self, request: residency_pb2.SummarizeDecisionsRequest, context
    ) -> residency_pb2.SummarizeDecisionsResponse:
        router = _router(self._app)
        errors = FieldErrors()
        bucket_seconds = request.bucket_seconds or 60
        if not 1 <= bucket_seconds <= 86_400:
            errors.add("bucket_seconds", "must be between 1 and 86400 (0 = 60)")
        end = optional_time(errors, request, "end_time") or utcnow()
        start = optional_time(errors, request, "start_time") or max(end, _EARLIEST_END) - timedelta(hours=1)
        if start >= end:
            errors.add("end_time", "must be after start_time")
        elif (end - start) / timedelta(seconds=max(1, bucket_seconds)) > MAX_BUCKETS:
            errors.add("bucket_seconds", f"the range would have more than {MAX_BUCKETS} buckets")
        errors.raise_if_any()
        buckets, complete = await router.summarize_decisions(start, end, timedelta(seconds=bucket_seconds))
        return residency_pb2.SummarizeDecisionsResponse(
            buckets=[
                residency_pb2.DecisionBucket(start_time=to_timestamp(b.start), allow=b.allow, deny=b.deny)
                for b in buckets
            ],
            complete=complete,
        )

    async def GetDecisionLogStatus(
        self, request: residency_pb2.GetDecisionLogStatusRequest, context
    ) -> residency_pb2.GetDecisionLogStatusResponse:
        line, head, healthy = _router(self._app).decision_log_head()
        return residency_pb2.GetDecisionLogStatusResponse(head_line=line, head_hash=head, chain_ok=healthy)

    def _sendable(self, make: Callable[[Decided], Answer]) -> Callable[[Decided], tuple[Decided, Answer]]:
        """(what was decided, `make`'s answer from it), refusing an answer larger than the server
        sends (`max_message_bytes`) with RESOURCE_EXHAUSTED: the router calls it before it logs
        anything, so a refused answer leaves no decision logged but unsent."""
        limit = self._app.settings.max_message_bytes

        def sendable(decided: Decided) -> tuple[Decided, Answer]:
            answer = make(decided)
            _check_answer_size(answer.ByteSize(), limit)
            return decided, answer

        return sendable


def _check_answer_size(size: int, limit: int) -> None:
    """RESOURCE_EXHAUSTED for an answer larger than the server sends (`max_message_bytes`)."""
    if size > limit:
        raise DomicileError(
            f"the answer would be {size} bytes, more than this server sends ({limit} bytes, "
            "max_message_bytes); nothing was logged or answered: ask for fewer decisions per call",
            ErrorCode.RESOURCE_EXHAUSTED,
            "ANSWER_TOO_LARGE",
            metadata={"answer_bytes": str(size), "limit_bytes": str(limit)},
        )


def _page_size(errors: FieldErrors, value: int, default: int) -> int:
    if value == 0:
        return default
    if not 1 <= value <= MAX_PAGE:
        errors.add("page_size", f"must be between 1 and {MAX_PAGE} (0 = default {default})")
        return default
    return value


def _check_decision_id(value: str) -> None:
    errors = FieldErrors()
    if not value:
        errors.add("decision_id", "must not be empty")
    else:
        check_length(errors, "decision_id", value, MAX_DECISION_ID)
        if _CONTROL.search(value):
            errors.add("decision_id", "must not contain control characters")
    errors.raise_if_any()


class PolicyServicer(policy_pb2_grpc.PolicyServiceServicer):
    """domicile.v1.PolicyService over `app.router` and `app.policy_changes` (proposals)."""

    def __init__(self, app: App) -> None:
        self._app = app

    async def SetPolicy(self, request: policy_pb2.SetPolicyRequest, context) -> policy_pb2.SetPolicyResponse:
        changes = _policy_changes(self._app)
        errors = FieldErrors()
        _check_policy_yaml(errors, request.policy_yaml)
        _check_text(errors, "break_glass_reason", request.break_glass_reason)
        errors.raise_if_any()
        result = await changes.set_policy(
            request.policy_yaml,
            dry_run=request.dry_run,
            break_glass_reason=request.break_glass_reason.strip(),
            method="/domicile.v1.PolicyService/SetPolicy",
            peer=context.peer(),
        )
        response = policy_pb2.SetPolicyResponse(
            version=result.version,
            errors=[policy_error_to_proto(e) for e in result.errors],
            applied=result.applied,
        )
        if result.proposal is not None:
            response.proposal.CopyFrom(proposal_to_proto(result.proposal))
        return response

    async def ListPolicyProposals(
        self, request: policy_pb2.ListPolicyProposalsRequest, context
    ) -> policy_pb2.ListPolicyProposalsResponse:
        proposals = _policy_changes(self._app).proposals.list(include_closed=request.include_closed)
        return policy_pb2.ListPolicyProposalsResponse(proposals=[proposal_to_proto(p) for p in proposals])

    async def ApprovePolicy(
        self, request: policy_pb2.ApprovePolicyRequest, context
    ) -> policy_pb2.ApprovePolicyResponse:
        changes = _policy_changes(self._app)
        errors = FieldErrors()
        _check_proposal_id(errors, request.proposal_id)
        _check_text(errors, "comment", request.comment)
        errors.raise_if_any()
        result = await changes.approve(
            request.proposal_id,
            request.comment.strip(),
            method="/domicile.v1.PolicyService/ApprovePolicy",
            peer=context.peer(),
        )
        return policy_pb2.ApprovePolicyResponse(
            proposal=proposal_to_proto(result.proposal),
            applied=result.applied,
            errors=[policy_error_to_proto(e) for e in result.errors],
        )

    async def RejectPolicy(self, request: policy_pb2.RejectPolicyRequest, context) -> policy_pb2.RejectPolicyResponse:
        changes = _policy_changes(self._app)
        errors = FieldErrors()
        _check_proposal_id(errors, request.proposal_id)
        _check_text(errors, "reason", request.reason)
        errors.raise_if_any()
        proposal = await changes.reject(
            request.proposal_id,
            request.reason.strip(),
            method="/domicile.v1.PolicyService/RejectPolicy",
            peer=context.peer(),
        )
        return policy_pb2.RejectPolicyResponse(proposal=proposal_to_proto(proposal))

    async def GetPolicy(self, request: policy_pb2.GetPolicyRequest, context) -> policy_pb2.GetPolicyResponse:
        router = _router(self._app)
        if request.version:
            errors = FieldErrors()
            check_length(errors, "version", request.version, MAX_POLICY_VERSION)
            errors.raise_if_any()
            active = await router.get_policy_version(request.version)
        else:
            active = router.get_policy()
        return policy_pb2.GetPolicyResponse(
            policy_yaml=active.yaml, version=active.version, content_hash=active.content_hash
        )

    async def ListPolicyVersions(
        self, request: policy_pb2.ListPolicyVersionsRequest, context
    ) -> policy_pb2.ListPolicyVersionsResponse:
        router = _router(self._app)
        active = router.get_policy()
        activations = router.policy_activations()
        return policy_pb2.ListPolicyVersionsResponse(
            activations=[
                policy_pb2.PolicyActivation(
                    version=a.version,
                    content_hash=a.hash,
                    activated_time=to_timestamp(a.activated_time),
                    active=i == 0 and a.hash == active.content_hash,
                    activated_by=(a.activation or {}).get("by", ""),
                    break_glass_reason=(a.activation or {}).get("break_glass_reason", ""),
                    proposal_id=(a.activation or {}).get("proposal_id", ""),
                    proposed_by=(a.activation or {}).get("proposed_by", ""),
                )
                for i, a in enumerate(activations)
            ]
        )

    async def PolicyImpact(self, request: policy_pb2.PolicyImpactRequest, context) -> policy_pb2.PolicyImpactResponse:
        router = _router(self._app)
        errors = FieldErrors()
        _check_policy_yaml(errors, request.policy_yaml)
        errors.raise_if_any()
        result = await router.policy_impact(request.policy_yaml)
        return policy_pb2.PolicyImpactResponse(
            changes=[policy_change_to_proto(c) for c in result.changes],
            errors=[policy_error_to_proto(e) for e in result.errors],
            version=result.version,
        )


def _check_context(errors: FieldErrors, path: str, context: Mapping[str, str]) -> None:
    """A request's context: a few short facts with plain keys (they are logged with decisions)."""
    if not context:
        return
    if len(context) > MAX_CONTEXT_ENTRIES:
        errors.add(path, f"at most {MAX_CONTEXT_ENTRIES} entries")
        return
    for key, value in sorted(context.items()):
        if not _CONTEXT_KEY.fullmatch(key) or len(key) > MAX_CONTEXT_KEY:
            errors.add(f"{path}[{key!r}]", f"keys are 1-{MAX_CONTEXT_KEY} letters, digits or ._:/-")
        elif len(value) > MAX_CONTEXT_VALUE or _CONTROL.search(value):
            errors.add(f"{path}[{key!r}]", f"values are at most {MAX_CONTEXT_VALUE} characters, no control characters")


def add_residency_service(servicer: ResidencyServicer, server: grpc.aio.Server) -> None:
    """Register `servicer` as the generated `add_ResidencyServiceServicer_to_server` does, with
    two differences: BatchDecide's handler takes the request and gives the answer serialized,
    both handed to and from the residency engine as they are -- up to 10,000 messages built in
    Python only to be read or serialized would cost more than deciding them; Decide's gives its
    answer serialized by the engine (a message built per call would cost more than the
    decision)."""
    add_service(
        server,
        residency_pb2,
        "ResidencyService",
        servicer,
        raw_requests={"BatchDecide"},
        raw_answers={"BatchDecide", "Decide"},
    )
