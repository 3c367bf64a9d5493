"""A DAG that asks Domicile before it writes: `residency_check` (CheckJob) fails the run when
the rollup of EU customer data may not be stored in the chosen region, and `rollup` runs
only after it, itself guarded by a pre-flight check of its OpenLineage inputs and outputs.

Trigger with `{"output_region": "aws:us-east-1"}` to see the refusal (GDPR Art. 44-45 under
examples/policy.yaml). The OpenLineage provider reports `rollup`'s inlets and outlets to
Domicile, which records them as lineage."""

from __future__ import annotations

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Param
from domicile_airflow.operators import ResidencyCheckOperator
from domicile_airflow.preflight import ResidencyPreflight
from openlineage.client.event_v2 import Dataset

RUN_REGION = "aws:eu-central-1"
# OpenLineage datasets as inlets and outlets: Domicile's id of each is `namespace/name`.
# (Airflow Assets work too where a provider translates their scheme, e.g. Amazon's for s3://.)
CUSTOMERS = Dataset(namespace="s3://bank-eu-lake", name="customers")
ROLLUP = Dataset(namespace="s3://bank-eu-lake", name="customer-rollup")


def build_rollup() -> None:
    """Stands in for the real work (a Spark job, a SQL statement...)."""


with DAG(
    "customer_rollup",
    schedule=None,
    params={"output_region": Param(RUN_REGION, type="string", description="Region the rollup is written to")},
    tags=["domicile"],
) as dag:
    residency_check = ResidencyCheckOperator(
        task_id="residency_check",
        inputs=["s3://bank-eu-lake/customers"],
        outputs=["s3://bank-eu-lake/customer-rollup"],
        run_region=RUN_REGION,
        output_region="{{ params.output_region }}",
        job="airflow-eu/customer_rollup",
    )
    rollup = PythonOperator(
        task_id="rollup",
        python_callable=build_rollup,
        inlets=[CUSTOMERS],
        outlets=[ROLLUP],
        pre_execute=ResidencyPreflight(run_region=RUN_REGION, output_region="{{ params.output_region }}"),
    )
    residency_check >> rollup
