"""RedcapImportRecordsOperator against an in-memory REDCap (requests-mock), through the real hook."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from airflow.exceptions import AirflowException
from airflow.sdk.exceptions import AirflowFailException
from common.fake_redcap import FakeRedcap

from airflow_provider_redcap.operators import RedcapImportRecordsOperator
from airflow_provider_redcap.operators.import_records import AUTO_IDS_XCOM_KEY, read_records_file

HEADER = "record_id,redcap_event_name,redcap_data_access_group,age,sex,age_group\n"


class FakeTI:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def import_calls(fake: FakeRedcap) -> list[dict[str, Any]]:
    return [c for c in fake.calls if c["content"] == "record" and "data" in c]


def sent_rows(fake: FakeRedcap) -> list[dict[str, str]]:
    return [row for call in import_calls(fake) for row in json.loads(call["data"])]


def test_csv_keeps_ids_as_written_and_reads_a_bom(fake: FakeRedcap, tmp_path: Path) -> None:
    path = tmp_path / "screening.csv"
    text = HEADER + (
        "001017,screening_arm_1,boston,40,,\n"
        "001017,baseline_arm_1,boston,,0,2\n"
        "100000,screening_arm_1,denver,55,,\n"
        "1e3,screening_arm_1,denver,61,,\n"
    )
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))

    ids = RedcapImportRecordsOperator(task_id="i", path=str(path)).execute(context={})

    assert ids == ["001017", "100000", "1e3"]
    rows = sent_rows(fake)
    assert [r["record_id"] for r in rows] == ["001017", "001017", "100000", "1e3"]
    assert rows[1]["sex"] == "0"
    assert fake.rows[("001017", "baseline_arm_1")]["age_group"] == "2"
    assert import_calls(fake)[0]["overwriteBehavior"] == "normal"
    assert import_calls(fake)[0]["dateFormat"] == "YMD"


def test_undecodable_file_names_file_and_position(fake: FakeRedcap, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    data = (HEADER + "001001,screening_arm_1,boston,40,,\n").encode() + "José,x\n".encode("latin-1")
    path.write_bytes(data)
    offset = data.index(b"\xe9")
    line = data[:offset].count(b"\n") + 1

    with pytest.raises(AirflowFailException) as info:
        RedcapImportRecordsOperator(task_id="i", path=str(path)).execute(context={})

    assert str(path) in str(info.value)
    assert f"byte offset {offset}" in str(info.value)
    assert f"line {line}" in str(info.value)
    assert import_calls(fake) == []


def test_encoding_option_reads_other_encodings_without_losing_characters(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("record_id,note\n001,Ñandú é\n".encode("latin-1"))
    assert read_records_file(path, encoding="latin-1") == [{"record_id": "001", "note": "Ñandú é"}]


def test_json_file_keeps_numbers_as_written(fake: FakeRedcap, tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    path.write_text(
        '[{"record_id": "001001", "redcap_event_name": "baseline_arm_1", "weight_kg": 70.50, "sex": 0}]'
    )
    ids = RedcapImportRecordsOperator(task_id="i", path=str(path)).execute(context={})
    assert ids == ["001001"]
    assert sent_rows(fake)[0]["weight_kg"] == "70.50"
    assert sent_rows(fake)[0]["sex"] == "0"


def test_short_csv_row_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("record_id,age\n001,30\n002\n")
    with pytest.raises(ValueError, match="line 3 has 1 value"):
        read_records_file(path)


def test_bom_at_the_start_of_every_line_is_refused_naming_row_and_code_point(
    fake: FakeRedcap, tmp_path: Path
) -> None:
    # A file glued together from BOM-prefixed pieces: utf-8-sig strips only the first BOM.
    path = tmp_path / "glued.csv"
    lines = [HEADER, "001001,screening_arm_1,boston,40,,\n", "001002,screening_arm_1,boston,41,,\n"]
    path.write_text("".join("\ufeff" + line for line in lines), encoding="utf-8")

    with pytest.raises(AirflowFailException) as info:
        RedcapImportRecordsOperator(task_id="i", path=str(path)).execute(context={})

    message = str(info.value)
    assert "2 problem(s) in 2 row(s)" in message
    assert "row 1" in message
    assert "row 2" in message
    assert "U+FEFF" in message
    assert repr("\ufeff001002") in message
    assert import_calls(fake) == []


def test_empty_trailing_columns_from_a_spreadsheet_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_text("record_id,age,,\n001,30,,\n002,31,,\n")
    assert read_records_file(path) == [{"record_id": "001", "age": "30"}, {"record_id": "002", "age": "31"}]


def test_values_under_an_empty_header_cell_are_refused_naming_the_column(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_text("record_id,age,,\n001,30,,\n002,31,,x\n")
    with pytest.raises(ValueError, match="column 4") as info:
        read_records_file(path)
    assert "empty header" in str(info.value)
    assert "duplicate" not in str(info.value)


@pytest.mark.parametrize(("delimiter", "name"), [(";", "';'"), ("\t", "tab")])
def test_semicolon_or_tab_delimited_file_is_explained(tmp_path: Path, delimiter: str, name: str) -> None:
    path = tmp_path / "export.csv"
    path.write_text(delimiter.join(["record_id", "age"]) + "\n" + delimiter.join(["001", "30"]) + "\n")
    with pytest.raises(ValueError, match=f"{name}-delimited") as info:
        read_records_file(path)
    assert "commas" in str(info.value)


def test_validation_problems_are_reported_together_and_nothing_is_sent(fake: FakeRedcap) -> None:
    records = [
        {"record_id": "001001", "redcap_event_name": "baseline_arm_1", "sex": "Female"},
        {"record_id": "001002", "redcap_event_name": "baseline_arm_1", "age_group": "9", "rand_arm": "1"},
    ]
    with pytest.raises(AirflowFailException) as info:
        RedcapImportRecordsOperator(task_id="i", records=records).execute(context={})
    message = str(info.value)
    assert message.startswith("3 problem(s) in 2 row(s)")
    for piece in ("'001001'", "'sex'", "'Female'", "'001002'", "'age_group'", "'9'", "'rand_arm'"):
        assert piece in message
    assert import_calls(fake) == []


def test_map_labels_sends_codes(fake: FakeRedcap) -> None:
    records = [
        {"record_id": "001001", "redcap_event_name": "baseline_arm_1", "sex": "Male", "age_group": "18-39"}
    ]
    RedcapImportRecordsOperator(task_id="i", records=records, map_labels=True).execute(context={})
    assert sent_rows(fake) == [
        {"record_id": "001001", "redcap_event_name": "baseline_arm_1", "sex": "1", "age_group": "1"}
    ]


def test_validate_false_sends_without_validating(fake: FakeRedcap) -> None:
    records = [{"record_id": "001001", "redcap_event_name": "baseline_arm_1", "sex": "Female"}]
    RedcapImportRecordsOperator(task_id="i", records=records, validate=False).execute(context={})
    # Only the hook's record-id lookup reads the dictionary; no events, mappings or models are read.
    assert [c["content"] for c in fake.calls] == ["metadata", "record"]
    assert sent_rows(fake)[0]["sex"] == "Female"


def test_overwrite_and_date_format_are_passed_on(fake: FakeRedcap) -> None:
    records = [{"record_id": "001001", "redcap_event_name": "screening_arm_1", "screen_date": "10/06/2026"}]
    RedcapImportRecordsOperator(task_id="i", records=records, overwrite=True, date_format="MDY").execute(
        context={}
    )
    call = import_calls(fake)[0]
    assert (call["overwriteBehavior"], call["dateFormat"]) == ("overwrite", "MDY")


def test_force_auto_number_returns_new_ids_and_pushes_mapping(fake: FakeRedcap) -> None:
    records = [
        {"record_id": "tmp-a", "redcap_event_name": "screening_arm_1", "age": "30"},
        {"record_id": "tmp-a", "redcap_event_name": "baseline_arm_1", "sex": "1"},
        {"record_id": "tmp-b", "redcap_event_name": "screening_arm_1", "age": "31"},
    ]
    ti = FakeTI()
    ids = RedcapImportRecordsOperator(task_id="i", records=records, force_auto_number=True).execute(
        context={"ti": ti}
    )
    # The fake numbers new records from 901 on.
    assert ids == ["901", "902"]
    assert ti.pushed[AUTO_IDS_XCOM_KEY] == {"tmp-a": "901", "tmp-b": "902"}
    assert import_calls(fake)[0]["forceAutoNumber"] == "true"


def test_batches_hold_whole_records(fake: FakeRedcap) -> None:
    records = [
        {"record_id": r, "redcap_event_name": e, "age": "30"} if e == "screening_arm_1" else
        {"record_id": r, "redcap_event_name": e, "sex": "0"}
        for r in ("001", "002", "003") for e in ("screening_arm_1", "baseline_arm_1")
    ]  # fmt: skip
    ids = RedcapImportRecordsOperator(task_id="i", records=records, batch_size=2).execute(context={})
    assert ids == ["001", "002", "003"]
    batches = [[row["record_id"] for row in json.loads(c["data"])] for c in import_calls(fake)]
    assert batches == [["001", "001", "002", "002"], ["003", "003"]]


def test_refused_batch_names_saved_and_unsaved_records(fake: FakeRedcap) -> None:
    fake.refused_imports = {2}
    records = [
        {"record_id": r, "redcap_event_name": "screening_arm_1", "age": "30"} for r in ("001", "002", "003")
    ]
    with pytest.raises(AirflowFailException) as info:
        RedcapImportRecordsOperator(task_id="i", records=records, batch_size=1).execute(context={})
    message = str(info.value)
    assert "Saved 1 record(s): 001." in message
    assert "Not saved: 002, 003." in message


def test_transient_failure_is_left_to_airflow_retries(fake: FakeRedcap) -> None:
    fake.outages["record"] = 2
    records = [{"record_id": "001", "redcap_event_name": "screening_arm_1", "age": "30"}]
    with pytest.raises(AirflowException) as info:
        RedcapImportRecordsOperator(task_id="i", records=records).execute(context={})
    assert not isinstance(info.value, AirflowFailException)


def test_records_rendered_as_text_are_parsed(fake: FakeRedcap) -> None:
    rendered = str([{"record_id": "007", "redcap_event_name": "screening_arm_1", "age": "30"}])
    assert RedcapImportRecordsOperator(task_id="i", records=rendered).execute(context={}) == ["007"]


def test_empty_input_sends_nothing(fake: FakeRedcap) -> None:
    assert RedcapImportRecordsOperator(task_id="i", records=[]).execute(context={}) == []
    assert fake.calls == []


def test_records_and_path_are_exclusive() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        RedcapImportRecordsOperator(task_id="i", records=[], path="x.csv")
    with pytest.raises(ValueError, match="exactly one"):
        RedcapImportRecordsOperator(task_id="i")


def test_dag_names_are_checked_only_when_readable(fake: FakeRedcap) -> None:
    records = [
        {"record_id": "001", "redcap_event_name": "screening_arm_1", "redcap_data_access_group": "paris"}
    ]
    with pytest.raises(AirflowFailException, match="unknown data access group"):
        RedcapImportRecordsOperator(task_id="i", records=records).execute(context={})
    fake.forbidden = {"dag"}  # a token without the DAG privilege: REDCap does the check instead
    assert RedcapImportRecordsOperator(task_id="i", records=records).execute(context={}) == ["001"]
