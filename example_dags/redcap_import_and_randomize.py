"""Import a site's screening file into REDCap, wait for each participant's strata, randomize them.

The first DAG a new user runs (``make demo`` drives it against the local REDCap emulator):

1. ``import_screening`` imports ``data/screening.csv`` (a longitudinal file: one row per participant
   and event, sites as data access groups, a few strata still blank).
2. ``participant`` is a task group mapped over the imported record ids, so a complete record is
   never held back by an incomplete one. In each copy, ``wait_for_strata`` waits until the record's
   stratification data (sex and age group at baseline, and its site) are complete, then
   ``randomize`` randomizes it in the open model. The wait has a ``timeout`` with ``soft_fail``:
   a record still incomplete by then ends as *skipped* and is picked up by a later run.
3. ``summarize`` (trigger rule ``all_done``) reads REDCap and reports the allocations per arm and
   stratum, and the records still waiting with the fields they miss.

Run-time knobs are DAG params (trigger with a conf to change them): ``randomization_id``,
``poke_interval`` and ``strata_timeout`` (seconds).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import Param, TriggerRule, dag, task, task_group
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_redcap.hooks.redcap import RedcapHook
from airflow_provider_redcap.operators import RedcapImportRecordsOperator, RedcapRandomizeOperator
from airflow_provider_redcap.sensors import RedcapStratificationSensor

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

REDCAP_CONN_ID = "redcap_default"
SCREENING_FILE = Path(__file__).parent / "data" / "screening.csv"

# The open (unblinded) model of the demo trial: which arm a participant gets lands in rand_arm.
TARGET_FIELD = "rand_arm"
TARGET_EVENT = "randomization_arm_1"
STRATA_EVENT = "baseline_arm_1"
STRATA_FIELDS = ("sex", "age_group")
SITE_COLUMN = "redcap_data_access_group"


class ParamTimedStratificationSensor(RedcapStratificationSensor):
    """The stratification sensor with ``poke_interval`` and ``timeout`` taken from the run's params.

    Airflow fixes a sensor's ``poke_interval`` and ``timeout`` when the DAG is parsed (they are not
    templated), so the values are read from ``params`` at run time instead; every reschedule goes
    through ``execute`` again and picks them up.
    """

    def execute(self, context: Context) -> Any:
        self.poke_interval = float(context["params"]["poke_interval"])
        self.timeout = float(context["params"]["strata_timeout"])
        return super().execute(context)


@task_group(group_id="participant")
def randomize_participant(record: str) -> None:
    """Wait for one record's strata, then randomize it (each record exactly once)."""
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


def _choice_labels(metadata: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """``{field: {code: label}}`` from the data dictionary's ``"1, Placebo | 2, Low dose"`` strings."""
    labels: dict[str, dict[str, str]] = {}
    for field in metadata:
        choices = field.get("select_choices_or_calculations") or ""
        pairs = (choice.split(",", 1) for choice in choices.split("|") if "," in choice)
        labels[field["field_name"]] = {code.strip(): label.strip() for code, label in pairs}
    return labels


@task(trigger_rule=TriggerRule.ALL_DONE, multiple_outputs=False)
def summarize() -> dict[str, Any]:
    """Report allocations per arm and stratum, and the records still waiting for strata."""
    hook = RedcapHook(redcap_conn_id=REDCAP_CONN_ID)
    labels = _choice_labels(hook.get_metadata(fields=[*STRATA_FIELDS, TARGET_FIELD]))
    rows = hook.export_records(
        fields=["record_id", *STRATA_FIELDS, TARGET_FIELD],
        events=[STRATA_EVENT, TARGET_EVENT],
        export_data_access_groups=True,
    )
    records: dict[str, dict[str, str]] = defaultdict(dict)
    for row in rows:
        merged = records[row["record_id"]]
        wanted = STRATA_FIELDS if row.get("redcap_event_name") == STRATA_EVENT else (TARGET_FIELD,)
        merged.update({f: row.get(f, "") for f in wanted})
        merged[SITE_COLUMN] = merged.get(SITE_COLUMN) or row.get(SITE_COLUMN, "")

    by_arm: Counter[str] = Counter()
    by_stratum: dict[str, Counter[str]] = defaultdict(Counter)
    waiting: dict[str, list[str]] = {}
    not_randomized: list[str] = []  # complete, yet no arm: a randomization failed or was not tried
    for record, values in records.items():
        arm = values.get(TARGET_FIELD, "")
        if not arm:
            missing = [f for f in (*STRATA_FIELDS, SITE_COLUMN) if not values.get(f)]
            if missing:
                waiting[record] = missing
            else:
                not_randomized.append(record)
            continue
        arm_label = labels[TARGET_FIELD].get(arm, arm)
        stratum = " / ".join(
            [values[SITE_COLUMN], *(labels[f].get(values[f], values[f]) for f in STRATA_FIELDS)]
        )
        by_arm[arm_label] += 1
        by_stratum[stratum][arm_label] += 1

    for stratum in sorted(by_stratum):
        counts = ", ".join(f"{arm}: {n}" for arm, n in sorted(by_stratum[stratum].items()))
        log.info("%-28s %s", stratum, counts)
    log.info("Allocated per arm: %s", dict(sorted(by_arm.items())))
    for record, missing in waiting.items():
        log.info("Waiting: %s (missing %s)", record, ", ".join(missing))
    if not_randomized:
        log.warning("Complete but not randomized: %s", ", ".join(not_randomized))
    return {
        "allocated": sum(by_arm.values()),
        "by_arm": dict(sorted(by_arm.items())),
        "by_stratum": {s: dict(sorted(c.items())) for s, c in sorted(by_stratum.items())},
        "waiting": waiting,
        "not_randomized": not_randomized,
    }


@task(trigger_rule=TriggerRule.ONE_FAILED, retries=0)
def fail_run_if_a_task_failed() -> None:
    """Fail the run when a task failed: with only the ``all_done`` summary as a leaf, Airflow would
    mark the run successful even though a participant's randomization failed."""
    raise AirflowFailException("A task of this run failed; see the failed task's log.")


@dag(
    dag_id="redcap_import_and_randomize",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["redcap", "randomization", "example"],
    params={
        "randomization_id": Param(48213, type="integer", description="REDCap's id of the open model."),
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
def redcap_import_and_randomize() -> None:
    imported = RedcapImportRecordsOperator(
        task_id="import_screening", redcap_conn_id=REDCAP_CONN_ID, path=str(SCREENING_FILE)
    )
    participants = randomize_participant.expand(record=imported.output)
    participants >> [summarize(), fail_run_if_a_task_failed()]


redcap_import_and_randomize()
