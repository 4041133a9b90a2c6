"""Record import, export, delete, next record name and logging (reference §1.2, §1.3, §1.11,
§1.12, §5.1 items 8-9)."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pytest
from redcap_conformance import CSV_CT, XML_DECL, Api, DemoFacts, error_message

pytestmark = pytest.mark.integration

TARGET_REFUSAL = (
    "This field ('{field}') cannot be modified because it has been set as this project's randomization "
    "field,  which can never be modified for any record. This field MUST be removed from the uploaded "
    "data file."
)
STRATA_REFUSAL = (
    "{label} '{record}' has already been randomized, thus this field ('{field}'), which is a "
    "randomization strata field, cannot be modified for this record. You MUST remove this field's "
    "value  for this record from the uploaded data file."
)
YMD_DATE = (
    "Invalid date format. (NOTE: Dates must be imported here only in Y-M-D format, regardless of the "
    "specific date format designated for this field.)"
)
CHECKBOX = "is a checkbox field and thus can only have a value of '1' (checked) or '0' (unchecked)."


def screening(record: str, **values: str) -> dict[str, str]:
    return {"record_id": record, "redcap_event_name": "screening_arm_1", **values}


def baseline(record: str, **values: str) -> dict[str, str]:
    return {"record_id": record, "redcap_event_name": "baseline_arm_1", **values}


def error_lines(resp: Any) -> list[list[str]]:
    """The ``"rec","field","value","message"`` lines of a 400 import error."""
    assert resp.status_code == 400, resp.text
    message = error_message(resp)
    lines = message.split("\n")
    for line in lines:
        assert line.startswith('"'), message
    return [next(csv.reader([line])) for line in lines]


def expected_flat_columns(demo: DemoFacts) -> list[str]:
    """Data columns of a flat export, computed from the data dictionary."""
    columns: list[str] = []
    forms: list[str] = []
    for m in demo.metadata:
        if forms and forms[-1] != m["form_name"]:
            columns.append(f"{forms[-1]}_complete")
        if not forms or forms[-1] != m["form_name"]:
            forms.append(m["form_name"])
        if m["field_type"] == "checkbox":
            codes = [c.split(",", 1)[0].strip() for c in m["select_choices_or_calculations"].split("|")]
            columns += [f"{m['field_name']}___{c}" for c in codes]
        else:
            columns.append(m["field_name"])
    columns.append(f"{forms[-1]}_complete")
    return columns


# --- import: success bodies -----------------------------------------------------------------

ROWS = [
    screening("001001", age="30"),
    baseline("001001", sex="0"),
    screening("001002", age="41"),
    baseline("001002", sex="1"),
]


def test_import_count_json_has_the_space(rc: Api) -> None:
    resp = rc.import_rows(ROWS)
    assert resp.status_code == 200
    assert resp.text == '{"count": 2}'  # distinct records, not rows
    assert resp.headers["content-type"].lower().startswith("application/json")


def test_import_count_is_the_default(rc: Api) -> None:
    assert rc.import_rows(ROWS, returnContent="bogus").text == '{"count": 2}'


def test_import_count_csv_and_xml(rc: Api) -> None:
    csv_body = "record_id,redcap_event_name,age\n001001,screening_arm_1,30\n"
    resp = rc.call("record", format="csv", type="flat", data=csv_body)
    assert resp.status_code == 200, resp.text
    assert resp.text == "1"
    assert resp.headers["content-type"].lower() == CSV_CT
    xml_body = (
        "<records><item><record_id>001002</record_id><redcap_event_name>screening_arm_1"
        "</redcap_event_name><age>50</age></item></records>"
    )
    resp = rc.call("record", format="xml", type="flat", data=xml_body)
    assert resp.status_code == 200, resp.text
    assert resp.text == f"{XML_DECL}<count>1</count>"


def test_import_ids(rc: Api) -> None:
    resp = rc.import_rows(ROWS, returnContent="ids")
    assert resp.status_code == 200
    assert resp.json() == ["001001", "001002"]
    csv_resp = rc.call(
        "record",
        format="csv",
        type="flat",
        returnContent="ids",
        data="record_id,redcap_event_name,age\n001003,screening_arm_1,30\n",
    )
    assert csv_resp.text.splitlines() == ["id", "001003"]
    xml_resp = rc.call(
        "record",
        format="xml",
        type="flat",
        returnContent="ids",
        data="<records><item><record_id>001004</record_id><redcap_event_name>screening_arm_1"
        "</redcap_event_name></item></records>",
    )
    assert re.findall(r"<id>(.*?)</id>", xml_resp.text) == ["001004"]
    assert "<ids>" in xml_resp.text


def test_import_nothing(rc: Api) -> None:
    resp = rc.import_rows(ROWS, returnContent="nothing")
    assert resp.status_code == 200
    assert resp.text == ""
    assert len(rc.export(fields="record_id", events="screening_arm_1")) == 2


def test_force_auto_number_auto_ids_new_comma_old(rc: Api) -> None:
    rc.import_ok([screening("7", age="30")])
    rows = [screening("X1", age="30"), baseline("X1", sex="0"), screening("X2", age="31")]
    resp = rc.import_rows(rows, forceAutoNumber="true", returnContent="auto_ids")
    assert resp.status_code == 200, resp.text
    assert resp.json() == ["8,X1", "9,X2"]
    stored = rc.export(fields="record_id,sex", events="baseline_arm_1", records="8")
    assert stored == [{"record_id": "8", "redcap_event_name": "baseline_arm_1", "sex": "0"}]
    assert rc.export(records="X1,X2") == []


def test_auto_ids_csv(rc: Api) -> None:
    resp = rc.call(
        "record",
        format="csv",
        type="flat",
        forceAutoNumber="true",
        returnContent="auto_ids",
        data="record_id,redcap_event_name,age\nA,screening_arm_1,30\n",
    )
    assert resp.status_code == 200, resp.text
    assert resp.text.splitlines() == ["id,original_id", "1,A"]


def test_force_auto_number_for_a_dag_user_uses_the_dag_prefix(rc: Api, demo: DemoFacts) -> None:
    rows = [screening("X1", age="30"), screening("X2", age="31")]
    resp = rc.import_rows(
        rows, token=demo.tokens["site_boston"], forceAutoNumber="true", returnContent="auto_ids"
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == ["2201-1,X1", "2201-2,X2"]


def test_auto_ids_without_force_auto_number_is_count(rc: Api) -> None:
    assert rc.import_rows(ROWS, returnContent="auto_ids").text == '{"count": 2}'


def test_import_eav(rc: Api) -> None:
    rows = [
        {"record": "001001", "redcap_event_name": "screening_arm_1", "field_name": "age", "value": "33"},
        {"record": "001001", "redcap_event_name": "baseline_arm_1", "field_name": "sex", "value": "0"},
    ]
    resp = rc.import_rows(rows, type="eav")
    assert resp.status_code == 200, resp.text
    assert resp.text == '{"count": 1}'
    stored = rc.export(records="001001", fields="record_id,sex", events="baseline_arm_1")
    assert stored[0]["sex"] == "0"


# --- import: overwrite and dates ------------------------------------------------------------


def test_normal_ignores_blanks_overwrite_erases(rc: Api) -> None:
    rc.import_ok([baseline("001001", sex="0", weight_kg="70", conditions___2="1")])
    rc.import_ok([baseline("001001", weight_kg="", conditions___2="")])
    row = rc.export(records="001001", fields="record_id,weight_kg,conditions", events="baseline_arm_1")[0]
    assert (row["weight_kg"], row["conditions___2"]) == ("70", "1")
    rc.import_ok([baseline("001001", weight_kg="", conditions___2="")], overwriteBehavior="overwrite")
    row = rc.export(records="001001", fields="record_id,weight_kg,conditions", events="baseline_arm_1")[0]
    assert (row["weight_kg"], row["conditions___2"]) == ("", "0")


@pytest.mark.parametrize(("date_format", "value"), [("MDY", "10/06/2026"), ("DMY", "06/10/2026")])
def test_date_format(rc: Api, date_format: str, value: str) -> None:
    rc.import_ok([screening("001001", screen_date=value)], dateFormat=date_format)
    row = rc.export(records="001001", fields="record_id,screen_date", events="screening_arm_1")[0]
    assert row["screen_date"] == "2026-10-06"


# --- import: validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "line"),
    [
        (screening("001001", age="abc"), ["001001", "age", "abc", "The value of age must be an integer."]),
        (
            screening("001001", age="17"),
            ["001001", "age", "17", "age should not be less than the field minimum (18)"],
        ),
        (
            screening("001001", age="120"),
            ["001001", "age", "120", "age should not be greater than the field maximum (99)"],
        ),
        (
            baseline("001001", weight_kg="heavy"),
            ["001001", "weight_kg", "heavy", "The value of weight_kg must be numeric."],
        ),
        (screening("001001", screen_date="10/06/2026"), ["001001", "screen_date", "10/06/2026", YMD_DATE]),
        (baseline("001001", sex="2"), ["001001", "sex", "2", "The value is not a valid category for sex"]),
        (
            baseline("001001", age_group="0"),
            ["001001", "age_group", "0", "The value is not a valid category for age_group"],
        ),
        (
            screening("001001", eligible="yes"),
            ["001001", "eligible", "yes", "The value is not a valid category for eligible"],
        ),
    ],
)
def test_field_validation_lines(rc: Api, row: dict[str, str], line: list[str]) -> None:
    resp = rc.import_rows([row])
    assert error_lines(resp) == [line]
    assert rc.export(records="001001") == []


def test_checkbox_value_must_be_0_or_1(rc: Api) -> None:
    lines = error_lines(rc.import_rows([baseline("001001", conditions___1="2")]))
    assert len(lines) == 1
    record, field, value, message = lines[0]
    assert (record, value) == ("001001", "2")
    assert field.startswith("conditions")
    assert message.endswith(CHECKBOX)


def test_error_line_quotes_are_doubled(rc: Api) -> None:
    resp = rc.import_rows([screening("001001", age='4"2')])
    assert error_message(resp) == '"001001","age","4""2","The value of age must be an integer."'


def test_several_errors_are_joined_with_newlines_and_nothing_is_saved(rc: Api) -> None:
    rows = [
        screening("001001", age="30"),
        screening("001002", age="x"),
        baseline("001003", sex="9"),
    ]
    lines = error_lines(rc.import_rows(rows))
    assert sorted(tuple(line[:3]) for line in lines) == [("001002", "age", "x"), ("001003", "sex", "9")]
    assert rc.export(fields="record_id") == []  # all or nothing: 001001 was valid but not saved


def test_soft_range_is_only_a_warning(rc: Api) -> None:
    resp = rc.import_rows([baseline("001001", weight_kg="300")])
    assert resp.status_code == 200, resp.text
    assert resp.text == '{"count": 1}'


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [screening("001001", foo="1", bar="2")],
            "The following fields were not found in the project as real data fields: foo, bar",
        ),
        (
            [{"redcap_event_name": "screening_arm_1", "age": "30"}],
            "The record id field (record_id) is missing.",
        ),
        ([screening("", age="30")], "The record name cannot be empty."),
        (
            [screening("001001", age="30"), screening("001001", age="31")],
            "The records listed below occur more than once. Please remove any duplicates and try again: "
            "001001",
        ),
        ([{"record_id": "001001", "age": "30"}], "The record event name is missing."),
        (
            [{"record_id": "001001", "redcap_event_name": "nope_arm_1", "age": "30"}],
            "The following values of redcap_event_name are invalid: nope_arm_1",
        ),
    ],
)
def test_whole_request_errors(rc: Api, rows: list[dict[str, str]], message: str) -> None:
    resp = rc.import_rows(rows)
    assert resp.status_code == 400
    assert error_message(resp) == message
    assert rc.export(fields="record_id") == []


def test_record_name_too_long(rc: Api) -> None:
    resp = rc.import_rows([screening("1" * 101, age="30")])
    assert resp.status_code == 400
    assert error_message(resp).startswith("Record names must be 100 characters or less in length.")


def test_bad_json(rc: Api) -> None:
    resp = rc.call("record", type="flat", data="[{", returnFormat="json")
    assert resp.status_code == 400
    message = error_message(resp)
    assert message.startswith(
        "The data being imported is not formatted correctly. PHP error from JSON decoder: "
    ), message
    assert message.endswith(". The JSON must be in an array, as in [{ ... }].")


def test_bad_xml(rc: Api) -> None:
    resp = rc.call("record", format="xml", type="flat", data="<records><item>", returnFormat="json")
    assert resp.status_code == 400
    assert error_message(resp).startswith("The data being imported is not formatted correctly.")


def test_error_envelope_for_import_in_csv(rc: Api) -> None:
    resp = rc.call(
        "record", format="csv", type="flat", data="record_id,redcap_event_name,age\n1,screening_arm_1,x\n"
    )
    assert resp.status_code == 400
    assert resp.text == 'ERROR: "1","age","x","The value of age must be an integer."'
    assert resp.headers["content-type"].lower() == CSV_CT


@pytest.mark.parametrize("target", ["rand_arm", "kit_number"])
def test_randomization_target_column_is_refused(rc: Api, target: str) -> None:
    resp = rc.import_rows([{"record_id": "001001", "redcap_event_name": "randomization_arm_1", target: "1"}])
    assert resp.status_code == 400
    assert TARGET_REFUSAL.format(field=target) in error_message(resp)
    assert rc.export(fields="record_id") == []


def test_strata_of_a_randomized_record_cannot_change(rc: Api, demo: DemoFacts) -> None:
    rc.enrol("001001", "boston", "0", "1")
    assert rc.randomize("001001", 48213).status_code == 200
    resp = rc.import_rows([baseline("001001", sex="1")])
    assert resp.status_code == 400
    label = next(m["field_label"] for m in demo.metadata if m["field_name"] == "record_id")
    assert STRATA_REFUSAL.format(label=label, record="001001", field="sex") in error_message(resp)
    # Other fields of the record, and strata of records not yet randomized, stay editable.
    rc.import_ok([baseline("001001", weight_kg="71")])
    rc.enrol("001002", "boston", "0", "1")
    rc.import_ok([baseline("001002", sex="1")])


def test_import_assigns_dag_and_site_user_imports_into_its_dag(rc: Api, demo: DemoFacts) -> None:
    rc.import_ok([screening("001001", redcap_data_access_group="boston", age="30")])
    rc.import_ok([screening("001002", age="30")], token=demo.tokens["site_boston"])
    rows = rc.export(fields="record_id", events="screening_arm_1", exportDataAccessGroups="true")
    assert {r["record_id"]: r["redcap_data_access_group"] for r in rows} == {
        "001001": "boston",
        "001002": "boston",
    }


def _analysis(project: dict[str, Any], _path: Any) -> None:
    project["in_production"] = 2


def test_no_import_in_analysis_cleanup(serve_variant: Any) -> None:
    server = serve_variant(_analysis)
    api = Api(server.url, server.token)
    resp = api.import_rows([screening("001001", age="30")])
    assert resp.status_code == 403
    assert (
        error_message(resp) == "Data may not be imported because the project is in Analysis/Cleanup status."
    )


# --- export ---------------------------------------------------------------------------------


def test_flat_export_shape(rc: Api, demo: DemoFacts) -> None:
    rc.enrol("001001", "boston", "0", "3")
    rows = rc.export(records="001001")
    assert [r["redcap_event_name"] for r in rows] == ["screening_arm_1", "baseline_arm_1"]
    for row in rows:
        keys = list(row)
        assert keys[:2] == ["record_id", "redcap_event_name"]
        assert keys[2:] == expected_flat_columns(demo)[1:]
        assert all(isinstance(v, str) for v in row.values())
        assert "redcap_repeat_instance" not in row
        assert "redcap_data_access_group" not in row
    assert rows[1]["sex"] == "0"
    assert rows[1]["age_group"] == "3"
    assert rows[0]["sex"] == ""


def test_flat_export_with_dag_column(rc: Api, demo: DemoFacts) -> None:
    rc.enrol("001001", "boston", "0", "3")
    rows = rc.export(records="001001", exportDataAccessGroups="true")
    assert list(rows[0])[:3] == ["record_id", "redcap_event_name", "redcap_data_access_group"]
    assert {r["redcap_data_access_group"] for r in rows} == {"boston"}
    site_rows = rc.export(token=demo.tokens["site_boston"], records="001001", exportDataAccessGroups="true")
    assert site_rows
    assert "redcap_data_access_group" not in site_rows[0]


def test_export_fields_and_events(rc: Api) -> None:
    rc.enrol("001001", "boston", "1", "2")
    rows = rc.export(**{"fields[0]": "record_id", "fields[1]": "sex", "events[0]": "baseline_arm_1"})
    assert rows == [{"record_id": "001001", "redcap_event_name": "baseline_arm_1", "sex": "1"}]


def test_export_forms(rc: Api) -> None:
    rc.enrol("001001", "boston", "1", "2")
    rows = rc.export(**{"forms[0]": "demographics", "fields[0]": "record_id", "events[0]": "baseline_arm_1"})
    assert len(rows) == 1
    assert {"sex", "age_group", "weight_kg", "conditions___1", "demographics_complete"} <= set(rows[0])
    assert "age" not in rows[0]


@pytest.mark.parametrize(
    ("param", "values", "message"),
    [
        ("fields", "foo,bar", "The following values in the parameter \"fields\" are not valid: 'foo', 'bar'"),
        ("forms", "nope", "The following values in the parameter \"forms\" are not valid: 'nope'"),
        (
            "events",
            "nope_arm_1,baseline_arm_1,other_arm_1",
            "The following values in the parameter \"events\" are not valid: 'nope_arm_1', 'other_arm_1'",
        ),
    ],
)
def test_export_invalid_names(rc: Api, param: str, values: str, message: str) -> None:
    resp = rc.call("record", type="flat", **{param: values})
    assert resp.status_code == 400
    assert error_message(resp) == message


def test_unknown_records_are_silently_absent(rc: Api) -> None:
    rc.enrol("001001", "boston", "1", "2")
    assert rc.export(records="nope") == []
    rows = rc.export(records="nope,001001", fields="record_id", events="screening_arm_1")
    assert [r["record_id"] for r in rows] == ["001001"]


def test_export_eav(rc: Api) -> None:
    rc.enrol("001001", "boston", "0", "2")
    rows = rc.export(type="eav", records="001001", fields="record_id,sex,age")
    for row in rows:
        assert list(row) == ["record", "redcap_event_name", "field_name", "value"]
    assert {
        "record": "001001",
        "redcap_event_name": "baseline_arm_1",
        "field_name": "sex",
        "value": "0",
    } in rows
    assert {
        "record": "001001",
        "redcap_event_name": "screening_arm_1",
        "field_name": "age",
        "value": "50",
    } in rows


def test_export_labels(rc: Api) -> None:
    rc.enrol("001001", "boston", "0", "3")
    rows = rc.export(
        records="001001", fields="record_id,sex,age_group", events="baseline_arm_1", rawOrLabel="label"
    )
    assert (rows[0]["sex"], rows[0]["age_group"]) == ("Female", "65+")


def test_export_csv(rc: Api) -> None:
    rc.enrol("001001", "boston", "0", "3")
    resp = rc.call("record", format="csv", type="flat", fields="record_id,sex", events="baseline_arm_1")
    assert resp.headers["content-type"].lower() == CSV_CT
    assert list(csv.reader(io.StringIO(resp.text))) == [
        ["record_id", "redcap_event_name", "sex"],
        ["001001", "baseline_arm_1", "0"],
    ]


@pytest.fixture
def screened(rc: Api) -> Api:
    rc.enrol("001001", "boston", "0", "1")
    rc.enrol("001002", "boston", "0", "3")
    rc.enrol("001003", "boston", "1", "3")
    rc.enrol("001004", "boston", "", "3")
    rc.enrol("001005", "boston", "1", "")
    return rc


def _ids(api: Api, logic: str) -> list[str]:
    rows = api.export(fields="record_id", events="baseline_arm_1", filterLogic=logic)
    return sorted(r["record_id"] for r in rows)


@pytest.mark.parametrize(
    ("logic", "expected"),
    [
        ("[baseline_arm_1][sex] = '0'", ["001001", "001002"]),
        ('[baseline_arm_1][sex] = "0"', ["001001", "001002"]),
        ("[baseline_arm_1][sex] <> '0'", ["001003", "001004", "001005"]),
        ("[baseline_arm_1][sex] = ''", ["001004"]),
        ("[baseline_arm_1][sex] <> '' and [baseline_arm_1][age_group] <> ''", ["001001", "001002", "001003"]),
        ("[baseline_arm_1][sex] = '' or [baseline_arm_1][age_group] = ''", ["001004", "001005"]),
        ("[baseline_arm_1][age_group] = '3' and [baseline_arm_1][sex] = '1'", ["001003"]),
        ("[screening_arm_1][eligible] = '1' and [baseline_arm_1][sex] = '0'", ["001001", "001002"]),
    ],
)
def test_filter_logic(screened: Api, logic: str, expected: list[str]) -> None:
    assert _ids(screened, logic) == expected


def test_filter_logic_on_target_finds_unrandomized(screened: Api) -> None:
    assert screened.randomize("001001", 48213).status_code == 200
    logic = (
        "[randomization_arm_1][rand_arm] = '' and [baseline_arm_1][sex] <> '' "
        "and [baseline_arm_1][age_group] <> ''"
    )
    assert _ids(screened, logic) == ["001002", "001003"]


# --- delete, next record name, logging ------------------------------------------------------


def test_delete_records(rc: Api) -> None:
    rc.enrol("001001", "boston", "0", "1")
    rc.enrol("001002", "boston", "0", "1")
    resp = rc.call("record", action="delete", **{"records[0]": "001001"})
    assert resp.status_code == 200, resp.text
    assert resp.text == "1"
    assert [r["record_id"] for r in rc.export(fields="record_id", events="screening_arm_1")] == ["001002"]


def test_generate_next_record_name(rc: Api, demo: DemoFacts) -> None:
    assert rc.call("generateNextRecordName").text == "1"
    rc.import_ok([screening("7", age="30"), screening("12", age="30"), screening("B-3", age="30")])
    resp = rc.call("generateNextRecordName")
    assert resp.status_code == 200
    assert resp.text == "13"
    assert rc.export(records="13") == []  # it creates nothing


def test_generate_next_record_name_dag_prefix(rc: Api, demo: DemoFacts) -> None:
    site = demo.tokens["site_boston"]
    assert rc.call("generateNextRecordName", token=site).text == "2201-1"
    rc.import_ok([screening("2201-1", age="30")], token=site)
    assert rc.call("generateNextRecordName", token=site).text == "2201-2"


def test_log_export_has_the_randomize_entry(rc: Api) -> None:
    rc.enrol("001001", "boston", "0", "1")
    assert rc.randomize("001001", 48213).status_code == 200
    resp = rc.call("log")
    assert resp.status_code == 200
    rows = resp.json()
    assert rows
    assert all(list(r) == ["timestamp", "username", "action", "details", "record"] for r in rows)
    entries = [r for r in rows if any("Randomize record (API)" in str(v) for v in r.values())]
    assert len(entries) == 1
    assert entries[0]["username"] == "data_manager"
    assert entries[0]["record"] == "001001"
