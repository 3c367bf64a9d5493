"""Runs DAGs in-process with `dag.test()`, one after the other, printing each run's task
states as a JSON line (`TASK STATES {...}`): `python airflow_run.py DAG_FILE CONF_JSON ...`.

Run by tests/pipelines/test_airflow.py with the Python of the Airflow environment
(tools/pipelines/venv.sh airflow), not the project's; one process for all the runs because
importing Airflow takes most of a run's time.
"""

import json
import runpy
import sys

arguments = sys.argv[1:]
for dag_file, conf in zip(arguments[::2], arguments[1::2], strict=True):
    dag = runpy.run_path(dag_file)["dag"]
    run = dag.test(run_conf=json.loads(conf))
    tasks = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    print("TASK STATES " + json.dumps({"dag_id": dag.dag_id, "run_id": run.run_id, "tasks": tasks}), flush=True)
