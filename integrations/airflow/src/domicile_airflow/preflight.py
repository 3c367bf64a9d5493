"""`ResidencyPreflight`: a residency check before any operator runs (its `pre_execute`).

The task's inputs and outputs are those the OpenLineage provider reports for it when the task
starts (an extractor, the operator's `get_openlineage_facets_on_start`, or its inlets and
outlets), mapped to Domicile dataset ids as Domicile maps the provider's events
(`namespace/name`); its job is the provider's (`<namespace>/<dag_id>.<task_id>`), so a
transform the policy grants to that job counts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.providers.openlineage import conf as openlineage_conf
from airflow.providers.openlineage.extractors.manager import ExtractorManager
from airflow.sdk.exceptions import AirflowFailException
from airflow.utils.state import TaskInstanceState

from domicile.lineage.openlineage import dataset_id
from domicile_airflow.checks import check_job
from domicile_airflow.hooks import DomicileHook


def openlineage_datasets(context: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The Domicile ids of the inputs and outputs the OpenLineage provider reports for the
    task of `context` as it starts."""
    metadata = ExtractorManager().extract_metadata(
        dagrun=context["dag_run"],
        task=context["task"],
        task_instance_state=TaskInstanceState.RUNNING,
        task_instance=context["ti"],
    )
    return (
        [dataset_id(d.namespace, d.name) for d in metadata.inputs],
        [dataset_id(d.namespace, d.name) for d in metadata.outputs],
    )


def openlineage_job(context: Mapping[str, Any]) -> str:
    """The task's job id as the OpenLineage provider names the job in its events."""
    ti = context["ti"]
    return f"{openlineage_conf.namespace()}/{ti.dag_id}.{ti.task_id}"


class ResidencyPreflight:
    """A `pre_execute` callable checking the task's job with Domicile (CheckJob) before the
    operator runs, failing the task with the decision's reasons when it is not allowed:

        SQLExecuteQueryOperator(..., pre_execute=ResidencyPreflight(run_region="aws:eu-west-1",
                                                                    output_region="aws:eu-west-1"))

    `inputs` / `outputs` replace what the task's OpenLineage metadata says. A task with
    neither fails (nothing to check is not a permission) unless `require_datasets=False`.
    Every argument but the last two is templated (rendered with the task's context)."""

    def __init__(
        self,
        *,
        run_region: str,
        output_region: str,
        transform: str = "",
        inputs: Sequence[str] | None = None,
        outputs: Sequence[str] | None = None,
        require_datasets: bool = True,
        domicile_conn_id: str = DomicileHook.default_conn_name,
    ) -> None:
        self.run_region = run_region
        self.output_region = output_region
        self.transform = transform
        self.inputs = inputs
        self.outputs = outputs
        self.require_datasets = require_datasets
        self.domicile_conn_id = domicile_conn_id

    def __call__(self, context: Mapping[str, Any]) -> None:
        def render(value: Any) -> Any:
            return context["task"].render_template(value, context)

        inputs, outputs = render(self.inputs), render(self.outputs)
        if inputs is None or outputs is None:
            lineage_inputs, lineage_outputs = openlineage_datasets(context)
            inputs = lineage_inputs if inputs is None else inputs
            outputs = lineage_outputs if outputs is None else outputs
        if not (inputs or outputs):
            if self.require_datasets:
                raise AirflowFailException(
                    f"Domicile pre-flight of task {context['ti'].task_id!r}: its OpenLineage metadata names no inputs "
                    "or outputs; give them (inputs=, outputs=) or pass require_datasets=False"
                )
            return
        hook = DomicileHook(self.domicile_conn_id)
        try:
            check_job(
                hook.get_conn(),
                context,
                inputs=inputs,
                outputs=outputs,
                run_region=render(self.run_region),
                output_region=render(self.output_region),
                transform=render(self.transform),
                job=openlineage_job(context),
            )
        finally:
            hook.close()
