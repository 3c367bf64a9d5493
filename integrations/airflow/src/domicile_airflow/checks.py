"""The residency pre-flight check of a task: CheckJob with the task's Airflow identity as the
decisions' context, and a task failure naming the decision's reasons when it is not allowed."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from domicile.client import Client, Decision, JobCheck, Outcome

log = logging.getLogger(__name__)

# The context keys logged with each decision (GetDecision shows them).
DAG_ID, TASK_ID, RUN_ID, TRY_NUMBER, MAP_INDEX = (
    "airflow.dag_id",
    "airflow.task_id",
    "airflow.run_id",
    "airflow.try_number",
    "airflow.map_index",
)


def decision_context(context: Mapping[str, Any]) -> dict[str, str]:
    """Who asks, from the task's Airflow context: its DAG, task, run, try (and map index)."""
    ti = context["ti"]
    facts = {DAG_ID: ti.dag_id, TASK_ID: ti.task_id, RUN_ID: ti.run_id, TRY_NUMBER: str(ti.try_number)}
    map_index = getattr(ti, "map_index", -1)
    if map_index is not None and map_index >= 0:
        facts[MAP_INDEX] = str(map_index)
    return facts


def refusal(check: JobCheck) -> str:
    """Why a check is not allowed: one line per denied decision, with its reasons."""
    lines = ["Domicile refused the job:"]
    for decision in check.decisions:
        if decision.outcome is not Outcome.ALLOW:
            lines.append(f"  {_question(decision)}: {decision.outcome.value.upper()} (decision {decision.decision_id})")
            lines.extend(f"    {_reason(reason)}" for reason in decision.reasons)
    return "\n".join(lines)


def _question(decision: Decision) -> str:
    return f"{decision.operation.value} {decision.dataset_id} in {decision.region}"


def _reason(reason: Any) -> str:
    rule = f" [{reason.rule_id}]" if reason.rule_id else ""
    citation = f" ({reason.citation})" if reason.citation else ""
    via = f" via {' -> '.join(reason.lineage_path)}" if len(reason.lineage_path) > 1 else ""
    return f"{reason.code.value}{rule}: {reason.message}{citation}{via}"


def check_job(
    client: Client,
    context: Mapping[str, Any],
    *,
    inputs: Sequence[str],
    outputs: Sequence[str],
    run_region: str,
    output_region: str,
    transform: str = "",
    job: str = "",
) -> JobCheck:
    """Run CheckJob for the task of `context`; raise AirflowFailException (the task fails
    without retries: asking again changes nothing) when any decision is not ALLOW."""
    check = client.check_job(
        inputs=list(inputs),
        outputs=list(outputs),
        run_region=run_region,
        output_region=output_region,
        transform=transform,
        job=job,
        context=decision_context(context),
    )
    for decision in check.decisions:
        log.info("Domicile: %s: %s (decision %s)", _question(decision), decision.outcome.value, decision.decision_id)
    if not check.allowed:
        raise AirflowFailException(refusal(check))
    return check
