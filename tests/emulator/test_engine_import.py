"""Import Records against the engine: validation messages, all-or-nothing, return contents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_redcap.emulator import RedcapEmulator
from airflow_provider_redcap.emulator.formats import ApiResponse

LONG = Path(__file__).parent / "projects" / "longitudinal"
ADMIN = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA01"
NORTH = "NNNNNNNNNNNNNNNNNNNNNNNNNNNNNN02"
READER = "RRRRRRRRRRRRRRRRRRRRRRRRRRRRRR03"
LONG_ADMIN = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBB01"
TARGET = (
    "This field ('arm') cannot be modified because it has been set as this project's randomization field,  "
    "which can never be modified for any record. This field MUST be removed from the uploaded data file."
)


def call(emu: RedcapEmulator, token: str = ADMIN, **params: str) -> ApiResponse:
    return emu.api.handle([("token", token), *params.items()]).response


def imp(emu: RedcapEmulator, rows: list[dict[str, str]], token: str = ADMIN, **params: str) -> ApiResponse:
    params.setdefault("format", "json")
    return call(emu, token, content="record", data=json.dumps(rows), **params)


def error(resp: ApiResponse) -> str:
    assert resp.status == 400, resp.body
    return json.loads(resp.body)["error"]


def test_count_body_has_redcaps_space_and_counts_distinct_records(emu: RedcapEmulator) -> None:
    resp = imp(emu, [{"record_id": "10", "sex": "1"}, {"record_id": "11", "sex": "0"}])
    assert (resp.status, resp.body) == (200, '{"count": 2}')


@pytest.mark.parametrize(
    ("fmt", "content", "body"),
    [
        ("json", "ids", '["10","11"]'),
        ("csv", "ids", "id\n10\n11"),
        ("xml", "ids", '<?xml version="1.0" encoding="UTF-8" ?><ids><id>10</id><id>11</id></ids>'),
        ("csv", "count", "2"),
        ("xml", "count", '<?xml version="1.0" encoding="UTF-8" ?><count>2</count>'),
        ("json", "nothing", ""),
        ("json", "auto_ids", '{"count": 2}'),
    ],
)
def test_return_content(emu: RedcapEmulator, fmt: str, content: str, body: str) -> None:
    if fmt == "json":
        data = json.dumps([{"record_id": "10"}, {"record_id": "11", "sex": "0"}])
    elif fmt == "csv":
        data = "record_id,sex\n10,\n11,0\n"
    else:
        data = (
            "<records><item><record_id>10</record_id></item><item><record_id>11</record_id></item></records>"
        )
    resp = call(emu, content="record", format=fmt, data=data, returnContent=content)
    assert (resp.status, resp.body) == (200, body)


def test_force_auto_number_auto_ids(emu: RedcapEmulator) -> None:
    resp = imp(
        emu,
        [{"record_id": "a", "sex": "1"}, {"record_id": "b", "sex": "0"}],
        forceAutoNumber="true",
        returnContent="auto_ids",
    )
    # Seeded records are 1..3, so new ids continue at 4.
    assert resp.body == '["4,a","5,b"]'


def test_dag_user_auto_number_uses_dag_prefix(emu: RedcapEmulator) -> None:
    resp = imp(emu, [{"record_id": "a"}], token=NORTH, forceAutoNumber="1", returnContent="ids")
    assert resp.body == '["301-1"]'
    resp = call(emu, NORTH, content="generateNextRecordName")
    assert resp.body == "301-2"
    assert call(emu, content="generateNextRecordName").body == "4"


def test_unknown_fields_are_one_message(emu: RedcapEmulator) -> None:
    resp = imp(emu, [{"record_id": "1", "foo": "1", "bar": ""}])
    assert error(resp) == "The following fields were not found in the project as real data fields: foo, bar"


def test_missing_pk_and_blank_name_and_duplicates(emu: RedcapEmulator) -> None:
    assert error(imp(emu, [{"sex": "1"}])) == "The record id field (record_id) is missing."
    assert error(imp(emu, [{"record_id": "", "sex": "1"}])) == "The record name cannot be empty."
    assert error(imp(emu, [{"record_id": "5"}, {"record_id": "5"}])) == (
        "The records listed below occur more than once. Please remove any duplicates and try again: 5"
    )


def test_field_errors_are_csv_lines_and_nothing_is_saved(emu: RedcapEmulator) -> None:
    rows = [
        {
            "record_id": "40",
            "age": "x1",
            "weight": "heavy",
            "sex": "7",
            "symptoms___1": "2",
            "dob": "03/02/1990",
        },
        {"record_id": "41", "age": "90", "email": "not-an-email"},
    ]
    lines = error(imp(emu, rows)).split("\n")
    assert lines == [
        '"40","age","x1","The value of age must be an integer."',
        '"40","weight","heavy","The value of weight must be numeric."',
        '"40","sex","7","The value is not a valid category for sex"',
        '"40","symptoms___1","2","symptoms___1 is a checkbox field and thus can only have a value of \'1\' '
        "(checked) or '0' (unchecked).\"",
        '"40","dob","03/02/1990","Invalid date format. (NOTE: Dates must be imported here only in Y-M-D '
        'format, regardless of the specific date format designated for this field.)"',
        '"41","age","90","age should not be greater than the field maximum (80)"',
        '"41","email","not-an-email","The value you provided could not be validated because it does not '
        'follow the expected format. Please try again."',
    ]
    assert {r["record_id"] for r in emu.admin.records()} == {"1", "2", "3"}


def test_soft_range_is_only_a_warning(emu: RedcapEmulator) -> None:
    assert imp(emu, [{"record_id": "42", "weight": "400"}]).body == '{"count": 1}'


def test_date_format_mdy_is_converted(emu: RedcapEmulator) -> None:
    imp(emu, [{"record_id": "43", "dob": "12/31/1999"}], dateFormat="MDY")
    assert next(r for r in emu.admin.records() if r["record_id"] == "43")["dob"] == "1999-12-31"


def test_target_field_column_is_refused_even_blank(emu: RedcapEmulator) -> None:
    assert error(imp(emu, [{"record_id": "1", "arm": ""}])) == f'"1","arm","","{TARGET}"'


def test_strata_of_randomized_record_cannot_change(emu: RedcapEmulator) -> None:
    call(emu, content="record", action="randomize", record="1", randomization_id="7311", format="json")
    message = (
        "Study ID '1' has already been randomized, thus this field ('sex'), which is a randomization strata "
        "field, cannot be modified for this record. You MUST remove this field's value  for this record from "
        "the uploaded data file."
    )
    assert error(imp(emu, [{"record_id": "1", "sex": "1"}])) == f'"1","sex","1","{message}"'
    # The same value, and blanks, are fine.
    assert imp(emu, [{"record_id": "1", "sex": "0", "smoker": ""}]).status == 200


def test_overwrite_blanks_erase(emu: RedcapEmulator) -> None:
    imp(emu, [{"record_id": "1", "dob": "", "symptoms___1": ""}])
    row = next(r for r in emu.admin.records() if r["record_id"] == "1")
    assert (row["dob"], row["symptoms___1"]) == ("1980-02-03", "1")
    imp(emu, [{"record_id": "1", "dob": "", "symptoms___1": ""}], overwriteBehavior="overwrite")
    row = next(r for r in emu.admin.records() if r["record_id"] == "1")
    assert (row["dob"], row["symptoms___1"]) == ("", "0")


def test_dag_column_assigns_and_dag_user_records_stay_in_dag(emu: RedcapEmulator) -> None:
    imp(emu, [{"record_id": "60", "redcap_data_access_group": "south"}])
    imp(emu, [{"record_id": "61"}], token=NORTH)
    groups = {r["record_id"]: r["redcap_data_access_group"] for r in emu.admin.records()}
    assert (groups["60"], groups["61"]) == ("south", "north")
    bad = imp(emu, [{"record_id": "62", "redcap_data_access_group": "west"}])
    assert error(bad).startswith('"62","redcap_data_access_group","west",')


def test_rights(emu: RedcapEmulator) -> None:
    resp = imp(emu, [{"record_id": "1"}], token=READER)
    assert (resp.status, resp.body) == (403, '{"error":"You do not have API Import\\/Update privileges"}')
    emu.admin.set_project_status(2)
    resp = imp(emu, [{"record_id": "1"}])
    assert json.loads(resp.body)["error"] == (
        "Data may not be imported because the project is in Analysis/Cleanup status."
    )


def test_bad_json_and_xml(emu: RedcapEmulator) -> None:
    assert error(imp(emu, [])) if False else True
    resp = call(emu, content="record", format="json", data="{not json")
    assert error(resp) == (
        "The data being imported is not formatted correctly. PHP error from JSON decoder: Syntax error. "
        "The JSON must be in an array, as in [{ ... }]."
    )
    resp = call(emu, content="record", format="xml", returnFormat="json", data="<records><item>")
    assert error(resp).startswith("The data being imported is not formatted correctly. Error: ")


def test_longitudinal_event_rules_and_repeating_new(tmp_path: Path) -> None:
    emu = RedcapEmulator(LONG, db_path=tmp_path / "l.db")
    try:
        assert (
            error(imp(emu, [{"pid": "1", "site": "1"}], token=LONG_ADMIN))
            == "The record event name is missing."
        )
        resp = imp(emu, [{"pid": "1", "redcap_event_name": "week_9"}], token=LONG_ADMIN)
        assert error(resp) == "The following values of redcap_event_name are invalid: week_9"
        rows = [
            {
                "pid": "10",
                "redcap_event_name": "visit_arm_1",
                "redcap_repeat_instrument": "adverse_events",
                "redcap_repeat_instance": "new",
                "ae_term": t,
            }
            for t in ("rash", "nausea")
        ]
        assert imp(emu, rows, token=LONG_ADMIN).body == '{"count": 1}'
        ae = [
            (r["redcap_repeat_instance"], r["ae_term"])
            for r in emu.admin.records(["ae_term"])
            if r["ae_term"]
        ]
        assert ae == [(1, "rash"), (2, "nausea")]
    finally:
        emu.close()


def test_eav_import(emu: RedcapEmulator) -> None:
    data = json.dumps(
        [
            {"record": "70", "field_name": "sex", "value": "1"},
            {"record": "70", "field_name": "symptoms", "value": "2"},
        ]
    )
    resp = call(emu, content="record", format="json", type="eav", data=data)
    assert resp.body == '{"count": 1}'
    row = next(r for r in emu.admin.records() if r["record_id"] == "70")
    assert (row["sex"], row["symptoms___2"]) == ("1", "1")
