"""Runs DAGs in-process with `dag.test()`, one after the other, appending each run's task
states as a JSON line to STATES_FILE: `python airflow_run.py STATES_FILE DAG_FILE CONF_JSON ...`.
A file of its own, not stdout: Airflow's and the OpenLineage client's log lines share stdout
and can land in the middle of a line printed there.

Run by tests/pipelines/test_airflow.py with the Python of the Airflow environment
(tools/pipelines/venv.sh airflow), not the project's; one process for all the runs because
importing Airflow takes most of a run's time.
"""

import json
import runpy
import sys

states_file, *arguments = sys.argv[1:]
for dag_file, conf in zip(arguments[::2], arguments[1::2], strict=True):
    dag = runpy.run_path(dag_file)["dag"]
    run = dag.test(run_conf=json.loads(conf))
    tasks = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    with open(states_file, "a", encoding="utf-8") as states:
        states.write(json.dumps({"dag_id": dag.dag_id, "run_id": run.run_id, "tasks": tasks}) + "\n")
