"""Every example DAG, run with ``dag.test()`` against the emulator, then checked in REDCap's state.

Expectations come from the demo project's files, never from the DAG's output: which records are
complete comes from the screening file, and which allocation each record must hold comes from
replaying the allocation table (lowest unused row of the record's stratum, in upload order), taking
records in the order the emulator's log shows them being randomized.
"""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import requests
from airflow.dag_processing.dagbag import DagBag
from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from airflow_provider_redcap.emulator import demo_project_dir
from airflow_provider_redcap.hooks.redcap import RedcapHook

pytestmark = [pytest.mark.dag, pytest.mark.integration]

EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"
SCREENING_FILE = EXAMPLE_DAGS / "data" / "screening.csv"
OPEN_RID = 48213
CONCEALED_RID = 48297
STRATA_FIELDS = ("sex", "age_group")
RANDOMIZATION_EVENT = "randomization_arm_1"
# Fast waits: strata that are blank now stay blank, so a record waits only this long.
FAST = {"poke_interval": 1, "strata_timeout": 3}


# --- expectations from the project's files ---------------------------------------------------------


def screening_participants() -> dict[str, dict[str, str]]:
    """record -> {"sex", "age_group", "eligible", "dag"}, merged from the file's rows per event."""
    participants: dict[str, dict[str, str]] = {}
    with SCREENING_FILE.open(encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f):
            merged = participants.setdefault(row["record_id"], {})
            for name in (*STRATA_FIELDS, "eligible"):
                if row.get(name):
                    merged[name] = row[name]
            if row.get("redcap_data_access_group"):
                merged["dag"] = row["redcap_data_access_group"]
    return participants


def is_complete(participant: dict[str, str]) -> bool:
    return all(participant.get(name) for name in (*STRATA_FIELDS, "dag"))


def allocation_table(rid: int) -> list[dict[str, str]]:
    project = json.loads((demo_project_dir() / "project.json").read_text(encoding="utf-8"))
    model = next(m for m in project["randomizations"] if m["randomization_id"] == rid)
    status = "production" if project["in_production"] else "development"
    path = demo_project_dir() / model["allocation_tables"][status]
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def dag_ids() -> dict[str, str]:
    project = json.loads((demo_project_dir() / "project.json").read_text(encoding="utf-8"))
    return {d["unique_group_name"]: str(d["data_access_group_id"]) for d in project["dags"]}


def replay_allocations(
    participants: dict[str, dict[str, str]], order: Iterable[str], rid: int
) -> dict[str, dict[str, str]]:
    """record -> the table row it must hold: lowest unused row of its stratum, in upload order."""
    table = allocation_table(rid)
    groups = dag_ids()
    used: set[int] = set()
    expected: dict[str, dict[str, str]] = {}
    for record in order:
        p = participants[record]
        stratum = (p["sex"], p["age_group"], groups[p["dag"]])
        index = next(
            i
            for i, row in enumerate(table)
            if i not in used and (row["sex"], row["age_group"], row["redcap_data_access_group"]) == stratum
        )
        used.add(index)
        expected[record] = table[index]
    return expected


# --- REDCap's state, read through the emulator's admin API ---------------------------------------


def used_allocations(server: Any, rid: int) -> dict[str, dict[str, Any]]:
    """record -> its allocation row; fails if a record holds two rows of one model."""
    used: dict[str, dict[str, Any]] = {}
    for row in server.admin.allocations(rid):
        if row["is_used_by"]:
            assert row["is_used_by"] not in used, f"{row['is_used_by']} was randomized twice"
            used[row["is_used_by"]] = row
    return used


def randomization_order(server: Any, rid: int) -> list[str]:
    """Records in the order REDCap randomized them in model ``rid``, from the project log."""
    order = [
        entry["record"]
        for entry in server.admin.log()
        if entry["action"].startswith("Randomize record") and f"randomization_id = {rid}" in entry["details"]
    ]
    assert len(order) == len(set(order)), f"a record was randomized twice: {order}"
    return order


def stored_values(server: Any, field: str, event: str) -> dict[str, str]:
    return {
        row["record_id"]: row[field]
        for row in server.admin.records(fields=["record_id", field])
        if row.get("redcap_event_name") == event and row.get(field)
    }


def run_xcoms(dag_run: Any, key: str | None = "return_value") -> list[tuple[str, int, Any]]:
    """(task_id, map_index, value) of the run's XComs under ``key`` (every key when ``None``)."""
    with create_session() as session:
        rows = session.scalars(
            select(XComModel).where(XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id)
        ).all()
        rows = [row for row in rows if key is None or row.key == key]
        return [(row.task_id, row.map_index, XComModel.deserialize_value(row)) for row in rows]


def task_states(dag_run: Any) -> dict[tuple[str, int], str]:
    with create_session() as session:
        return {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances(session=session)}


def load_dag(dag_id: str) -> Any:
    bag = DagBag(dag_folder=str(EXAMPLE_DAGS / f"{dag_id}.py"))
    assert bag.import_errors == {}
    return bag.dags[dag_id]


def import_screening_file() -> None:
    """Put the screening file's participants into REDCap, as the first DAG would."""
    with SCREENING_FILE.open(encoding="utf-8-sig", newline="") as f:
        RedcapHook().import_records(list(csv.DictReader(f)))


def check_open_allocations(server: Any, participants: dict[str, dict[str, str]], ready: set[str]) -> None:
    """``ready`` randomized exactly once each, as the table prescribes; every other record untouched."""
    used = used_allocations(server, OPEN_RID)
    assert set(used) == ready
    order = randomization_order(server, OPEN_RID)
    assert set(order) == ready
    expected = replay_allocations(participants, order, OPEN_RID)
    for record in ready:
        want = expected[record]
        assert (used[record]["target_field"], used[record]["target_field_alt"]) == (
            want["redcap_randomization_group"],
            want["redcap_randomization_number"],
        ), record
    assert stored_values(server, "rand_arm", RANDOMIZATION_EVENT) == {
        record: expected[record]["redcap_randomization_group"] for record in ready
    }


# --- the DAGs --------------------------------------------------------------------------------------


class SiteStaff(threading.Thread):
    """Enters a record's missing strata through the API once its sensor is seen waiting."""

    def __init__(self, server: Any, record: str, map_index: int, values: dict[str, str]) -> None:
        super().__init__(name="site-staff", daemon=True)
        self.server, self.record, self.map_index, self.values = server, record, map_index, values
        self.done = threading.Event()
        self.error: Exception | None = None
        with create_session() as session:
            self._old_runs = set(session.scalars(select(DagRun.run_id)))

    def run(self) -> None:
        try:
            while not self.done.is_set():
                if self._sensor_waiting():
                    row = {"record_id": self.record, "redcap_event_name": "baseline_arm_1", **self.values}
                    # Plain HTTP: Airflow's own client machinery belongs to the task running meanwhile.
                    response = requests.post(
                        self.server.url,
                        data={
                            "token": self.server.token,
                            "content": "record",
                            "format": "json",
                            "type": "flat",
                            "data": json.dumps([row]),
                        },
                        timeout=10,
                    )
                    response.raise_for_status()
                    return
                self.done.wait(0.2)
        except Exception as exc:  # reported by the test
            self.error = exc
        finally:
            self.done.set()

    def _sensor_waiting(self) -> bool:
        try:
            return self._count_waiting() > 0
        except OperationalError:  # SQLite: the running task holds the write lock; look again shortly
            return False

    def _count_waiting(self) -> int:
        with create_session() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(TaskInstance)
                    .where(
                        TaskInstance.dag_id == "redcap_import_and_randomize",
                        TaskInstance.task_id == "participant.wait_for_strata",
                        TaskInstance.map_index == self.map_index,
                        TaskInstance.state == "up_for_reschedule",
                        TaskInstance.run_id.not_in(self._old_runs),
                    )
                )
            )


@pytest.mark.usefixtures("airflow_db")
def test_import_and_randomize(redcap_connection: Any) -> None:
    participants = screening_participants()
    # Participants are mapped in file order; one of them gets its missing sex entered mid-run.
    order = list(participants)
    late = next(r for r, p in participants.items() if "sex" not in p and p.get("age_group") and p.get("dag"))
    staff = SiteStaff(redcap_connection, late, order.index(late), {"sex": "0"})
    complete = {r for r, p in participants.items() if is_complete(p)}
    incomplete = set(participants) - complete - {late}
    assert complete, "the screening file should hold complete records"
    assert incomplete, "the screening file should hold records with blank strata"

    staff.start()
    try:
        dag_run = load_dag("redcap_import_and_randomize").test(run_conf={**FAST, "strata_timeout": 6})
    finally:
        staff.done.set()
        staff.join(timeout=10)
    assert staff.error is None
    participants[late]["sex"] = "0"
    complete.add(late)

    assert dag_run.state == "success"
    check_open_allocations(redcap_connection, participants, complete)
    # Incomplete records keep their blanks: nothing was written to them.
    stored = redcap_connection.admin.records(fields=["record_id", *STRATA_FIELDS])
    for record in incomplete:
        baseline = next(
            r for r in stored if r["record_id"] == record and r["redcap_event_name"] == "baseline_arm_1"
        )
        for name in STRATA_FIELDS:
            assert baseline.get(name, "") == participants[record].get(name, "")

    states = task_states(dag_run)
    waits = {k[1]: s for k, s in states.items() if k[0] == "participant.wait_for_strata"}
    assert waits[order.index(late)] == "success", "the sensor released the record once staff filled it"
    assert sorted(waits.values()).count("skipped") == len(incomplete)
    assert sorted(waits.values()).count("success") == len(complete)
    assert states[("summarize", -1)] == "success"
    assert states[("fail_run_if_a_task_failed", -1)] == "skipped"

    summary = next(v for t, _, v in run_xcoms(dag_run) if t == "summarize")
    assert set(summary["waiting"]) == incomplete
    assert summary["not_randomized"] == []
    assert summary["allocated"] == len(complete)
    for record in incomplete:
        blank = {name for name in STRATA_FIELDS if not participants[record].get(name)}
        assert set(summary["waiting"][record]) == blank


@pytest.mark.usefixtures("airflow_db")
def test_run_fails_when_the_randomization_id_is_unknown(redcap_connection: Any) -> None:
    """An unknown randomization id fails the run (the sensor rejects it before any randomize call),
    although the all_done summary still reports."""
    participants = screening_participants()
    records = sorted(r for r, p in participants.items() if is_complete(p))[:2]
    import_screening_file()

    dag_run = load_dag("redcap_blinded_randomization").test(
        run_conf={**FAST, "records": records, "randomization_id": 99999}
    )

    assert dag_run.state == "failed"
    states = task_states(dag_run)
    assert states[("summarize", -1)] == "success"
    assert states[("fail_run_if_a_task_failed", -1)] == "failed"
    assert {s for (t, _), s in states.items() if t == "participant.wait_for_strata"} == {"failed"}
    assert {s for (t, _), s in states.items() if t == "participant.randomize"} == {"upstream_failed"}
    assert used_allocations(redcap_connection, CONCEALED_RID) == {}
    summary = next(v for t, _, v in run_xcoms(dag_run) if t == "summarize")
    assert summary["waiting"] == records


@pytest.mark.usefixtures("airflow_db")
def test_blinded_randomization_reveals_no_arm(
    redcap_connection: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    participants = screening_participants()
    complete = sorted(r for r, p in participants.items() if is_complete(p))[:4]
    incomplete = sorted(r for r, p in participants.items() if not is_complete(p))[:1]
    import_screening_file()

    dag_run = load_dag("redcap_blinded_randomization").test(
        run_conf={**FAST, "records": complete + incomplete}
    )

    assert dag_run.state == "success"
    used = used_allocations(redcap_connection, CONCEALED_RID)
    assert set(used) == set(complete)
    order = randomization_order(redcap_connection, CONCEALED_RID)
    expected = replay_allocations(participants, order, CONCEALED_RID)
    kits = stored_values(redcap_connection, "kit_number", RANDOMIZATION_EVENT)
    assert kits == {r: expected[r]["redcap_randomization_number"] for r in complete}
    assert stored_values(redcap_connection, "rand_arm", RANDOMIZATION_EVENT) == {}
    assert used_allocations(redcap_connection, OPEN_RID) == {}

    xcoms = run_xcoms(dag_run)
    every_xcom = run_xcoms(dag_run, key=None)
    summary = next(v for t, _, v in xcoms if t == "summarize")
    assert summary["kit_numbers"] == kits
    assert summary["waiting"] == incomplete
    randomized = [v for t, _, v in xcoms if t == "participant.randomize"]
    assert len(randomized) == len(complete)
    for result in randomized:
        assert result["value"] == kits[result["record"]]
        assert result.get("alternate_value") in (None, "*")
        assert not result.get("label")

    # Nothing the run logged or pushed names an arm: neither the labels nor the table's group column.
    output = capfd.readouterr()
    text = output.out + output.err + caplog.text + json.dumps([v for _, _, v in every_xcom], default=str)
    assert all(kit in text for kit in kits.values()), "the task logs were not captured"
    for secret in ("Placebo", "Low dose", "High dose", "rand_arm", "redcap_randomization_group"):
        assert secret not in text
    assert '"group"' not in text


@pytest.mark.usefixtures("airflow_db")
def test_daily_randomization_is_safe_to_run_again(redcap_connection: Any) -> None:
    participants = screening_participants()
    ready = {r for r, p in participants.items() if is_complete(p) and p.get("eligible") == "1"}
    import_screening_file()
    dag = load_dag("redcap_daily_randomization")

    first = dag.test()
    assert first.state == "success"
    check_open_allocations(redcap_connection, participants, ready)
    first_report = next(v for t, _, v in run_xcoms(first) if t == "report")
    assert set(first_report["records"]) == ready
    assert first_report["by_status"] == {"randomized": len(ready)}

    second = dag.test()
    assert second.state == "success"
    check_open_allocations(redcap_connection, participants, ready)
    second_report = next(v for t, _, v in run_xcoms(second) if t == "report")
    assert second_report == {"records": [], "by_status": {}}

    # The next day a site enters a missing stratum: only that participant is randomized.
    late = next(r for r, p in participants.items() if "sex" not in p and p.get("age_group") and p.get("dag"))
    RedcapHook().import_records([{"record_id": late, "redcap_event_name": "baseline_arm_1", "sex": "1"}])
    participants[late]["sex"] = "1"
    third = dag.test()
    assert third.state == "success"
    check_open_allocations(redcap_connection, participants, {*ready, late})
    third_report = next(v for t, _, v in run_xcoms(third) if t == "report")
    assert third_report == {"records": [late], "by_status": {"randomized": 1}}
