"""The blocking client."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Self, TypeVar

import grpc

from domicile.client import calls
from domicile.client.base import CHANNEL_OPTIONS, ClientBase
from domicile.client.calls import Call
from domicile.client.types import (
    ActivePolicy,
    ActorAccess,
    ActorActivity,
    Anomaly,
    Dataset,
    DatasetRevision,
    DatasetSummary,
    Decision,
    DecisionLogStatus,
    DecisionRecord,
    DecisionSummary,
    Direction,
    Explanation,
    JobCheck,
    LineageEnded,
    LineageGraph,
    LineageRecorded,
    LoggedDecision,
    ObservedViolation,
    Operation,
    Outcome,
    Page,
    PolicyActivation,
    PolicyDecisionResult,
    PolicyImpact,
    PolicyProposal,
    PolicySetResult,
    Question,
    Region,
    ReplayResult,
    ResidencyStates,
    RouteResult,
    SecurityEvent,
    ServingStatus,
    Violation,
    ViolationPage,
)

T = TypeVar("T")


class Client(ClientBase):
    """A blocking client of a Domicile server: one method per RPC, returning domain values.

    `Client(settings)` takes `domicile.connection.ConnectionSettings` (server address, TLS
    files, token, `--insecure`, the default deadline); `Client.from_env()` reads them from the
    `DOMICILE_*` environment variables, as the command line does. Without explicit files the
    development credentials are found as the command line finds them (docs/sdk.md).
    `token_provider` is called before every call for the bearer token (refresh it there);
    `retry` says how calls that are safe to repeat are retried (`RetryPolicy`).

    Every method takes `timeout` (seconds for the whole call, retries included; default the
    settings' `timeout`, 30 s) and raises a `DomicileRpcError` subclass when the call fails.
    Thread-safe; close it (or use it as a context manager) to release the channel.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        options = list(CHANNEL_OPTIONS)
        if self._channel_credentials is None:
            self._channel = grpc.insecure_channel(self.settings.server, options=options)
        else:
            self._channel = grpc.secure_channel(self.settings.server, self._channel_credentials, options=options)
        self._methods: dict[str, grpc.UnaryUnaryMultiCallable] = {}

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self, call: Call[T], timeout: float | None) -> T:
        method = self._methods.get(call.path)
        if method is None:
            method = self._methods[call.path] = self._channel.unary_unary(
                call.path,
                request_serializer=type(call.request).SerializeToString,
                response_deserializer=call.response_type.FromString,
            )
        deadline = self._deadline(timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                return call.parse(method(call.request, timeout=max(deadline - time.monotonic(), 0.001)))
            except grpc.RpcError as rpc_error:
                error = self._failed(call, rpc_error)
            delay = self.retry.delay(error, attempt, deadline - time.monotonic()) if call.retryable else None
            if delay is None:
                raise error
            time.sleep(delay)

    # ---- CatalogService --------------------------------------------------------------------

    def upsert_dataset(self, dataset: Dataset, *, expected_revision: int = 0, timeout: float | None = None) -> Dataset:
        """Create or replace `dataset` (all of it: attributes not given are cleared); the stored
        dataset with its new revision. With `expected_revision` > 0 the write succeeds only if
        the dataset is at that revision, else `Aborted` (such a write is retried when the
        server is unavailable; an unconditional one is not)."""
        return self._run(calls.upsert_dataset(dataset, expected_revision), timeout)

    def get_dataset(self, dataset_id: str, *, as_of: datetime | None = None, timeout: float | None = None) -> Dataset:
        """The dataset, now or as it was at `as_of`; `NotFound` when it did not exist then."""
        return self._run(calls.get_dataset(dataset_id, as_of), timeout)

    def list_datasets(
        self,
        *,
        classification: str = "",
        origin: str = "",
        region: str = "",
        owner: str = "",
        query: str = "",
        as_of: datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Page[Dataset]:
        """One page of the datasets matching every given filter, ordered by id: a
        `classification` matches its descendants (PII matches PII.CONTACT), `origin` is a
        country code, `region` a region id, `query` a substring of id, name or description.
        `iter_datasets` follows the pages."""
        return self._run(
            calls.list_datasets(
                classification=classification,
                origin=origin,
                region=region,
                owner=owner,
                query=query,
                as_of=as_of,
                page_size=page_size,
                page_token=page_token,
            ),
            timeout,
        )

    def iter_datasets(self, **filters: Any) -> Iterator[Dataset]:
        """Every dataset matching `filters` (those of `list_datasets`), page after page."""
        token = filters.pop("page_token", "")
        while True:
            page = self.list_datasets(page_token=token, **filters)
            yield from page.items
            token = page.next_page_token
            if not token:
                return

    def delete_dataset(self, dataset_id: str, *, expected_revision: int = 0, timeout: float | None = None) -> None:
        """Soft-delete the dataset (history and as-of reads keep it); `NotFound` when unknown."""
        self._run(calls.delete_dataset(dataset_id, expected_revision), timeout)

    def list_regions(self, *, timeout: float | None = None) -> tuple[Region, ...]:
        """The known regions: the builtin cloud regions and the policy's private ones."""
        return self._run(calls.list_regions(), timeout)

    def list_dataset_revisions(
        self, dataset_id: str, *, page_size: int = 0, page_token: str = "", timeout: float | None = None
    ) -> Page[DatasetRevision]:
        """The dataset's revisions, newest first: who changed it, when, and to what."""
        return self._run(calls.list_dataset_revisions(dataset_id, page_size=page_size, page_token=page_token), timeout)

    # ---- LineageService --------------------------------------------------------------------

    def record_lineage(
        self,
        job: str,
        run_id: str,
        *,
        inputs: Iterable[str] = (),
        outputs: Iterable[str] = (),
        run_region: str = "",
        transform: str = "",
        event_time: datetime | None = None,
        producer: str = "",
        timeout: float | None = None,
    ) -> LineageRecorded:
        """Record that run `run_id` of `job` (namespace/name) derived every output from every
        input. Idempotent per (job, run_id). The answer lists what the run did where the policy
        forbids it."""
        return self._run(
            calls.record_lineage(
                job,
                run_id,
                inputs=inputs,
                outputs=outputs,
                run_region=run_region,
                transform=transform,
                event_time=event_time,
                producer=producer,
            ),
            timeout,
        )

    def get_lineage(
        self,
        dataset_id: str,
        direction: Direction | str = Direction.UPSTREAM,
        *,
        max_depth: int = 0,
        as_of: datetime | None = None,
        timeout: float | None = None,
    ) -> LineageGraph:
        """The lineage graph around the dataset (upstream, downstream or both), now or as it
        was at `as_of`; `max_depth` 0 is the server's default."""
        return self._run(calls.get_lineage(dataset_id, direction, max_depth=max_depth, as_of=as_of), timeout)

    def end_lineage(
        self,
        job: str,
        *,
        inputs: Iterable[str],
        outputs: Iterable[str],
        end_time: datetime | None = None,
        timeout: float | None = None,
    ) -> LineageEnded:
        """End the edges of `job` between every input and every output (history keeps them);
        needs the `lineage:admin` scope."""
        return self._run(calls.end_lineage(job, inputs=inputs, outputs=outputs, end_time=end_time), timeout)

    # ---- ResidencyService ------------------------------------------------------------------

    def decide(
        self,
        dataset_id: str,
        operation: Operation | str,
        region: str,
        *,
        context: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Decision:
        """May the dataset be stored / processed (`operation`) in `region`? An unknown dataset is
        a DENY with reason UNKNOWN_DATASET; an unknown region raises `InvalidArgument`.
        `context` (facts about the asker: at most 32, keys of letters, digits and `._:/-`) is
        logged with the decision and shown by `get_decision`."""
        return self._run(calls.decide(dataset_id, operation, region, context), timeout)

    def batch_decide(
        self, questions: Iterable[Question | tuple[str, Operation | str, str]], *, timeout: float | None = None
    ) -> tuple[Decision, ...]:
        """Many decisions in one call, in the order of `questions` ((dataset id, operation,
        region) each)."""
        return self._run(calls.batch_decide(questions), timeout)

    def route(
        self, dataset_id: str, operation: Operation | str, candidates: Iterable[str], *, timeout: float | None = None
    ) -> RouteResult:
        """The first of `candidates` (most preferred first) where the operation is allowed
        (`region` empty when none is), with the decision for it."""
        return self._run(calls.route(dataset_id, operation, candidates), timeout)

    def check_job(
        self,
        *,
        inputs: Iterable[str] = (),
        outputs: Iterable[str] = (),
        run_region: str = "",
        output_region: str = "",
        transform: str = "",
        job: str = "",
        context: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> JobCheck:
        """Pre-flight check of a pipeline job: may it read `inputs` in `run_region` and write
        `outputs` in `output_region`? A claimed `transform` counts only when the policy grants
        it to `job`. `allowed` with the process decisions of the inputs, then the store
        decisions of the outputs; each is logged with `context` (as for `decide`)."""
        return self._run(
            calls.check_job(
                inputs=inputs,
                outputs=outputs,
                run_region=run_region,
                output_region=output_region,
                transform=transform,
                job=job,
                context=context,
            ),
            timeout,
        )

    def explain(self, dataset_id: str, *, as_of: datetime | None = None, timeout: float | None = None) -> Explanation:
        """The dataset's effective classifications and origins with the lineage path of each,
        and where the policy lets it be stored and processed (as of a past time: under the
        policy in force then)."""
        return self._run(calls.explain(dataset_id, as_of), timeout)

    def scan_violations(self, *, timeout: float | None = None) -> tuple[Violation, ...]:
        """Every dataset stored in a region where the policy does not allow storing it."""
        return self._run(calls.scan_violations(), timeout)

    def list_violations(
        self, *, region: str = "", page_size: int = 0, page_token: str = "", timeout: float | None = None
    ) -> ViolationPage:
        """What `scan_violations` finds, a page at a time, without deciding or logging
        anything (only those in `region` when given; totals per region)."""
        return self._run(calls.list_violations(region=region, page_size=page_size, page_token=page_token), timeout)

    def get_residency_states(
        self, dataset_ids: Iterable[str], *, as_of: datetime | None = None, timeout: float | None = None
    ) -> ResidencyStates:
        """Where each dataset stands against the policy (allowed, violation, derived,
        undescribed, unknown), now or as of a past time."""
        return self._run(calls.get_residency_states(dataset_ids, as_of=as_of), timeout)

    def get_decision(self, decision_id: str, *, timeout: float | None = None) -> DecisionRecord:
        """A logged decision by id, with the context it was logged with; `NotFound` when the
        log has none."""
        return self._run(calls.get_decision(decision_id), timeout)

    def replay_decision(self, decision_id: str, *, timeout: float | None = None) -> ReplayResult:
        """Re-evaluate a logged decision against the policy and catalog of its time."""
        return self._run(calls.replay_decision(decision_id), timeout)

    def list_decisions(
        self,
        *,
        dataset_id: str = "",
        caller: str = "",
        outcome: Outcome | str | None = None,
        rule_id: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Page[LoggedDecision]:
        """Logged decisions matching every given filter, newest first, decide time in
        [since, until)."""
        return self._run(
            calls.list_decisions(
                dataset_id=dataset_id,
                caller=caller,
                outcome=outcome,
                rule_id=rule_id,
                since=since,
                until=until,
                page_size=page_size,
                page_token=page_token,
            ),
            timeout,
        )

    def summarize_decisions(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        bucket_seconds: int = 0,
        timeout: float | None = None,
    ) -> DecisionSummary:
        """ALLOW / DENY counts per time bucket (default: per minute over the last hour)."""
        return self._run(calls.summarize_decisions(since=since, until=until, bucket_seconds=bucket_seconds), timeout)

    def summarize_datasets(self, *, timeout: float | None = None) -> DatasetSummary:
        """The judged datasets counted by effective classification, origin and region."""
        return self._run(calls.summarize_datasets(), timeout)

    def get_decision_log_status(self, *, timeout: float | None = None) -> DecisionLogStatus:
        """The decision log's head line and hash."""
        return self._run(calls.get_decision_log_status(), timeout)

    # ---- PolicyService ---------------------------------------------------------------------

    def set_policy(
        self, policy_yaml: str, *, dry_run: bool = False, break_glass_reason: str = "", timeout: float | None = None
    ) -> PolicySetResult:
        """Validate the policy and make it active, or propose it when the server requires
        approval (`proposal`); `dry_run` only validates. An invalid policy is not an exception:
        its `errors` (line, column, path, message) are in the answer."""
        return self._run(calls.set_policy(policy_yaml, dry_run=dry_run, break_glass_reason=break_glass_reason), timeout)

    def get_policy(self, version: str = "", *, timeout: float | None = None) -> ActivePolicy:
        """The active policy (its YAML as set, version and content hash), or a past `version`."""
        return self._run(calls.get_policy(version), timeout)

    def policy_impact(self, policy_yaml: str, *, timeout: float | None = None) -> PolicyImpact:
        """What activating the policy would change, per dataset and operation."""
        return self._run(calls.policy_impact(policy_yaml), timeout)

    def list_policy_versions(self, *, timeout: float | None = None) -> tuple[PolicyActivation, ...]:
        """Every activation of a policy, newest first."""
        return self._run(calls.list_policy_versions(), timeout)

    def list_policy_proposals(
        self, *, include_closed: bool = False, timeout: float | None = None
    ) -> tuple[PolicyProposal, ...]:
        """Pending policy proposals, oldest first (with `include_closed`, decided ones too)."""
        return self._run(calls.list_policy_proposals(include_closed=include_closed), timeout)

    def approve_policy(
        self, proposal_id: str, *, comment: str = "", timeout: float | None = None
    ) -> PolicyDecisionResult:
        """Activate a pending proposal (the approver must not be its proposer)."""
        return self._run(calls.approve_policy(proposal_id, comment), timeout)

    def reject_policy(self, proposal_id: str, *, reason: str, timeout: float | None = None) -> PolicyDecisionResult:
        """Close a pending proposal without activating it."""
        return self._run(calls.reject_policy(proposal_id, reason), timeout)

    # ---- AuditService ----------------------------------------------------------------------

    def list_security_events(
        self,
        *,
        event: str = "",
        principal: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Page[SecurityEvent]:
        """Security events, newest first (authentication failures, denials, policy changes...)."""
        return self._run(
            calls.list_security_events(
                event=event,
                principal=principal,
                since=since,
                until=until,
                page_size=page_size,
                page_token=page_token,
            ),
            timeout,
        )

    # ---- AccessService ---------------------------------------------------------------------

    def get_access_patterns(
        self,
        dataset_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        timeout: float | None = None,
    ) -> tuple[ActorAccess, ...]:
        """Who touched the dataset: per actor, operations and regions with counts."""
        return self._run(calls.get_access_patterns(dataset_id, since=since, until=until), timeout)

    def list_actor_access(
        self,
        actor: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        max_runs: int = 0,
        timeout: float | None = None,
    ) -> ActorActivity:
        """The datasets an actor touched, and its latest runs."""
        return self._run(calls.list_actor_access(actor, since=since, until=until, max_runs=max_runs), timeout)

    def list_observed_violations(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Page[ObservedViolation]:
        """Runs that processed or stored data where the policy forbids it, oldest first."""
        return self._run(
            calls.list_observed_violations(since=since, until=until, page_size=page_size, page_token=page_token),
            timeout,
        )

    def list_access_anomalies(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Page[Anomaly]:
        """Actors that left their own baseline, oldest first."""
        return self._run(
            calls.list_access_anomalies(since=since, until=until, page_size=page_size, page_token=page_token),
            timeout,
        )

    # ---- grpc.health.v1 --------------------------------------------------------------------

    def health(self, service: str = "", *, timeout: float | None = None) -> ServingStatus:
        """The server's (or one service's, e.g. `domicile.v1.ResidencyService`) health."""
        return self._run(calls.health(service), timeout)
