"""Airflow 3 (apache-airflow and apache-airflow-providers-openlineage from PyPI, with the
provider in integrations/airflow) runs the DAGs of examples/airflow in-process (`dag.test()`)
against a real `domicile serve`: the OpenLineage provider's events arrive at /api/v1/lineage
and appear in GetLineage; ResidencyCheckOperator and ResidencyPreflight let tasks run for an
allowed output region and fail them for a forbidden one; every decision is logged with the
DAG, task and run as its context."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass

import pytest

from domicile.client import Direction, Outcome
from domicile.security.dev_credentials import dev_paths
from tests.pipelines.conftest import ROOT, DomicileServer, eventually, pipeline_env, start_domicile

pytestmark = pytest.mark.slow

DAGS = ROOT / "examples" / "airflow" / "dags"
NAMESPACE = "airflow-eu"  # the OpenLineage namespace of the DAGs' jobs
US = "aws:us-east-1"
CUSTOMERS = "s3://bank-eu-lake/customers"
ROLLUP, EXPORT = "s3://bank-eu-lake/customer-rollup", "s3://bank-eu-lake/customer-export"
# (DAG file, run conf) in the order they run.
RUNS = (
    ("customer_rollup.py", {}),
    ("customer_rollup.py", {"output_region": US}),
    ("customer_export.py", {}),
    ("customer_export.py", {"output_region": US}),
)
AIRFLOW_TIMEOUT_SECONDS = 1500


@dataclass
class AirflowRuns:
    server: DomicileServer
    runs: list[dict]  # {"dag_id", "run_id", "tasks": {task_id: state}} in RUNS order
    output: str


def airflow_environment(server: DomicileServer, home) -> dict[str, str]:
    """Airflow's settings: a SQLite metadata database, the example DAGs, the `domicile_default`
    connection (mutual TLS files and a bearer token, as in production), the OpenLineage
    provider's HTTP transport pointed at the server."""
    paths = dev_paths(server.data_dir)
    connection = {
        "conn_type": "domicile",
        "host": "127.0.0.1",
        "port": server.port,
        "password": server.token(NAMESPACE, "residency:decide"),
        "extra": {
            "ca_cert": str(paths.ca_cert),
            "client_cert": str(paths.client_cert),
            "client_key": str(paths.client_key),
        },
    }
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_DOMICILE_DEFAULT": json.dumps(connection),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": NAMESPACE,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            server.openlineage_transport(server.token(NAMESPACE, "lineage:write"))
        ),
    }


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    bin_dir = pipeline_env("airflow")
    server = start_domicile(tmp_path_factory.mktemp("domicile"))
    try:
        home = tmp_path_factory.mktemp("airflow-home")
        env = airflow_environment(server, home)
        migrate = subprocess.run(
            [bin_dir / "airflow", "db", "migrate"], env=env, capture_output=True, text=True, timeout=900, check=False
        )
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        arguments = [argument for dag_file, conf in RUNS for argument in (str(DAGS / dag_file), json.dumps(conf))]
        states_file = home / "task-states.jsonl"
        result = subprocess.run(
            [bin_dir / "python", ROOT / "tests" / "pipelines" / "airflow_run.py", states_file, *arguments],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=AIRFLOW_TIMEOUT_SECONDS,
            check=False,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        runs = [json.loads(line) for line in states_file.read_text(encoding="utf-8").splitlines()]
        assert len(runs) == len(RUNS), output
        yield AirflowRuns(server, runs, output)
    finally:
        server.process.terminate()
        server.process.wait(timeout=60)


def logged_contexts(server: DomicileServer, dataset_id: str) -> list[tuple[Outcome, dict[str, str]]]:
    """The outcome and context of every logged decision about `dataset_id`, oldest first."""
    with server.client() as client:
        page = client.list_decisions(dataset_id=dataset_id, page_size=100)
        records = [client.get_decision(d.decision.decision_id) for d in page.items]
    return sorted(((r.decision.outcome, dict(r.context)) for r in records), key=lambda item: item[1]["airflow.run_id"])


def test_an_allowed_run_runs_and_its_lineage_arrives(airflow):
    allowed = airflow.runs[0]
    assert allowed["tasks"] == {"residency_check": "success", "rollup": "success"}
    with airflow.server.client() as client:
        graph = eventually(
            lambda: (g := client.get_lineage(ROLLUP, Direction.UPSTREAM, max_depth=1)) and g.edges and g,
            "the rollup's lineage from the OpenLineage provider",
        )
    assert [(e.input, e.output, e.job) for e in graph.edges] == [
        (CUSTOMERS, ROLLUP, f"{NAMESPACE}/customer_rollup.rollup")
    ]


def test_a_forbidden_output_region_fails_the_check_and_nothing_runs(airflow):
    forbidden = airflow.runs[1]
    assert forbidden["tasks"] == {"residency_check": "failed", "rollup": "upstream_failed"}
    # The task's failure names the denied decision and the rule behind it.
    assert f"store {ROLLUP} in {US}: DENY" in airflow.output
    assert "RULE_DENIED [gdpr-personal-data]" in airflow.output and "GDPR Art. 44-45" in airflow.output


def test_the_preflight_check_takes_the_datasets_from_openlineage_metadata(airflow):
    allowed, forbidden = airflow.runs[2], airflow.runs[3]
    assert allowed["tasks"] == {"export": "success"}
    assert forbidden["tasks"] == {"export": "failed"}
    with airflow.server.client() as client:
        graph = eventually(
            lambda: (g := client.get_lineage(EXPORT, Direction.UPSTREAM, max_depth=1)) and g.edges and g,
            "the export's lineage",
        )
    assert [(e.input, e.job) for e in graph.edges] == [(CUSTOMERS, f"{NAMESPACE}/customer_export.export")]


def test_each_decision_is_logged_with_its_dag_task_and_run(airflow):
    rollup_runs = {run["run_id"] for run in airflow.runs[:2]}
    decisions = logged_contexts(airflow.server, ROLLUP)
    # The allowed run asked twice (the operator, then the rollup's pre-flight), the forbidden once.
    asked = sorted((c["airflow.run_id"], c["airflow.task_id"], outcome) for outcome, c in decisions)
    allowed_run, forbidden_run = airflow.runs[0]["run_id"], airflow.runs[1]["run_id"]
    assert asked == sorted(
        [
            (allowed_run, "residency_check", Outcome.ALLOW),
            (allowed_run, "rollup", Outcome.ALLOW),
            (forbidden_run, "residency_check", Outcome.DENY),
        ]
    )
    for _outcome, context in decisions:
        assert context["airflow.dag_id"] == "customer_rollup" and context["airflow.run_id"] in rollup_runs
        assert context["airflow.try_number"] == "1"
