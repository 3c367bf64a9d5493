"""dbt (dbt-core, dbt-duckdb, openlineage-dbt's `dbt-ol`, from PyPI) builds examples/dbt on a
local DuckDB file with OpenLineage pointed at a real `domicile serve`: the models' lineage
appears, and a run whose job namespace `lineage.namespace_regions` maps to a region the policy
forbids for EU personal data is an observed violation."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from domicile.client import Dataset, Direction, FindingKind, Operation
from domicile.lineage.openlineage import dataset_id
from tests.pipelines.conftest import ROOT, eventually, pipeline_env

pytestmark = pytest.mark.slow

PROJECT = ROOT / "examples" / "dbt"
JOB_NAMESPACE = "dbt-us"  # the dbt job namespace (OPENLINEAGE_NAMESPACE)
US, FRANKFURT = "aws:us-east-1", "aws:eu-central-1"
DBT_TIMEOUT_SECONDS = 900


def openlineage_config(example: Path, transport: dict, target: Path) -> Path:
    """examples/dbt/openlineage.yml with this server's address, token and credential files."""
    config = yaml.safe_load(example.read_text())
    config["transport"].update(
        url=transport["url"], auth=transport["auth"], sslContext=transport["sslContext"], endpoint=transport["endpoint"]
    )
    target.write_text(yaml.safe_dump(config))
    return target


def test_dbt_models_lineage_and_the_observed_violation(domicile_server, tmp_path):
    bin_dir = pipeline_env("dbt")
    database = tmp_path / "bank.duckdb"
    namespace = f"duckdb://{database}"  # openlineage-dbt's dataset namespace for DuckDB
    server = domicile_server(namespace_regions={namespace: FRANKFURT, JOB_NAMESPACE: US})
    customers, payments = dataset_id(namespace, "bank.raw.customers"), dataset_id(namespace, "bank.raw.payments")
    joined, volumes = (
        dataset_id(namespace, "bank.main.customer_payments"),
        dataset_id(namespace, "bank.main.payment_volumes"),
    )
    with server.client() as client:
        # The source is known to Domicile as EU customers' personal data.
        client.upsert_dataset(
            Dataset.create(
                customers, owner="retail@bank.example", classifications=["PII.IDENTITY"], origins=["DE", "FR"]
            )
        )
        token = server.token(JOB_NAMESPACE, "lineage:write")
        env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",  # dbt-ol runs `dbt`
            "OPENLINEAGE_CONFIG": str(
                openlineage_config(
                    PROJECT / "openlineage.yml", server.openlineage_transport(token), tmp_path / "ol.yml"
                )
            ),
            "OPENLINEAGE_NAMESPACE": JOB_NAMESPACE,
            "DBT_DUCKDB_PATH": str(database),
            "DBT_TARGET_PATH": str(tmp_path / "target"),
            "DBT_LOG_PATH": str(tmp_path / "logs"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
        result = subprocess.run(
            [bin_dir / "dbt-ol", "run", "--project-dir", PROJECT, "--profiles-dir", PROJECT],
            check=False,
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=DBT_TIMEOUT_SECONDS,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Emitted 6 OpenLineage events" in result.stderr + result.stdout

        graph = eventually(
            lambda: (g := client.get_lineage(volumes, Direction.UPSTREAM)) and len(g.edges) == 3 and g,
            "the lineage of payment_volumes",
        )
        assert {(e.input, e.output) for e in graph.edges} == {
            (joined, volumes),
            (customers, joined),
            (payments, joined),
        }
        assert {e.job for e in graph.edges} == {
            f"{JOB_NAMESPACE}/bank.main.bank_rollup.customer_payments",
            f"{JOB_NAMESPACE}/bank.main.bank_rollup.payment_volumes",
        }
        # The models inherit what their sources hold, and are located by their namespace.
        assert client.get_dataset(joined).locations == (FRANKFURT,)
        assert client.decide(volumes, Operation.STORE, US).reasons[0].lineage_path == (customers, joined, volumes)

        violations = client.list_observed_violations().items
        denied = [v for v in violations if v.kind is FindingKind.POLICY_DENIED]
        # EU personal data processed where dbt runs: the source, and the model derived from it.
        assert {(customers, Operation.PROCESS, US), (joined, Operation.PROCESS, US)} <= {
            (v.dataset_id, v.operation, v.region) for v in denied
        }
        customers_violation = next(v for v in denied if v.dataset_id == customers)
        assert customers_violation.job == f"{JOB_NAMESPACE}/bank.main.bank_rollup.customer_payments"
        assert customers_violation.principal == JOB_NAMESPACE
        assert customers_violation.decision.reasons[0].rule_id == "gdpr-personal-data"
