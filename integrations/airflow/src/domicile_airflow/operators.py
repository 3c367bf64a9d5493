"""`ResidencyCheckOperator`: a task that fails when Domicile does not allow a job."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from domicile_airflow.checks import check_job
from domicile_airflow.hooks import DomicileHook


class ResidencyCheckOperator(BaseOperator):
    """Asks Domicile (CheckJob) whether a job may read `inputs` in `run_region` and write
    `outputs` in `output_region`; fails the task, naming each denied decision's reasons, when
    it may not. Put it upstream of the tasks it guards.

    `transform` is the transformation the job claims (it counts only when the policy grants it
    to `job`, a `namespace/name` job id). Every field is templated. Returns the decision ids
    (an XCom), each logged with the DAG, task, run and try as its context.
    """

    template_fields: Sequence[str] = ("inputs", "outputs", "run_region", "output_region", "transform", "job")
    ui_color = "#e8f1ea"

    def __init__(
        self,
        *,
        inputs: Sequence[str] = (),
        outputs: Sequence[str] = (),
        run_region: str = "",
        output_region: str = "",
        transform: str = "",
        job: str = "",
        domicile_conn_id: str = DomicileHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.inputs = inputs
        self.outputs = outputs
        self.run_region = run_region
        self.output_region = output_region
        self.transform = transform
        self.job = job
        self.domicile_conn_id = domicile_conn_id

    def execute(self, context: Any) -> list[str]:
        hook = DomicileHook(self.domicile_conn_id)
        try:
            check = check_job(
                hook.get_conn(),
                context,
                inputs=self.inputs,
                outputs=self.outputs,
                run_region=self.run_region,
                output_region=self.output_region,
                transform=self.transform,
                job=self.job,
            )
        finally:
            hook.close()
        return [decision.decision_id for decision in check.decisions]
