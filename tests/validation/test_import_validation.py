"""Client-side import validation against the demo project's data dictionary."""

from __future__ import annotations

import pytest
from common.fake_redcap import read_csv

from airflow_provider_redcap.exceptions import RedcapImportValidationError
from airflow_provider_redcap.validation import (
    MESSAGE_PROBLEM_LIMIT,
    ImportSchema,
    find_problems,
    normalize_rows,
    parse_choices,
    validate_records,
)


@pytest.fixture(scope="module")
def schema() -> ImportSchema:
    return ImportSchema.from_metadata(
        read_csv("metadata.csv"),
        events=read_csv("events.csv"),
        form_event_mapping=read_csv("form_event_mapping.csv"),
        randomization_targets=["rand_arm", "kit_number"],
        dags=[{"unique_group_name": "boston"}, {"unique_group_name": "denver"}],
    )


def problems_of(rows: list[dict[str, str]], schema: ImportSchema, **kwargs: object) -> set[tuple]:
    _, problems = find_problems(rows, schema, **kwargs)  # type: ignore[arg-type]
    return {(p.record, p.field, p.event, p.value) for p in problems}


def test_schema_reads_the_dictionary(schema: ImportSchema) -> None:
    assert schema.record_id_field == "record_id"
    assert schema.longitudinal
    assert schema.events == {"screening_arm_1", "baseline_arm_1", "randomization_arm_1", "week_4_arm_1"}
    assert schema.form_events is not None
    assert schema.form_events["baseline_arm_1"] == {"demographics"}
    assert schema.fields["sex"].choices == {"0": "Female", "1": "Male"}
    assert schema.fields["eligible"].choices == {"1": "Yes", "0": "No"}


def test_parse_choices_keeps_commas_in_labels() -> None:
    assert parse_choices("1, Yes, definitely | 2 , No") == {"1": "Yes, definitely", "2": "No"}


def test_good_rows_pass_unchanged(schema: ImportSchema) -> None:
    rows = [
        {
            "record_id": "001017",
            "redcap_event_name": "screening_arm_1",
            "redcap_data_access_group": "boston",
            "screen_date": "2026-10-06",
            "age": "25",
            "eligible": "1",
            "screening_complete": "2",
        },
        {
            "record_id": "001017",
            "redcap_event_name": "baseline_arm_1",
            "sex": "0",  # "0" is a code, not a blank
            "age_group": "3",
            "weight_kg": "-7.25",
            "conditions___1": "1",
            "conditions___3": "0",
            "redcap_repeat_instrument": "",
            "redcap_repeat_instance": "",
        },
        {"record_id": "100000", "redcap_event_name": "screening_arm_1", "age": "", "screen_date": ""},
    ]
    assert validate_records(rows, schema) == rows


def test_all_problems_are_reported_together(schema: ImportSchema) -> None:
    rows = [
        {"record_id": "1", "redcap_event_name": "baseline_arm_1", "sex": "Female", "age_group": "4"},
        {"record_id": "2", "redcap_event_name": "screening_arm_1", "age": "forty",
         "screen_date": "06/10/2026"},
        {"record_id": "3", "redcap_event_name": "baseline_arm_1", "weight_kg": "7,5",
         "conditions___1": "yes"},
        {"record_id": "4", "redcap_event_name": "screening_arm_1", "sex": "1", "shoe_size": "42"},
        {"record_id": "5", "age": "30"},
        {"record_id": "6", "redcap_event_name": "week_12_arm_1", "age": "30"},
        {"record_id": "7", "redcap_event_name": "randomization_arm_1", "rand_arm": ""},
        {"record_id": "8", "redcap_event_name": "baseline_arm_1", "conditions": "1", "conditions___9": "1"},
        {"record_id": "9", "redcap_event_name": "screening_arm_1", "screen_date": "2026-02-30"},
        {"record_id": "10", "redcap_event_name": "screening_arm_1", "redcap_repeat_instrument": "screening",
         "redcap_repeat_instance": "1"},
        {"record_id": "11", "redcap_event_name": "screening_arm_1", "redcap_data_access_group": "paris"},
        {"record_id": "", "redcap_event_name": "screening_arm_1", "age": "30"},
        {"record_id": "1", "redcap_event_name": "baseline_arm_1", "sex": "1"},
    ]  # fmt: skip
    with pytest.raises(RedcapImportValidationError) as info:
        validate_records(rows, schema)
    found = {(p.record, p.field, p.event, p.value) for p in info.value.problems}
    assert found == {
        ("1", "sex", "baseline_arm_1", "Female"),
        ("1", "age_group", "baseline_arm_1", "4"),
        ("2", "age", "screening_arm_1", "forty"),
        ("2", "screen_date", "screening_arm_1", "06/10/2026"),
        ("3", "weight_kg", "baseline_arm_1", "7,5"),
        ("3", "conditions___1", "baseline_arm_1", "yes"),
        ("4", "sex", "screening_arm_1", "1"),  # demographics is not designated in screening
        ("4", "shoe_size", "screening_arm_1", "42"),
        ("5", "redcap_event_name", None, ""),
        ("6", "redcap_event_name", "week_12_arm_1", "week_12_arm_1"),
        ("7", "rand_arm", "randomization_arm_1", ""),
        ("8", "conditions", "baseline_arm_1", "1"),
        ("8", "conditions___9", "baseline_arm_1", "1"),
        ("9", "screen_date", "screening_arm_1", "2026-02-30"),
        ("10", "redcap_repeat_instrument", "screening_arm_1", "screening"),
        ("11", "redcap_data_access_group", "screening_arm_1", "paris"),
        ("", "record_id", "screening_arm_1", ""),
        ("1", "record_id", "baseline_arm_1", "1"),  # the same record and event twice
    }
    message = str(info.value)
    assert message.startswith("18 problem(s) in 13 row(s); nothing was sent to REDCap")
    assert "its code is '0'" in message  # the label hint for "Female"
    assert "randomization target" in message
    assert info.value.status_code is None
    assert len(info.value.errors) == 18


def test_labels_are_mapped_when_asked(schema: ImportSchema) -> None:
    rows = [
        {"record_id": "1", "redcap_event_name": "screening_arm_1", "eligible": "Yes",
         "screening_complete": "Complete"},
        {"record_id": "1", "redcap_event_name": "baseline_arm_1", "sex": "female", "age_group": "65+",
         "conditions___2": "Checked", "conditions___3": "Asthma", "conditions___1": "Unchecked"},
    ]  # fmt: skip
    checked = validate_records(rows, schema, map_labels=True)
    assert checked[0]["eligible"] == "1"
    assert checked[0]["screening_complete"] == "2"
    assert checked[1]["sex"] == "0"
    assert checked[1]["age_group"] == "3"
    assert (checked[1]["conditions___2"], checked[1]["conditions___3"], checked[1]["conditions___1"]) == (
        "1",
        "1",
        "0",
    )
    # The input rows are left as they were.
    assert rows[1]["sex"] == "female"


def test_unknown_label_is_refused_even_with_mapping(schema: ImportSchema) -> None:
    rows = [{"record_id": "1", "redcap_event_name": "baseline_arm_1", "sex": "Other"}]
    assert problems_of(rows, schema, map_labels=True) == {("1", "sex", "baseline_arm_1", "Other")}


@pytest.mark.parametrize(
    ("date_format", "good", "bad"),
    [
        ("YMD", "2026-10-06", "10/06/2026"),
        ("MDY", "10/06/2026", "13/06/2026"),
        ("DMY", "13/06/2026", "2026-06-13"),
    ],
)
def test_dates_follow_the_import_date_format(
    schema: ImportSchema, date_format: str, good: str, bad: str
) -> None:
    rows = [
        {"record_id": "1", "redcap_event_name": "screening_arm_1", "screen_date": good},
        {"record_id": "2", "redcap_event_name": "screening_arm_1", "screen_date": bad},
    ]
    assert problems_of(rows, schema, date_format=date_format) == {
        ("2", "screen_date", "screening_arm_1", bad)
    }


def test_classic_project_refuses_event_names() -> None:
    metadata = [
        {"field_name": "id", "form_name": "f", "field_type": "text"},
        {"field_name": "score", "form_name": "f", "field_type": "text",
         "text_validation_type_or_show_slider_number": "integer"},
    ]  # fmt: skip
    schema = ImportSchema.from_metadata(metadata)
    assert not schema.longitudinal
    rows = [{"id": "1", "score": "3"}, {"id": "2", "redcap_event_name": "event_1_arm_1", "score": "x"}]
    assert problems_of(rows, schema) == {
        ("2", "redcap_event_name", "event_1_arm_1", "event_1_arm_1"),
        ("2", "score", "event_1_arm_1", "x"),
    }


def test_repeating_instruments() -> None:
    metadata = [
        {"field_name": "id", "form_name": "base", "field_type": "text"},
        {"field_name": "med", "form_name": "meds", "field_type": "text"},
    ]
    schema = ImportSchema.from_metadata(metadata, repeating_forms_events=[{"form_name": "meds"}])
    rows = [
        {"id": "1", "redcap_repeat_instrument": "meds", "redcap_repeat_instance": "1", "med": "a"},
        {"id": "1", "redcap_repeat_instrument": "meds", "redcap_repeat_instance": "new", "med": "b"},
        {"id": "1", "redcap_repeat_instrument": "base", "redcap_repeat_instance": "1"},
        {"id": "2", "redcap_repeat_instrument": "meds", "redcap_repeat_instance": "0"},
        {"id": "3", "redcap_repeat_instrument": "labs", "redcap_repeat_instance": "1"},
    ]
    assert problems_of(rows, schema) == {
        ("1", "redcap_repeat_instrument", None, "base"),
        ("2", "redcap_repeat_instance", None, "0"),
        ("3", "redcap_repeat_instrument", None, "labs"),
    }


def test_message_lists_a_bounded_number_of_problems(schema: ImportSchema) -> None:
    rows = [{"record_id": str(n), "redcap_event_name": "screening_arm_1", "age": "x"} for n in range(250)]
    with pytest.raises(RedcapImportValidationError) as info:
        validate_records(rows, schema)
    assert len(info.value.problems) == 250
    assert f"... and {250 - MESSAGE_PROBLEM_LIMIT} more" in str(info.value)


def test_normalize_rows_turns_values_into_text() -> None:
    rows = normalize_rows([{"a": 1, "b": None, "c": True, "d": 1.5, "e": "001"}])
    assert rows == [{"a": "1", "b": "", "c": "1", "d": "1.5", "e": "001"}]
    with pytest.raises(ValueError, match="row 2"):
        normalize_rows([{"a": "1"}, {"a": [1, 2]}])


def test_enforced_ranges_are_checked_and_soft_ranges_are_not(schema: ImportSchema) -> None:
    # age has 18-99 with @FORCE-MINMAX; weight_kg has 30-250 without it (REDCap only warns).
    rows = [
        {"record_id": "1", "redcap_event_name": "screening_arm_1", "age": "17"},
        {"record_id": "2", "redcap_event_name": "screening_arm_1", "age": "100"},
        {"record_id": "3", "redcap_event_name": "screening_arm_1", "age": "18"},
        {"record_id": "4", "redcap_event_name": "baseline_arm_1", "weight_kg": "12.5"},
    ]
    assert problems_of(rows, schema) == {
        ("1", "age", "screening_arm_1", "17"),
        ("2", "age", "screening_arm_1", "100"),
    }


@pytest.mark.parametrize(
    ("record", "code_point"),
    [("\ufeff001002", "U+FEFF"), ("001\u200b002", "U+200B"), ("001002\r", "U+000D")],
)
def test_invisible_characters_in_record_ids_are_refused(
    schema: ImportSchema, record: str, code_point: str
) -> None:
    rows = [
        {"record_id": "001001", "redcap_event_name": "screening_arm_1", "age": "30"},
        {"record_id": record, "redcap_event_name": "screening_arm_1", "age": "30"},
    ]
    with pytest.raises(RedcapImportValidationError) as info:
        validate_records(rows, schema)
    assert [(p.record, p.field) for p in info.value.problems] == [(record, "record_id")]
    message = str(info.value.problems[0])
    assert "row 2" in message
    assert code_point in message


def test_checkbox_column_with_an_unknown_code_names_the_choices(schema: ImportSchema) -> None:
    # The demo's conditions field: "1, Hypertension | 2, Diabetes | 3, Asthma".
    rows = [{"record_id": "1", "redcap_event_name": "baseline_arm_1", "conditions___4": "1"}]
    _, problems = find_problems(rows, schema)
    assert [p.message for p in problems] == [
        "checkbox field 'conditions' has no choice '4' (choices: 1, 2, 3)"
    ]
