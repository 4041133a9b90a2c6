"""Every day, randomize the participants who became ready since yesterday.

The production pattern once site staff enter data in REDCap themselves: a daily run asks REDCap
(filter logic, evaluated server-side) for the records that are eligible at screening, have both
strata at baseline and have no arm yet, randomizes them, and reports what it did.

Running it twice on the same day is safe. The second run's filter no longer matches the records the
first run randomized, and :class:`RedcapRandomizeOperator` reads the target field before it calls
REDCap, so a record randomized in between (by a person, or a retried task) is reported as existing
and never randomized twice.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from airflow.sdk import Param, TriggerRule, dag, task
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_redcap.hooks.redcap import RedcapHook
from airflow_provider_redcap.operators import RedcapRandomizeOperator

log = logging.getLogger(__name__)

REDCAP_CONN_ID = "redcap_default"
TARGET_FIELD = "rand_arm"
TARGET_EVENT = "randomization_arm_1"
SITE_COLUMN = "redcap_data_access_group"

# Longitudinal filter logic names the event of every field; a field with no data in that event is
# blank, so a record never randomized matches `[randomization_arm_1][rand_arm] = ''`.
READY_FOR_RANDOMIZATION = (
    "[screening_arm_1][eligible] = '1'"
    " and [baseline_arm_1][sex] <> ''"
    " and [baseline_arm_1][age_group] <> ''"
    f" and [{TARGET_EVENT}][{TARGET_FIELD}] = ''"
)


@task
def find_ready_records() -> list[str]:
    """Record ids that are eligible, strata-complete, assigned to a site and not yet randomized."""
    hook = RedcapHook(redcap_conn_id=REDCAP_CONN_ID)
    rows = hook.export_records(
        fields=["record_id"], filter_logic=READY_FOR_RANDOMIZATION, export_data_access_groups=True
    )
    sites: dict[str, str] = {}
    for row in rows:
        sites[row["record_id"]] = sites.get(row["record_id"]) or row.get(SITE_COLUMN, "")
    # The model stratifies by site: REDCap refuses a record that is in no data access group.
    unassigned = [record for record, site in sites.items() if not site]
    if unassigned:
        log.warning("Not assigned to a site, left for the data manager: %s", ", ".join(unassigned))
    ready = [record for record, site in sites.items() if site]
    log.info("%d record(s) ready for randomization: %s", len(ready), ", ".join(ready) or "none")
    return ready


@task(trigger_rule=TriggerRule.ALL_DONE, multiple_outputs=False)
def report(results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Counts per outcome (randomized today, or already randomized before this run)."""
    results = list(results)
    by_status = Counter(result["status"] for result in results)
    for result in results:
        log.info("%s: %s (%s)", result["record"], result.get("label") or result["value"], result["status"])
    log.info("Today: %s", dict(by_status) or "nothing to randomize")
    return {"records": [r["record"] for r in results], "by_status": dict(by_status)}


@task(trigger_rule=TriggerRule.ONE_FAILED, retries=0)
def fail_run_if_a_task_failed() -> None:
    """Fail the run when a task failed: with only the ``all_done`` summary as a leaf, Airflow would
    mark the run successful even though a participant's randomization failed."""
    raise AirflowFailException("A task of this run failed; see the failed task's log.")


@dag(
    dag_id="redcap_daily_randomization",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["redcap", "randomization", "example"],
    params={"randomization_id": Param(48213, type="integer", description="REDCap's id of the model.")},
    doc_md=__doc__,
)
def redcap_daily_randomization() -> None:
    # One mapped task per record: a refusal (say, no allocation left in a stratum) fails that record
    # alone, and a day with nothing to do maps to zero tasks instead of failing.
    randomize = RedcapRandomizeOperator.partial(
        task_id="randomize",
        redcap_conn_id=REDCAP_CONN_ID,
        randomization_id="{{ params.randomization_id }}",
        target_field=TARGET_FIELD,
        target_event=TARGET_EVENT,
        map_index_template="{{ task.record }}",
    ).expand(record=find_ready_records())
    randomize >> [report(randomize.output), fail_run_if_a_task_failed()]


redcap_daily_randomization()
