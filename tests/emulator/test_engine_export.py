"""Export Records and the other export methods against the engine."""

from __future__ import annotations

import json

import pytest

from airflow_provider_redcap.emulator import RedcapEmulator
from airflow_provider_redcap.emulator.formats import ApiResponse

ADMIN = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA01"
NORTH = "NNNNNNNNNNNNNNNNNNNNNNNNNNNNNN02"
READER = "RRRRRRRRRRRRRRRRRRRRRRRRRRRRRR03"
NO_EXPORT = "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXX05"
LAPSED = "LLLLLLLLLLLLLLLLLLLLLLLLLLLLLL06"
LONG_ADMIN = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBB01"


def call(
    emu: RedcapEmulator, token: str = ADMIN, pairs: list[tuple[str, str]] | None = None, **params: str
) -> ApiResponse:
    return emu.api.handle([("token", token), *params.items(), *(pairs or [])]).response


def export(emu: RedcapEmulator, token: str = ADMIN, **params: str) -> list[dict[str, object]]:
    resp = call(emu, token, content="record", format="json", **params)
    assert resp.status == 200, resp.body
    return json.loads(resp.body)


def test_flat_export_values_are_strings_in_dictionary_order(emu: RedcapEmulator) -> None:
    rows = export(emu, records="1")
    assert list(rows[0]) == [
        "record_id",
        "dob",
        "age",
        "weight",
        "sex",
        "smoker",
        "symptoms___1",
        "symptoms___2",
        "symptoms___3",
        "email",
        "enrolment_complete",
        "arm",
        "kit",
        "notes",
        "allocation_complete",
    ]
    assert (rows[0]["age"], rows[0]["symptoms___1"], rows[0]["enrolment_complete"]) == ("44", "1", "0")


@pytest.mark.parametrize(
    "pairs",
    [
        [("records[]", "2"), ("records[]", "1")],
        [("records[0]", "2"), ("records[1]", "1")],
        [("records", "2, 1")],
    ],
)
def test_array_parameter_forms(emu: RedcapEmulator, pairs: list[tuple[str, str]]) -> None:
    resp = call(
        emu, pairs=[*pairs, ("fields[]", "record_id"), ("fields[]", "sex")], content="record", format="json"
    )
    assert json.loads(resp.body) == [{"record_id": "1", "sex": "0"}, {"record_id": "2", "sex": "1"}]


def test_invalid_names_are_quoted(emu: RedcapEmulator) -> None:
    resp = call(emu, content="record", format="json", fields="sex,foo,bar")
    assert (resp.status, json.loads(resp.body)["error"]) == (
        400,
        "The following values in the parameter \"fields\" are not valid: 'foo', 'bar'",
    )
    resp = call(emu, content="record", format="csv", forms="nope")
    assert resp.body == "ERROR: The following values in the parameter \"forms\" are not valid: 'nope'"


def test_dag_user_sees_only_own_records_and_no_dag_column(emu: RedcapEmulator) -> None:
    rows = export(emu, NORTH, fields="record_id", exportDataAccessGroups="true")
    assert rows == [{"record_id": "1"}, {"record_id": "3"}]
    rows = export(emu, fields="record_id", exportDataAccessGroups="TRUE")
    assert [r["redcap_data_access_group"] for r in rows] == ["north", "south", "north"]


def test_filter_logic(emu: RedcapEmulator) -> None:
    assert [
        r["record_id"] for r in export(emu, fields="record_id", filterLogic="[sex] = '0' and [smoker] = ''")
    ] == ["3"]
    assert [
        r["record_id"] for r in export(emu, fields="record_id", filterLogic="[age] > 45 or [symptoms(1)] = 1")
    ] == ["1", "2"]
    assert [r["record_id"] for r in export(emu, fields="record_id", filterLogic='([sex] <> "0")')] == ["2"]
    resp = call(emu, content="record", format="json", filterLogic="[sex] = = 1")
    assert resp.status == 400


def test_label_export(emu: RedcapEmulator) -> None:
    row = export(emu, records="2", fields="sex,smoker,symptoms", rawOrLabel="label")[0]
    assert row == {
        "sex": "Male",
        "smoker": "No",
        "symptoms___1": "Unchecked",
        "symptoms___2": "Checked",
        "symptoms___3": "Checked",
    }


def test_eav_export(emu: RedcapEmulator) -> None:
    rows = export(emu, records="2", fields="record_id,sex,symptoms", type="eav")
    assert rows == [
        {"record": "2", "field_name": "record_id", "value": "2"},
        {"record": "2", "field_name": "sex", "value": "1"},
        {"record": "2", "field_name": "symptoms", "value": "2"},
        {"record": "2", "field_name": "symptoms", "value": "3"},
    ]


def test_longitudinal_export_events_and_repeat_columns(long_emu: RedcapEmulator) -> None:
    rows = export(long_emu, LONG_ADMIN, fields="pid,score", events="visit_arm_1")
    assert rows == [
        {
            "pid": "11",
            "redcap_event_name": "visit_arm_1",
            "redcap_repeat_instrument": "",
            "redcap_repeat_instance": "",
            "score": "7",
        }
    ]
    resp = call(long_emu, LONG_ADMIN, content="record", format="json", events="visit_arm_2")
    assert (
        json.loads(resp.body)["error"] == 'The following values in the parameter "events" are not valid: '
        "'visit_arm_2'"
    )
    rows = export(long_emu, LONG_ADMIN, fields="pid", filterLogic="[enrolment_arm_1][site] = '0'")
    assert [(r["pid"], r["redcap_event_name"]) for r in rows] == [("10", "enrolment_arm_1")]


def test_rights_and_tokens(emu: RedcapEmulator) -> None:
    resp = call(emu, NO_EXPORT, content="record", format="json")
    assert (resp.status, json.loads(resp.body)["error"]) == (
        403,
        (
            'The API request cannot complete because currently you have "No Access" data export rights. '
            "Higher level data export rights are required for this operation."
        ),
    )
    resp = call(emu, "bad-token", content="record", format="csv")
    assert (resp.status, resp.body) == (403, "ERROR: You do not have permissions to use the API")
    resp = call(emu, LAPSED, content="record")
    assert resp.body == (
        '<?xml version="1.0" encoding="UTF-8" ?><hash><error>You do not have API rights because '
        "your privileges have expired for this project as of 2024-01-31.</error></hash>"
    )
    assert resp.content_type == "text/xml; charset=utf-8"


def test_other_methods(emu: RedcapEmulator, long_emu: RedcapEmulator) -> None:
    assert call(emu, content="version", format="json").content_type == "text/csv; charset=utf-8"
    info = json.loads(call(emu, content="project", format="json").body)
    assert (info["project_id"], info["is_longitudinal"], info["randomization_enabled"]) == (901, 0, 1)
    resp = call(emu, content="event", format="json")
    assert (resp.status, resp.body) == (400, '{"error":"You cannot export events for classic projects"}')
    resp = call(emu, content="arm", format="csv")
    assert resp.body == "ERROR: You cannot export arms for classic projects"
    assert json.loads(call(emu, content="dag", format="json").body)[0] == {
        "data_access_group_name": "North Site",
        "unique_group_name": "north",
        "data_access_group_id": 301,
    }
    resp = call(emu, READER, content="dag", format="json")
    assert resp.status == 400
    events = json.loads(call(long_emu, LONG_ADMIN, content="event", format="json").body)
    assert [e["event_id"] for e in events] == [61001, 61007]
    meta = json.loads(call(emu, content="metadata", format="json", fields="age").body)
    assert (meta[0]["text_validation_type_or_show_slider_number"], meta[0]["field_type"]) == (
        "integer",
        "text",
    )
    names = json.loads(call(emu, content="exportFieldNames", format="json", field="symptoms").body)
    assert [n["export_field_name"] for n in names] == ["symptoms___1", "symptoms___2", "symptoms___3"]
    resp = call(emu, content="nonsense", format="json")
    assert json.loads(resp.body)["error"] == 'The value of the parameter "content" is not valid'


def test_project_xml_has_models_without_ids(emu: RedcapEmulator) -> None:
    body = call(emu, content="project_xml", returnMetadataOnly="true").body
    assert "<redcap:RandomizationGroup>" in body
    assert 'target_field="arm"' in body
    assert 'target_field="kit"' in body
    assert "7311" not in body
    assert "rid=" not in body
