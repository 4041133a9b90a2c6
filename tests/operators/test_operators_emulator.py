"""Import and randomize against the REDCap emulator serving the demo project.

Expected allocations are computed here from the demo's allocation CSV files and screening file, read
with the csv module: REDCap hands out the first unused row (upload order) of the record's stratum and DAG.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_redcap.emulator import Fault, demo_project_dir
from airflow_provider_redcap.hooks.redcap import RedcapHook
from airflow_provider_redcap.operators import RedcapImportRecordsOperator, RedcapRandomizeOperator

pytestmark = pytest.mark.integration

SCREENING = Path(__file__).resolve().parents[2] / "example_dags" / "data" / "screening.csv"
OPEN_RID, CONCEALED_RID = 48213, 48297


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def dag_ids() -> dict[str, str]:
    project = json.loads((demo_project_dir() / "project.json").read_text())
    return {d["unique_group_name"]: str(d["data_access_group_id"]) for d in project["dags"]}


def participants() -> dict[str, dict[str, str]]:
    """record -> {"sex", "age_group", "dag"} from the screening file (blank when missing)."""
    people: dict[str, dict[str, str]] = {}
    for row in read_csv(SCREENING):
        person = people.setdefault(row["record_id"], {"sex": "", "age_group": "", "dag": ""})
        person["dag"] = person["dag"] or row.get("redcap_data_access_group", "")
        if row["redcap_event_name"] == "baseline_arm_1":
            person["sex"], person["age_group"] = row["sex"], row["age_group"]
    return people


def expected_rows(rid: int, records: list[str]) -> dict[str, dict[str, str]]:
    """The production allocation row each record gets, randomized in the given order."""
    free = read_csv(demo_project_dir() / f"allocation_{rid}_production.csv")
    ids = dag_ids()
    people = participants()
    chosen: dict[str, dict[str, str]] = {}
    for record in records:
        person = people[record]
        row = next(
            r
            for r in free
            if (r["sex"], r["age_group"], r["redcap_data_access_group"])
            == (person["sex"], person["age_group"], ids[person["dag"]])
        )
        free.remove(row)
        chosen[record] = row
    return chosen


def complete_records() -> list[str]:
    return [r for r, p in participants().items() if p["sex"] and p["age_group"] and p["dag"]]


def import_screening() -> list[str]:
    return RedcapImportRecordsOperator(task_id="import", path=str(SCREENING)).execute(context={})


def stored(server: Any, record: str, event: str) -> dict[str, Any]:
    return next(
        r for r in server.admin.records() if r["record_id"] == record and r.get("redcap_event_name") == event
    )


# -- import ----------------------------------------------------------------------------------------


def test_import_screening_file(redcap_connection: Any) -> None:
    ids = import_screening()
    assert ids == list(participants())
    first = next(iter(participants()))
    assert stored(redcap_connection, first, "screening_arm_1")["record_id"] == first  # zeros kept


def test_import_options(redcap_connection: Any) -> None:
    base = {"record_id": "009001", "redcap_event_name": "baseline_arm_1"}
    RedcapImportRecordsOperator(
        task_id="i", records=[{**base, "sex": "Male", "weight_kg": "80.5"}], map_labels=True
    ).execute(context={})
    assert stored(redcap_connection, "009001", "baseline_arm_1")["sex"] == "1"

    RedcapImportRecordsOperator(task_id="i", records=[{**base, "weight_kg": ""}]).execute(context={})
    assert stored(redcap_connection, "009001", "baseline_arm_1")["weight_kg"] == "80.5"
    RedcapImportRecordsOperator(task_id="i", records=[{**base, "weight_kg": ""}], overwrite=True).execute(
        context={}
    )
    assert stored(redcap_connection, "009001", "baseline_arm_1")["weight_kg"] == ""

    RedcapImportRecordsOperator(
        task_id="i",
        records=[
            {"record_id": "009001", "redcap_event_name": "screening_arm_1", "screen_date": "10/06/2026"}
        ],
        date_format="MDY",
    ).execute(context={})
    assert stored(redcap_connection, "009001", "screening_arm_1")["screen_date"] == "2026-10-06"


def test_import_in_batches(redcap_connection: Any) -> None:
    ids = RedcapImportRecordsOperator(task_id="i", path=str(SCREENING), batch_size=7).execute(context={})
    assert ids == list(participants())
    assert {r["record_id"] for r in redcap_connection.admin.records()} == set(participants())


def test_import_with_auto_numbering(redcap_connection: Any) -> None:
    class TI:
        pushed: dict[str, Any] = {}

        def xcom_push(self, key: str, value: Any) -> None:
            self.pushed[key] = value

    ti = TI()
    rows = [
        {"record_id": "new-a", "redcap_event_name": "screening_arm_1", "age": "41"},
        {"record_id": "new-b", "redcap_event_name": "screening_arm_1", "age": "42"},
    ]
    ids = RedcapImportRecordsOperator(task_id="i", records=rows, force_auto_number=True).execute(
        context={"ti": ti}
    )
    mapping = ti.pushed["auto_ids"]
    assert set(mapping) == {"new-a", "new-b"}
    assert ids == [mapping["new-a"], mapping["new-b"]]
    assert stored(redcap_connection, mapping["new-b"], "screening_arm_1")["age"] == "42"
    assert not {"new-a", "new-b"} & {r["record_id"] for r in redcap_connection.admin.records()}


def test_validation_reports_every_problem_and_sends_nothing(redcap_connection: Any) -> None:
    rows = [
        {"record_id": "009001", "redcap_event_name": "baseline_arm_1", "sex": "2", "rand_arm": "1"},
        {"record_id": "009002", "redcap_event_name": "screening_arm_1", "age": "old", "shoe": "9"},
        {"record_id": "009003", "age": "30"},
    ]
    with pytest.raises(AirflowFailException) as info:
        RedcapImportRecordsOperator(task_id="i", records=rows).execute(context={})
    assert str(info.value).startswith("5 problem(s) in 3 row(s)")
    assert redcap_connection.admin.records() == []


def test_unvalidated_bad_rows_are_refused_by_redcap(redcap_connection: Any) -> None:
    rows = [{"record_id": "009001", "redcap_event_name": "screening_arm_1", "age": "old"}]
    with pytest.raises(AirflowFailException, match="must be an integer"):
        RedcapImportRecordsOperator(task_id="i", records=rows, validate=False).execute(context={})
    assert redcap_connection.admin.records() == []


# -- randomize -------------------------------------------------------------------------------------


def test_randomize_open_model_matches_the_allocation_table(redcap_connection: Any) -> None:
    import_screening()
    records = complete_records()[:6]
    expected = expected_rows(OPEN_RID, records)
    labels = {"1": "Placebo", "2": "Low dose", "3": "High dose"}

    results = RedcapRandomizeOperator(
        task_id="r", randomization_id=str(OPEN_RID), records=records, target_field="rand_arm"
    ).execute(context={})

    assert [r["record"] for r in results] == records
    for result in results:
        row = expected[result["record"]]
        assert result["status"] == "randomized"
        assert result["value"] == row["redcap_randomization_group"]
        assert result["label"] == labels[row["redcap_randomization_group"]]
        assert result["alternate_value"] == row["redcap_randomization_number"]
        assert result["concealed"] is False
    used = {a["is_used_by"]: a for a in redcap_connection.admin.allocations(OPEN_RID) if a["is_used_by"]}
    assert set(used) == set(records)
    for record in records:
        assert used[record]["target_field_alt"] == expected[record]["redcap_randomization_number"]
        assert (
            stored(redcap_connection, record, "randomization_arm_1")["rand_arm"]
            == (expected[record]["redcap_randomization_group"])
        )


def test_randomize_concealed_model_shows_only_the_number(
    redcap_connection: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import_screening()
    record = complete_records()[0]
    row = expected_rows(CONCEALED_RID, [record])[record]

    result = RedcapRandomizeOperator(
        task_id="r", randomization_id=CONCEALED_RID, record=record, target_field="kit_number"
    ).execute(context={})

    assert result["value"] == row["redcap_randomization_number"]
    assert (result["label"], result["alternate_value"], result["concealed"]) == (None, None, True)
    assert "redcap_randomization_group" not in json.dumps(result)
    logged = capsys.readouterr().out
    assert row["redcap_randomization_number"] in logged
    assert "Placebo" not in logged
    assert "dose" not in logged


def test_dropped_connection_after_commit_uses_exactly_one_allocation(redcap_connection: Any) -> None:
    import_screening()
    record = complete_records()[0]
    row = expected_rows(OPEN_RID, [record])[record]
    redcap_connection.admin.add_fault(Fault(method="record.randomize", kind="drop_after_commit", times=1))

    result = RedcapRandomizeOperator(
        task_id="r", randomization_id=OPEN_RID, record=record, target_field="rand_arm"
    ).execute(context={})

    assert result["status"] == "recovered"
    assert result["value"] == row["redcap_randomization_group"]
    used = [a for a in redcap_connection.admin.allocations(OPEN_RID) if a["is_used_by"]]
    assert [(a["is_used_by"], a["target_field_alt"]) for a in used] == [
        (record, row["redcap_randomization_number"])
    ]


def test_error_before_commit_is_sent_once_more(redcap_connection: Any) -> None:
    import_screening()
    record = complete_records()[0]
    redcap_connection.admin.add_fault(
        Fault(method="record.randomize", kind="error_before_commit", status=502, times=1)
    )
    result = RedcapRandomizeOperator(
        task_id="r", randomization_id=OPEN_RID, record=record, target_field="rand_arm"
    ).execute(context={})
    assert result["status"] == "randomized"
    assert [a["is_used_by"] for a in redcap_connection.admin.allocations(OPEN_RID) if a["is_used_by"]] == [
        record
    ]


def test_record_randomized_beforehand_is_existing(redcap_connection: Any) -> None:
    import_screening()
    record = complete_records()[0]
    earlier = RedcapHook().randomize_record(record, OPEN_RID)
    log_before = len(redcap_connection.admin.log())

    result = RedcapRandomizeOperator(
        task_id="r", randomization_id=OPEN_RID, records=[record], target_field="rand_arm"
    ).execute(context={})

    assert result == [
        {
            "record": record,
            "randomization_id": OPEN_RID,
            "target_field": "rand_arm",
            "target_event": "randomization_arm_1",
            "value": earlier.value,
            "label": {"1": "Placebo", "2": "Low dose", "3": "High dose"}[earlier.value],
            "alternate_value": None,
            "concealed": False,
            "status": "existing",
        }
    ]
    new_entries = redcap_connection.admin.log()[log_before:]
    assert not [e for e in new_entries if "Randomize" in str(e)]
    assert len([a for a in redcap_connection.admin.allocations(OPEN_RID) if a["is_used_by"]]) == 1


def test_missing_strata_fail_without_allocating(redcap_connection: Any) -> None:
    import_screening()
    incomplete = [r for r, p in participants().items() if not (p["sex"] and p["age_group"])]
    assert incomplete, "the demo screening file has records with blank strata"

    with pytest.raises(AirflowFailException) as info:
        RedcapRandomizeOperator(
            task_id="r", randomization_id=OPEN_RID, records=incomplete, target_field="rand_arm"
        ).execute(context={})

    for record in incomplete:
        assert record in str(info.value)
    assert "Missing stratification data" in str(info.value)
    assert not [a for a in redcap_connection.admin.allocations(OPEN_RID) if a["is_used_by"]]


def test_no_allocations_left(redcap_connection: Any) -> None:
    table = read_csv(demo_project_dir() / f"allocation_{OPEN_RID}_production.csv")
    dags = {v: k for k, v in dag_ids().items()}
    counts: dict[tuple[str, str, str], int] = {}
    for row in table:
        key = (row["sex"], row["age_group"], row["redcap_data_access_group"])
        counts[key] = counts.get(key, 0) + 1
    (sex, age_group, dag_id), size = min(counts.items(), key=lambda item: item[1])
    records = [f"0095{n:02d}" for n in range(size + 1)]
    rows = [
        {"record_id": r, "redcap_event_name": "baseline_arm_1", "redcap_data_access_group": dags[dag_id],
         "sex": sex, "age_group": age_group}
        for r in records
    ]  # fmt: skip
    RedcapImportRecordsOperator(task_id="i", records=rows).execute(context={})

    with pytest.raises(AirflowFailException) as info:
        RedcapRandomizeOperator(
            task_id="r", randomization_id=OPEN_RID, records=records, target_field="rand_arm"
        ).execute(context={})

    assert f"{records[-1]}: " in str(info.value)
    assert "No allocations available" in str(info.value)
    assert f"{size} record(s) done" in str(info.value)


class RecordingTI:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def test_wrong_target_field_stops_at_the_first_allocation_and_says_so(redcap_connection: Any) -> None:
    # randomization 48297 (concealed) allocates into kit_number; the task is told rand_arm.
    import_screening()
    first, second = complete_records()[:2]
    row = expected_rows(CONCEALED_RID, [first])[first]
    ti = RecordingTI()

    with pytest.raises(AirflowFailException) as info:
        RedcapRandomizeOperator(
            task_id="r", randomization_id=CONCEALED_RID, records=[first, second], target_field="rand_arm"
        ).execute(context={"ti": ti})

    message = str(info.value)
    number = row["redcap_randomization_number"]
    assert f"RECORD {first} WAS RANDOMIZED in randomization {CONCEALED_RID}" in message
    assert "into field 'kit_number'" in message
    assert number in message
    assert "irreversible" in message
    assert "REDCap administrator" in message
    assert f"randomization_id={CONCEALED_RID} and target_field='rand_arm' do not belong together" in message
    assert "Placebo" not in message
    assert "dose" not in message
    # Exactly one allocation burnt, in the model REDCap used; the second record was never sent.
    used = [a for a in redcap_connection.admin.allocations(CONCEALED_RID) if a["is_used_by"]]
    assert [(a["is_used_by"], a["target_field"]) for a in used] == [(first, number)]
    assert not [a for a in redcap_connection.admin.allocations(OPEN_RID) if a["is_used_by"]]
    assert stored(redcap_connection, first, "randomization_arm_1")["kit_number"] == number
    assert ti.pushed["partial_results"] == [
        {
            "record": first,
            "randomization_id": CONCEALED_RID,
            "target_field": "kit_number",
            "target_event": "randomization_arm_1",
            "value": number,
            "label": None,
            "alternate_value": None,
            "concealed": True,
            "status": "randomized_other_target",
        }
    ]


def test_rerun_after_wrong_target_names_the_pairing_and_allocates_nothing(redcap_connection: Any) -> None:
    import_screening()
    first, second = complete_records()[:2]
    number = expected_rows(CONCEALED_RID, [first])[first]["redcap_randomization_number"]
    wrong = {"task_id": "r", "randomization_id": CONCEALED_RID, "target_field": "rand_arm"}
    with pytest.raises(AirflowFailException):
        RedcapRandomizeOperator(records=[first], **wrong).execute(context={})

    with pytest.raises(AirflowFailException) as info:
        RedcapRandomizeOperator(records=[first, second], **wrong).execute(context={})

    message = str(info.value)
    assert f"{first}: " in message
    assert "already randomized" in message
    assert "another field" in message
    assert "do not belong together" in message
    assert "kit_number" in message  # the project's other model target, a likely home of the value
    used = [a for a in redcap_connection.admin.allocations(CONCEALED_RID) if a["is_used_by"]]
    assert [(a["is_used_by"], a["target_field"]) for a in used] == [(first, number)]
    assert not [a for a in redcap_connection.admin.allocations(OPEN_RID) if a["is_used_by"]]


def test_import_without_import_rights_reads_as_sentences(
    redcap_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo's monitor user has API export rights only.
    monkeypatch.setenv("AIRFLOW_CONN_REDCAP_DEFAULT", redcap_emulator.airflow_connection_json("monitor"))
    rows = [{"record_id": "009001", "redcap_event_name": "screening_arm_1", "age": "40"}]

    with pytest.raises(AirflowFailException) as info:
        RedcapImportRecordsOperator(task_id="i", records=rows).execute(context={})

    message = str(info.value)
    assert "You do not have API Import/Update privileges" in message
    assert "privileges Saved" not in message
    assert "\nSaved 0 record(s): (none). Not saved: 009001." in message
