"""Runs a policy's inline `tests`, like `opa test` runs Rego tests.

Each test describes a dataset by its effective attributes (labels and origins as the
dataset itself carries them, so lineage paths are just the dataset), an operation, a region
and the wanted outcome. Tests without `now` run at the `now` given to `run_policy_tests`
(the current time by default), so a test relying on an exemption starts failing the day the
exemption expires -- which is the point.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from domicile.router.engine import CompiledPolicy
from domicile.router.types import Operation, Outcome, Verdict


@dataclass(frozen=True)
class PolicyTestResult:
    """The outcome of one inline test; `line` is where the test starts in the document."""

    name: str
    line: int
    want: Outcome
    verdict: Verdict

    @property
    def passed(self) -> bool:
        return self.verdict.outcome is self.want


def run_policy_tests(policy: CompiledPolicy, now: datetime | None = None) -> list[PolicyTestResult]:
    """Decides every inline test of `policy`, in document order. `now` (aware; default the
    current UTC time) applies to tests that do not set their own."""
    default_now = now or datetime.now(UTC)
    results = []
    for index, test in enumerate(policy.loaded.document.tests):
        verdict = policy.decide_carried(
            test.dataset.id,
            test.dataset.classifications,
            test.dataset.origins,
            Operation(test.operation),
            test.region,
            test.now or default_now,
        )
        line, _ = policy.loaded.position(("tests", index))
        results.append(PolicyTestResult(test.name, line, Outcome(test.want), verdict))
    return results
