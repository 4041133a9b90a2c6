"""Randomize participants in a concealed (blinded) model without ever revealing their arm.

In a concealed model REDCap writes a *randomization number* (here a study kit number) into a text
field, and keeps the arm to itself. This DAG takes the record ids to randomize as a param, waits for
each record's strata on the baseline event, randomizes it into ``kit_number`` on the randomization
event, and reports kit numbers and counts only. Nothing it logs or returns names an arm: the summary
reads ``kit_number`` and nothing else from the randomization event.

Params: ``records`` (record ids that already exist in REDCap), ``randomization_id``,
``poke_interval`` and ``strata_timeout`` (seconds).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import Param, TriggerRule, dag, get_current_context, task, task_group
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_redcap.hooks.redcap import RedcapHook
from airflow_provider_redcap.operators import RedcapRandomizeOperator
from airflow_provider_redcap.sensors import RedcapStratificationSensor

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

REDCAP_CONN_ID = "redcap_default"
TARGET_FIELD = "kit_number"
TARGET_EVENT = "randomization_arm_1"


class ParamTimedStratificationSensor(RedcapStratificationSensor):
    """The stratification sensor with ``poke_interval`` and ``timeout`` taken from the run's params.

    A sensor's ``poke_interval`` and ``timeout`` are fixed when the DAG is parsed (not templated),
    so they are read from ``params`` at run time; every reschedule goes through ``execute`` again.
    """

    def execute(self, context: Context) -> Any:
        self.poke_interval = float(context["params"]["poke_interval"])
        self.timeout = float(context["params"]["strata_timeout"])
        return super().execute(context)


@task
def requested_records() -> list[str]:
    """The ``records`` param, each record once, as strings (REDCap ids are text: ``001017``)."""
    records = get_current_context()["params"]["records"]
    return list(dict.fromkeys(str(record) for record in records))


@task_group(group_id="participant")
def randomize_participant(record: str) -> None:
    """Wait for one record's strata, then randomize it in the concealed model."""
    wait = ParamTimedStratificationSensor(
        task_id="wait_for_strata",
        redcap_conn_id=REDCAP_CONN_ID,
        records=[record],
        randomization_id="{{ params.randomization_id }}",
        # REDCap does not say which randomization_id is which model: the target picks the strata.
        target_field=TARGET_FIELD,
        target_event=TARGET_EVENT,
        mode="reschedule",
        soft_fail=True,
        map_index_template="{{ task.records[0] }}",
    )
    randomize = RedcapRandomizeOperator(
        task_id="randomize",
        redcap_conn_id=REDCAP_CONN_ID,
        record=record,
        randomization_id="{{ params.randomization_id }}",
        target_field=TARGET_FIELD,
        target_event=TARGET_EVENT,
        map_index_template="{{ task.record }}",
    )
    wait >> randomize


@task(trigger_rule=TriggerRule.ALL_DONE, multiple_outputs=False)
def summarize(records: list[str]) -> dict[str, Any]:
    """Kit numbers of the randomized records and counts; reads only the concealed target field."""
    hook = RedcapHook(redcap_conn_id=REDCAP_CONN_ID)
    rows = hook.export_records(records=records, fields=["record_id", TARGET_FIELD], events=[TARGET_EVENT])
    kits = {row["record_id"]: row[TARGET_FIELD] for row in rows if row.get(TARGET_FIELD)}
    waiting = [record for record in records if record not in kits]
    for record, kit in kits.items():
        log.info("%s: kit %s", record, kit)
    log.info("Randomized: %d, waiting for strata: %d %s", len(kits), len(waiting), waiting)
    return {"kit_numbers": kits, "randomized": len(kits), "waiting": waiting}


@task(trigger_rule=TriggerRule.ONE_FAILED, retries=0)
def fail_run_if_a_task_failed() -> None:
    """Fail the run when a task failed: with only the ``all_done`` summary as a leaf, Airflow would
    mark the run successful even though a participant's randomization failed."""
    raise AirflowFailException("A task of this run failed; see the failed task's log.")


@dag(
    dag_id="redcap_blinded_randomization",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["redcap", "randomization", "blinded", "example"],
    params={
        "records": Param(
            ["001001", "002001", "003001"],
            type="array",
            items={"type": "string"},
            description="Ids of existing records to randomize.",
        ),
        "randomization_id": Param(48297, type="integer", description="REDCap's id of the concealed model."),
        "poke_interval": Param(
            300, type="integer", minimum=1, description="Seconds between two checks of the strata."
        ),
        "strata_timeout": Param(
            6 * 3600,
            type="integer",
            minimum=1,
            description="Seconds to wait for a record's strata before reporting it as waiting.",
        ),
    },
    doc_md=__doc__,
)
def redcap_blinded_randomization() -> None:
    records = requested_records()
    randomize_participant.expand(record=records) >> [summarize(records), fail_run_if_a_task_failed()]


redcap_blinded_randomization()
