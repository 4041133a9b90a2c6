"""Fidelity of the emulator on data dictionaries shaped like real public ones (REDCapR's test projects).

The fixture projects under ``projects/fidelity_*`` are our own minimal dictionaries reproducing the
features found in public dictionaries (upload headers, calc/descriptive/slider/sql/file fields,
matrix groups, checkbox codes with ``-``/``.``/upper case, validation types, UTF-8 labels, non-numeric
record ids). Expected values come from the reference (§1.2, §1.3, §1.4, §1.7, §1.11) or, where noted,
from data a real server produced in a public peer's fixtures.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.integration

PROJECTS = Path(__file__).parent / "projects"
FORMAT_MESSAGE = (
    "The value you provided could not be validated because it does not follow the expected format. "
    "Please try again."
)
METADATA_COLUMNS = [
    "field_name", "form_name", "section_header", "field_type", "field_label",
    "select_choices_or_calculations", "field_note", "text_validation_type_or_show_slider_number",
    "text_validation_min", "text_validation_max", "identifier", "branching_logic", "required_field",
    "custom_alignment", "question_number", "matrix_group_name", "matrix_ranking", "field_annotation",
]  # fmt: skip


def _serve(name: str) -> Iterator[Any]:
    from airflow_provider_redcap.emulator import RedcapEmulator

    with RedcapEmulator(PROJECTS / name).serve(host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture(scope="module")
def types_server() -> Iterator[Any]:
    yield from _serve("fidelity_fieldtypes")


@pytest.fixture
def types(types_server: Any) -> Any:
    types_server.admin.reset()
    return types_server


@pytest.fixture(scope="module")
def cyrillic() -> Iterator[Any]:
    yield from _serve("fidelity_cyrillic")


def _post(server: Any, **params: Any) -> requests.Response:
    params.setdefault("format", "json")
    params["token"] = server.token
    return requests.post(server.url, data=params, timeout=30)


def _import(server: Any, row: dict[str, str], **params: Any) -> requests.Response:
    return _post(server, content="record", data=json.dumps([{"record_id": "1", **row}]), **params)


# --- metadata (§1.4) -----------------------------------------------------------------------------


def test_upload_header_dictionary_exports_api_columns_in_order(types: Any) -> None:
    resp = _post(types, content="metadata", format="csv")
    assert resp.status_code == 200
    header = next(csv.reader(io.StringIO(resp.text)))
    assert header == METADATA_COLUMNS


def test_calc_descriptive_slider_and_matrix_fields_survive_the_round_trip(types: Any) -> None:
    rows = {r["field_name"]: r for r in _post(types, content="metadata").json()}
    assert rows["total"]["field_type"] == "calc"
    assert rows["total"]["select_choices_or_calculations"] == "[score_a]+[score_b]"
    assert rows["intro"]["field_type"] == "descriptive"
    assert rows["intro"]["section_header"] == "Field types"
    assert rows["pain"]["field_type"] == "slider"
    assert rows["pain"]["select_choices_or_calculations"] == "None | Some | Worst"
    assert (
        rows["agree"]["select_choices_or_calculations"] == "1, Yes, definitely | 2, No, not at all | 3, Maybe"
    )
    assert [rows["mood_1"]["matrix_group_name"], rows["mood_2"]["matrix_group_name"]] == ["mood", "mood"]
    assert "intake_complete" not in rows


def test_sql_field_is_exported_as_dropdown(types: Any) -> None:
    """§1.4: "SQL fields become dropdowns" in Export Metadata."""
    rows = {r["field_name"]: r for r in _post(types, content="metadata").json()}
    assert rows["lookup"]["field_type"] == "dropdown"


# --- export field names (§1.7) -------------------------------------------------------------------


def test_field_names_expand_odd_checkbox_codes_and_skip_calc_file_descriptive(types: Any) -> None:
    rows = _post(types, content="exportFieldNames").json()
    names = [r["export_field_name"] for r in rows]
    assert [n for n in names if n.startswith("flags")] == ["flags___a_1", "flags___b_2", "flags___c"]
    assert [r["choice_value"] for r in rows if r["original_field_name"] == "flags"] == ["A-1", "b.2", "C"]
    assert not {"total", "consent_file", "intro"} & set(names)


# --- import validation (§1.2) --------------------------------------------------------------------


def test_checkbox_with_odd_codes_imports_under_export_names(types: Any) -> None:
    resp = _import(types, {"flags___a_1": "1", "flags___b_2": "0", "flags___c": "1"})
    assert (resp.status_code, resp.text) == (200, '{"count": 1}')
    row = _post(types, content="record", fields="record_id,flags").json()[0]
    assert (row["flags___a_1"], row["flags___b_2"], row["flags___c"]) == ("1", "0", "1")


def test_label_headers_name_the_choice_label_for_odd_checkbox_codes(types: Any) -> None:
    """Label headers are ``<field label> (choice=<choice label>)`` for every checkbox option."""
    _import(types, {"flags___a_1": "1"})
    resp = _post(types, content="record", format="csv", fields="record_id,flags", rawOrLabelHeaders="label")
    header = next(csv.reader(io.StringIO(resp.text)))
    assert header[1:] == ["Flags (choice=First)", "Flags (choice=Second)", "Flags (choice=Third)"]


def test_choice_labels_with_commas_export_whole(types: Any) -> None:
    _import(types, {"agree": "1"})
    row = _post(types, content="record", fields="record_id,agree", rawOrLabel="label").json()[0]
    assert row["agree"] == "Yes, definitely"


def test_number_comma_decimal_accepts_a_comma_value(types: Any) -> None:
    """REDCapR's decimal-comma-and-dot project holds ``"1,54"`` in a ``number_comma_decimal`` field, as a
    real server stored and exported it; a comma value must import and export unchanged."""
    resp = _import(types, {"height_comma": "1,54"})
    assert (resp.status_code, resp.text) == (200, '{"count": 1}')
    row = _post(types, content="record", fields="record_id,height_comma").json()[0]
    assert row["height_comma"] == "1,54"


def test_mrn_10d_refuses_a_short_value(types: Any) -> None:
    """§1.2: every other regex validation fails with the format message; mrn_10d is ten digits."""
    resp = _import(types, {"mrn": "123"})
    assert resp.status_code == 400
    assert json.loads(resp.text) == {"error": f'"1","mrn","123","{FORMAT_MESSAGE}"'}


def test_datetime_seconds_needs_seconds(types: Any) -> None:
    resp = _import(types, {"stamp": "2024-01-31 13:45"})
    assert resp.status_code == 400
    assert "Invalid date format." in json.loads(resp.text)["error"]
    assert _import(types, {"stamp": "2024-01-31 13:45:59"}).status_code == 200


def test_date_dmy_field_takes_ymd_by_default_and_dmy_with_date_format(types: Any) -> None:
    assert _import(types, {"visit_dmy": "2024-01-31"}).status_code == 200
    assert _import(types, {"visit_dmy": "31/01/2024"}, dateFormat="DMY").status_code == 200
    row = _post(types, content="record", fields="record_id,visit_dmy").json()[0]
    assert row["visit_dmy"] == "2024-01-31"


def test_soft_integer_range_is_only_a_warning(types: Any) -> None:
    assert _import(types, {"score_a": "11"}).status_code == 200


def test_number_1dp_needs_exactly_one_decimal(types: Any) -> None:
    resp = _import(types, {"score_b": "1.55"})
    assert resp.status_code == 400
    assert json.loads(resp.text) == {"error": f'"1","score_b","1.55","{FORMAT_MESSAGE}"'}


# --- export (§1.3) -------------------------------------------------------------------------------


def test_only_descriptive_fields_requested_is_the_no_data_fields_error(types: Any) -> None:
    """§1.3: only descriptive fields → 400 'The variables provided in the parameter "fields" are not
    valid fields that contain data. …'."""
    resp = _post(types, content="record", fields="intro")
    assert resp.status_code == 400
    assert json.loads(resp.text)["error"].startswith(
        'The variables provided in the parameter "fields" are not valid fields that contain data.'
    )


def test_eav_checkbox_rows_carry_the_raw_code(types: Any) -> None:
    _import(types, {"flags___a_1": "1", "flags___b_2": "1"})
    rows = _post(types, content="record", type="eav").json()
    assert [r["value"] for r in rows if r["field_name"] == "flags"] == ["A-1", "b.2"]


# --- UTF-8 labels, non-numeric record ids ---------------------------------------------------------


def test_cyrillic_labels_round_trip_in_metadata_and_label_exports(cyrillic: Any) -> None:
    rows = _post(cyrillic, content="metadata").json()
    assert [r["field_label"] for r in rows] == ["Участник", "Фамилия", "Пол"]
    assert rows[2]["select_choices_or_calculations"] == "0, Женский | 1, Мужской"
    labels = _post(cyrillic, content="record", rawOrLabel="label").json()
    assert [(r["participant"], r["familiya"], r["pol"]) for r in labels] == [
        ("msk-001", "Иванова", "Женский"),
        ("spb-002", "Петров", "Мужской"),
    ]
    xml = _post(cyrillic, content="record", format="xml", records="spb-002").content.decode("utf-8")
    assert "<familiya><![CDATA[Петров]]></familiya>" in xml


def test_cyrillic_filter_logic_and_non_numeric_ids(cyrillic: Any) -> None:
    rows = _post(cyrillic, content="record", filterLogic="[familiya] = 'Петров'").json()
    assert [r["participant"] for r in rows] == ["spb-002"]
    # §1.11: the maximum *numeric* record id + 1; no numeric ids → 1
    resp = _post(cyrillic, content="generateNextRecordName")
    assert (resp.status_code, resp.text) == (200, "1")


def test_decimal_character_forces_the_export_decimal_separator(types: Any) -> None:
    """§1.3 lists ``decimalCharacter`` (PyCap sends it as ``decimal_character``); REDCap's API help
    (``exp_records``) defines it as forcing ``,`` or ``.`` on number-validated and calc values."""
    assert _import(types, {"score_b": "2.5", "height_comma": "1,5"}).status_code == 200
    comma = _post(types, content="record", fields="score_b,height_comma", decimalCharacter=",").json()
    dot = _post(types, content="record", fields="score_b,height_comma", decimalCharacter=".").json()
    assert comma == [{"score_b": "2,5", "height_comma": "1,5"}]
    assert dot == [{"score_b": "2.5", "height_comma": "1.5"}]


def test_repeating_export_on_a_project_without_repeats_uses_redcaps_wording(types: Any) -> None:
    """REDCapR's live-server test ``test-repeating-read.R`` ("no repeating") expects exactly
    "You cannot export repeating instruments and events because the project does not contain any
    repeating instruments and events" ("and", not "or")."""
    resp = _post(types, content="repeatingFormsEvents")
    assert resp.status_code == 400
    assert json.loads(resp.text) == {
        "error": "You cannot export repeating instruments and events because the project does not contain "
        "any repeating instruments and events"
    }


def test_export_checkbox_label_gives_the_choice_label_or_blank(types: Any) -> None:
    """§1.0 lists ``exportCheckboxLabel`` (1 or case-insensitive true); REDCap's API help (``exp_records``)
    defines it for rawOrLabel=label flat exports: a checked option exports its choice label, an unchecked
    one exports blank (instead of Checked/Unchecked). PyCap sends it as ``export_checkbox_labels``."""
    _import(types, {"flags___a_1": "1", "flags___b_2": "0", "flags___c": "1"})
    row = _post(
        types, content="record", fields="record_id,flags", rawOrLabel="label", exportCheckboxLabel="TRUE"
    ).json()[0]
    assert (row["flags___a_1"], row["flags___b_2"], row["flags___c"]) == ("First", "", "Third")
