"""Residency decision cases as data (STYLE.md item 4), runnable by any decider.

A case file (`tests/cases/*.yaml`) holds a policy, a small catalog and the decisions
expected from it:

```yaml
note: what the file is about
policy: ../../examples/policy.yaml     # relative to the case file; or `policy_yaml: |` inline
catalog:
  datasets:                            # as registered with CatalogService.UpsertDataset
    - {id: "s3://bank-eu/customers", classifications: [PII.CONTACT], origins: [DE],
       locations: ["aws:eu-central-1"]}
  lineage:                             # as recorded with LineageService.RecordLineage; ids
    - {job: nightly-copy, inputs: ["s3://bank-eu/customers"], outputs: ["s3://bank-eu/copy"],
       transform: ""}                  # not among the datasets become placeholders
  deleted: ["s3://bank-eu/old"]        # deleted with DeleteDataset after the lineage is recorded
cases:
  - note: eu personal data stays out of the us
    dataset: "s3://bank-eu/copy"
    operation: store                   # store | process
    region: "aws:us-east-1"
    now: "2026-12-01T00:00:00Z"        # optional: only deciders with a clock can honour it
    want:
      outcome: deny                    # allow | deny
      reason_codes: [RULE_DENIED]      # optional: the reasons' codes (any order)
      rule_ids: [gdpr-personal-data]   # optional: the reasons' non-empty rule ids (any order)
      lineage_path: ["s3://bank-eu/customers", "s3://bank-eu/copy"]  # optional: some reason's path
      allowed_regions: []              # optional: exactly these (any order)
      inherited_only: false            # optional: the decision rests on inherited attributes only
  - {note: ..., dataset: ..., operation: store, region: "mars:base-1", want_error: INVALID_ARGUMENT}
```

`load_case_file` reads one file; `check_case(case, decide)` runs one case against a decider,
a callable `Case -> Answer` (or just a `Verdict`, `inherited_only` then false) that raises on
an RPC-level error: a `DomicileError`, or any exception with a gRPC-style `code()` whose
value has a `name` (so a `grpc.RpcError` can propagate unchanged). `in_process_decider(case_file)`
decides with the residency engine (`router.engine.Engine`) as the router does; the gRPC suite supplies
a decider that loads the same policy and catalog into a server and calls
ResidencyService.Decide.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from domicile.catalog.model import Dataset, Edge
from domicile.errors import DomicileError
from domicile.router.engine import Engine, compile_policy
from domicile.router.policy import load_policy, parse_yaml_with_positions
from domicile.router.types import Operation, Verdict

CASES_DIR = Path(__file__).parent


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CatalogDataset(_Strict):
    id: str
    classifications: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()


class LineageRun(_Strict):
    job: str
    inputs: tuple[str, ...] = Field(min_length=1)
    outputs: tuple[str, ...] = Field(min_length=1)
    transform: str = ""


class Catalog(_Strict):
    datasets: tuple[CatalogDataset, ...] = ()
    lineage: tuple[LineageRun, ...] = ()
    deleted: tuple[str, ...] = ()


class Want(_Strict):
    outcome: Literal["allow", "deny"]
    reason_codes: tuple[str, ...] | None = None
    rule_ids: tuple[str, ...] | None = None
    lineage_path: tuple[str, ...] | None = None
    allowed_regions: tuple[str, ...] | None = None
    inherited_only: bool | None = None


class Case(_Strict):
    note: str
    dataset: str
    operation: Literal["store", "process"]
    region: str
    now: AwareDatetime | None = None
    want: Want | None = None
    want_error: Literal["INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION"] | None = None
    # Set by the loader: where the case starts in its file, for failure messages.
    line: int = 0

    @model_validator(mode="after")
    def _one_expectation(self) -> Case:
        if (self.want is None) == (self.want_error is None):
            raise ValueError("a case needs exactly one of 'want' and 'want_error'")
        return self

    @property
    def op(self) -> Operation:
        return Operation(self.operation)


class CaseFile(_Strict):
    path: Path
    note: str
    policy_yaml: str
    catalog: Catalog
    cases: tuple[Case, ...]


def case_files() -> list[Path]:
    """Every case file under tests/cases, sorted by name."""
    return sorted(CASES_DIR.glob("*.yaml"))


def load_case_file(path: Path) -> CaseFile:
    """Reads and validates a case file (unknown keys are errors). The policy text is read
    from `policy` (a path relative to the case file) or taken from `policy_yaml`."""
    data, positions, errors = parse_yaml_with_positions(path.read_text("utf-8"))
    if errors:
        raise ValueError(f"{path}: " + "; ".join(f"{e.line}:{e.column}: {e.message}" for e in errors))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a case file is a mapping")
    data = dict(data)
    policy_path = data.pop("policy", None)
    if (policy_path is None) == ("policy_yaml" not in data):
        raise ValueError(f"{path}: give exactly one of 'policy' (a path) and 'policy_yaml' (inline text)")
    if policy_path is not None:
        data["policy_yaml"] = (path.parent / policy_path).read_text("utf-8")
    cases = data.get("cases")
    if isinstance(cases, list):
        data["cases"] = [
            {**case, "line": positions[("cases", i)][0]} if isinstance(case, dict) else case
            for i, case in enumerate(cases)
        ]
    return CaseFile.model_validate({**data, "path": path})


class Answer(NamedTuple):
    """What a decider answers: the verdict, and whether it rests on inherited attributes only."""

    verdict: Verdict
    inherited_only: bool = False


Decide = Callable[[Case], "Answer | Verdict"]


def error_code(exc: BaseException) -> str | None:
    """The error code an RPC-level failure carries: a DomicileError's code, or the name of a
    gRPC status code (`exc.code().name`); None for anything else (a bug, re-raised)."""
    if isinstance(exc, DomicileError):
        return exc.code.value
    code = getattr(exc, "code", None)
    if callable(code):
        name = getattr(code(), "name", None)
        if isinstance(name, str):
            return name
    return None


def check_case(case: Case, decide: Decide) -> None:
    """Runs `case` with `decide`; AssertionError listing every mismatch with the expectation."""
    where = f"line {case.line}: {case.note}"
    try:
        answer = decide(case)
    except Exception as exc:
        code = error_code(exc)
        if code is None:
            raise
        # A case expects either an error or a verdict: this is where the error is checked.
        assert case.want_error == code, f"{where}: want {case.want or case.want_error}, got error {code}: {exc}"  # noqa: PT017
        return
    if isinstance(answer, Verdict):
        answer = Answer(answer)
    verdict = answer.verdict
    assert case.want is not None, f"{where}: want error {case.want_error}, got {verdict}"
    want = case.want
    problems = []
    if verdict.outcome.value != want.outcome:
        problems.append(f"outcome {verdict.outcome.value}, want {want.outcome}")
    codes = sorted(r.code.value for r in verdict.reasons)
    if want.reason_codes is not None and codes != sorted(want.reason_codes):
        problems.append(f"reason codes {codes}, want {sorted(want.reason_codes)}")
    rule_ids = sorted(r.rule_id for r in verdict.reasons if r.rule_id)
    if want.rule_ids is not None and rule_ids != sorted(want.rule_ids):
        problems.append(f"rule ids {rule_ids}, want {sorted(want.rule_ids)}")
    paths = [r.lineage_path for r in verdict.reasons]
    if want.lineage_path is not None and want.lineage_path not in paths:
        problems.append(f"lineage paths {paths}, want one to be {list(want.lineage_path)}")
    if want.allowed_regions is not None and sorted(verdict.allowed_regions) != sorted(want.allowed_regions):
        problems.append(f"allowed regions {sorted(verdict.allowed_regions)}, want {sorted(want.allowed_regions)}")
    if want.inherited_only is not None and answer.inherited_only != want.inherited_only:
        problems.append(f"inherited_only {answer.inherited_only}, want {want.inherited_only}")
    assert not problems, f"{where}: " + "; ".join(problems) + f"\nreasons: {[r.message for r in verdict.reasons]}"


def catalog_datasets(case_file: CaseFile) -> list[Dataset]:
    """The case file's datasets as catalog values, with a placeholder for every other id its
    lineage names (as RecordLineage creates them), and without the deleted ones."""
    catalog = case_file.catalog
    described = [
        Dataset.create(d.id, classifications=d.classifications, origins=d.origins, locations=d.locations)
        for d in catalog.datasets
    ]
    named = dict.fromkeys(i for run in catalog.lineage for i in (*run.inputs, *run.outputs))
    known = {d.id for d in described}
    placeholders = [Dataset.create(i, placeholder=True) for i in named if i not in known]
    return [d for d in (*described, *placeholders) if d.id not in catalog.deleted]


def catalog_edges(case_file: CaseFile) -> list[Edge]:
    """One edge per (input, output) of each lineage run, as LineageService records them."""
    return [
        Edge(input=i, output=o, job=run.job, transform=run.transform, run_id=f"{run.job}-run")
        for run in case_file.catalog.lineage
        for i in run.inputs
        for o in run.outputs
    ]


def in_process_decider(case_file: CaseFile) -> Decide:
    """Decides like the router does, without a server: the residency engine over the catalog.
    A case without `now` is decided at the current time."""
    engine = Engine(compile_policy(load_policy(case_file.policy_yaml)))
    engine.add(catalog_datasets(case_file), catalog_edges(case_file))

    def decide(case: Case) -> Answer:
        verdict = engine.decide(case.dataset, case.op, case.region, _now(case))
        return Answer(verdict, verdict.inherited_only)

    return decide


def _now(case: Case) -> datetime:
    return case.now or datetime.now(UTC)
