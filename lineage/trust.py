"""Who may write which lineage, and what a lineage write may loosen.

A lineage record can erase a residency constraint: ending the edges that carry a label, or
re-recording a job's edges with a transform that removes it. So lineage writes are owned and
the loosening ones take a second scope:

- **Job namespaces are owned.** A job id is `namespace/name` (split at the first `/`; a job
  without one is in namespace `default`). A caller writes lineage (RecordLineage, EndLineage,
  OpenLineage events) only for the job namespaces it owns (`NamespaceOwnership`).
- **Loosening needs `lineage:admin`.** EndLineage needs that scope (the scope table says so);
  re-recording an existing edge of a job with a transform that, under the active policy,
  removes a label its current transform does not, needs it too. Each such change is a
  security event (`lineage_loosened`) naming the datasets whose effective constraints it
  loosened, with what each lost.
- **Claims are recorded, grants decide.** A job claiming a declassifying transform the active
  policy does not grant it is recorded as claimed (residency counts the edge as a plain copy)
  and reported as a security event (`unapproved_declassification`).

Refusals are PERMISSION_DENIED (reasons JOB_NAMESPACE_NOT_OWNED, LINEAGE_ADMIN_REQUIRED) with
an `authz_denied` security event. With `--insecure` there is no caller: nothing is checked and
no event is written.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from domicile.catalog.model import job_namespace, label_matches
from domicile.errors import DomicileError, ErrorCode
from domicile.security import events as ev
from domicile.security.context import Caller, current_caller, current_trace
from domicile.security.dev_credentials import DEV_SUBJECT
from domicile.security.scopes import LINEAGE_ADMIN

if TYPE_CHECKING:
    from domicile.app import App
    from domicile.router.engine import CompiledPolicy

T = TypeVar("T")

CLAIM_PREFIX = "claim:"
# A security event names at most this many loosened datasets (and says how many there were).
MAX_NAMED_DATASETS = 100


class NamespaceOwnership:
    """Which job namespaces a caller owns.

    `owners` maps an owner to namespace patterns (`fnmatch`, case-sensitive; `*` owns every
    namespace, for an ingestion gateway that relays the events of many pipelines). An owner is
    a token subject (`sub`), or `claim:NAME=VALUE` for every token whose claim NAME is VALUE
    or a list holding it. Besides, a token's `sub` always owns the namespace of the same name,
    and `dev_subject` (the `--dev` principal) owns every namespace.
    """

    def __init__(self, owners: Mapping[str, Sequence[str]], *, dev_subject: str | None = None) -> None:
        self._by_subject: dict[str, list[str]] = {}
        self._by_claim: dict[tuple[str, str], list[str]] = {}
        for owner, patterns in owners.items():
            if owner.startswith(CLAIM_PREFIX):
                name, _, value = owner[len(CLAIM_PREFIX) :].partition("=")
                self._by_claim.setdefault((name, value), []).extend(patterns)
            else:
                self._by_subject.setdefault(owner, []).extend(patterns)
        if dev_subject is not None:
            self._by_subject.setdefault(dev_subject, []).append("*")

    def patterns(self, caller: Caller) -> tuple[str, ...]:
        """The namespace patterns `caller` owns (its own subject, escaped, first)."""
        found = [_literal(caller.subject), *self._by_subject.get(caller.subject, ())]
        for (name, value), patterns in self._by_claim.items():
            if value in caller.claim(name):
                found.extend(patterns)
        return tuple(dict.fromkeys(found))

    def owns(self, caller: Caller, job: str) -> bool:
        """True when `caller` owns the namespace of `job`."""
        namespace = job_namespace(job)
        return any(fnmatch.fnmatchcase(namespace, pattern) for pattern in self.patterns(caller))


def _literal(name: str) -> str:
    """A pattern matching exactly `name` (its glob characters escaped)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


@dataclass(frozen=True)
class LineageWrite:
    """A lineage write to admit: `job`'s edges from every input to every output, recorded with
    `transform`, or ended (`ending`)."""

    job: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    transform: str = ""
    ending: bool = False


@dataclass(frozen=True)
class Where:
    """Where a write came from, for security events."""

    method: str
    peer: str = ""


class LineageGuard:
    """Admits lineage writes for the current caller and reports what they loosen (see the
    module docstring). One per application; stateless between writes."""

    def __init__(self, app: App) -> None:
        self._app = app
        settings = app.settings
        self.ownership = NamespaceOwnership(
            settings.lineage.namespace_owners, dev_subject=DEV_SUBJECT if settings.dev else None
        )

    async def write(self, write: LineageWrite, perform: Callable[[], Awaitable[T]], where: Where) -> T:
        """Run `perform` (the store write, which must also bring the router up to date:
        `App.after_write`) if the current caller may make `write`, and report it.

        Raises DomicileError PERMISSION_DENIED, before anything is written, when the caller does
        not own the job's namespace, or when the write loosens constraints (EndLineage, or a
        transform that removes more than the edge's current one) and the caller lacks
        `lineage:admin`.
        """
        caller = current_caller.get()
        if caller is None:  # --insecure: no principal, nothing to check or report
            return await perform()
        if not self.ownership.owns(caller, write.job):
            namespace = job_namespace(write.job)
            self._refuse(
                caller,
                where,
                "JOB_NAMESPACE_NOT_OWNED",
                f"{caller.principal} does not own job namespace {namespace!r} (of job {write.job!r})",
                job=write.job,
                namespace=namespace,
            )
        router = self._app.router
        policy = router.policy if router is not None else None
        loosening = write.ending or self._loosens(write, policy)
        if loosening and LINEAGE_ADMIN not in caller.scopes:
            what = (
                "ending lineage"
                if write.ending
                else f"re-recording job {write.job!r} with transform {write.transform!r}"
            )
            self._refuse(
                caller,
                where,
                "LINEAGE_ADMIN_REQUIRED",
                f"{what} may loosen residency constraints: it needs scope {LINEAGE_ADMIN}",
                job=write.job,
                transform=write.transform,
            )
        before = router.lineage_constraints(write.outputs) if loosening and router is not None else {}
        result = await perform()
        if policy is not None and not write.ending and policy.unapproved_claim(write.transform, write.job):
            self._event(
                ev.UNAPPROVED_DECLASSIFICATION,
                caller,
                where,
                "UNAPPROVED_DECLASSIFICATION",
                job=write.job,
                transform=write.transform,
                inputs=list(write.inputs[:MAX_NAMED_DATASETS]),
                outputs=list(write.outputs[:MAX_NAMED_DATASETS]),
            )
        if loosening:
            router = self._app.router
            after = router.lineage_constraints(before, downstream=False) if router is not None else {}
            loosened = sorted(
                (dataset_id, sorted(constraints - after.get(dataset_id, frozenset())))
                for dataset_id, constraints in before.items()
                if constraints - after.get(dataset_id, frozenset())
            )
            self._event(
                ev.LINEAGE_LOOSENED,
                caller,
                where,
                "EDGES_ENDED" if write.ending else "TRANSFORM_CHANGED",
                job=write.job,
                transform=write.transform,
                loosened=[{"dataset": d, "lost": lost} for d, lost in loosened[:MAX_NAMED_DATASETS]],
                loosened_count=len(loosened),
            )
        return result

    def _loosens(self, write: LineageWrite, policy: CompiledPolicy | None) -> bool:
        """True when re-recording an existing edge with `write.transform` removes, under the
        active policy, a label its current transform does not (without a router: whenever a
        transform is claimed, failing closed)."""
        router = self._app.router
        if router is None or policy is None or not write.transform:
            return bool(write.transform)  # a plain copy removes nothing
        for output in set(write.outputs):
            for input in set(write.inputs):
                current = router.current_transform(input, output, write.job)
                if (
                    current is not None
                    and current != write.transform
                    and _removes_more(policy, write.job, write.transform, current)
                ):
                    return True
        return False

    def _refuse(self, caller: Caller, where: Where, reason: str, message: str, **detail: object) -> None:
        self._event(ev.AUTHZ_DENIED, caller, where, reason, outcome="denied", **detail)
        raise DomicileError(message, ErrorCode.PERMISSION_DENIED, reason)

    def _event(
        self, event: str, caller: Caller, where: Where, reason: str, *, outcome: str = "ok", **detail: object
    ) -> None:
        events = self._app.security_events
        if events is not None:
            events.record(
                event,
                outcome=outcome,
                principal=caller.principal,
                method=where.method,
                peer=where.peer,
                trace_id=current_trace(),
                reason=reason,
                **detail,
            )


def _granted_removals(policy: CompiledPolicy, transform: str, job: str) -> tuple[str, ...]:
    return policy.declassifiers.get(transform, ()) if policy.grants(transform, job) else ()


def _removes_more(policy: CompiledPolicy, job: str, new: str, old: str) -> bool:
    """True when `new`, applied by `job`, removes a label `old` does not (under `policy`)."""
    kept = _granted_removals(policy, old, job)
    return any(not any(label_matches(o, n) for o in kept) for n in _granted_removals(policy, new, job))
