"""Dynamic task mapping: ``RedcapStratificationSensor.partial(...).expand(records=...)`` in ``dag.test()``.

One mapped sensor waits for a record whose strata and data access group are all in REDCap, the other
for a record whose ``age_group`` is blank: the first succeeds with its record complete, the second
times out and, with ``soft_fail``, is skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from sqlalchemy import select

from airflow_provider_redcap.hooks.redcap import RedcapHook

pytestmark = [pytest.mark.dag, pytest.mark.integration]

DAG_ID = "redcap_test_mapped_stratification_sensor"
OPEN_RID = 48213
COMPLETE, INCOMPLETE = "009101", "009102"
LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"

DAG_FILE = f'''
from datetime import datetime

from airflow.sdk import dag

from airflow_provider_redcap.sensors import RedcapStratificationSensor


@dag(dag_id="{DAG_ID}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def mapped_sensor():
    RedcapStratificationSensor.partial(
        task_id="wait_for_strata",
        randomization_id={OPEN_RID},
        target_field="rand_arm",
        mode="reschedule",
        poke_interval=1,
        timeout=3,
        soft_fail=True,
    ).expand(records=[["{COMPLETE}"], ["{INCOMPLETE}"]])


mapped_sensor()
'''


def load_dag(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    path = folder / f"{DAG_ID}.py"
    path.write_text(DAG_FILE, encoding="utf-8")
    # dag.test() runs only DAGs that a configured bundle holds: add one for the temp folder, next to the
    # default one (the example DAGs).
    bundles = [
        {"name": "dags-folder", "classpath": LOCAL_BUNDLE, "kwargs": {}},
        {"name": "redcap-test-mapped-sensor", "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(folder)}},
    ]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    bag = DagBag(dag_folder=str(path))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


@pytest.mark.usefixtures("airflow_db")
def test_mapped_sensor_instances(
    redcap_connection: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def participant(record: str, **baseline: str) -> list[dict[str, str]]:
        return [
            {"record_id": record, "redcap_event_name": "screening_arm_1", "age": "45"},
            {
                "record_id": record,
                "redcap_event_name": "baseline_arm_1",
                "redcap_data_access_group": "denver",
                **baseline,
            },
        ]

    RedcapHook().import_records(
        [*participant(COMPLETE, sex="0", age_group="2"), *participant(INCOMPLETE, sex="1")]
    )
    allocations = redcap_connection.admin.allocations()

    dag_run = load_dag(tmp_path, monkeypatch).test()

    with create_session() as session:
        states = {
            ti.map_index: ti.state
            for ti in dag_run.get_task_instances(session=session)
            if ti.task_id == "wait_for_strata"
        }
        xcoms = {
            row.map_index: XComModel.deserialize_value(row)
            for row in session.scalars(
                select(XComModel).where(
                    XComModel.dag_id == DAG_ID,
                    XComModel.run_id == dag_run.run_id,
                    XComModel.task_id == "wait_for_strata",
                    XComModel.key == "return_value",
                )
            )
        }
    assert states == {0: "success", 1: "skipped"}
    assert xcoms[0] == {"randomization_id": OPEN_RID, "complete": [COMPLETE], "waiting": {}, "not_found": []}
    assert 1 not in xcoms
    # The randomization id check allocated nothing.
    assert redcap_connection.admin.allocations() == allocations
