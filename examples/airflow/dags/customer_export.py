"""A task guarded only by Domicile's pre-flight check: its inputs and outputs come from the
OpenLineage metadata of the task (here its inlets and outlets), its job is the one the
OpenLineage provider reports (`<namespace>/customer_export.export`). Trigger with
`{"output_region": "aws:us-east-1"}` to see the task refused before it runs."""

from __future__ import annotations

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Param
from domicile_airflow.preflight import ResidencyPreflight
from openlineage.client.event_v2 import Dataset

RUN_REGION = "aws:eu-central-1"


def export() -> None:
    """Stands in for the export itself."""


with DAG(
    "customer_export",
    schedule=None,
    params={"output_region": Param(RUN_REGION, type="string")},
    tags=["domicile"],
) as dag:
    PythonOperator(
        task_id="export",
        python_callable=export,
        inlets=[Dataset(namespace="s3://bank-eu-lake", name="customers")],
        outlets=[Dataset(namespace="s3://bank-eu-lake", name="customer-export")],
        pre_execute=ResidencyPreflight(run_region=RUN_REGION, output_region="{{ params.output_region }}"),
    )
