"""The project-folder format (issue 4): data dictionary in REDCap's upload headers, repeating
instruments, and allocation tables validated on load the way REDCap validates an upload
(reference §1.2, §1.3, §2 "Allocation-table CSV format")."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from redcap_conformance import Api, DemoFacts, make_variant

pytestmark = pytest.mark.integration

UPLOAD_HEADERS = [
    "Variable / Field Name",
    "Form Name",
    "Section Header",
    "Field Type",
    "Field Label",
    "Choices, Calculations, OR Slider Labels",
    "Field Note",
    "Text Validation Type OR Show Slider Number",
    "Text Validation Min",
    "Text Validation Max",
    "Identifier?",
    "Branching Logic (Show field only if...)",
    "Required Field?",
    "Custom Alignment",
    "Question Number (surveys only)",
    "Matrix Group Name",
    "Matrix Ranking?",
    "Field Annotation",
]


def _upload_headers(_project: dict[str, Any], path: Path) -> None:
    with (path / "metadata.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(UPLOAD_HEADERS)
    writer.writerows(rows[1:])
    (path / "metadata.csv").write_text(out.getvalue())


def test_data_dictionary_with_upload_headers(serve_variant: Any, demo: DemoFacts) -> None:
    server = serve_variant(_upload_headers)
    assert Api(server.url, server.token).call("metadata").json() == demo.metadata


def _repeating_follow_up(_project: dict[str, Any], path: Path) -> None:
    (path / "repeating_forms_events.csv").write_text(
        "event_name,form_name,custom_form_label\nweek_4_arm_1,follow_up,\n"
    )


def test_repeating_instrument(serve_variant: Any) -> None:
    server = serve_variant(_repeating_follow_up)
    api = Api(server.url, server.token)
    assert api.call("project").json()["has_repeating_instruments_or_events"] == 1
    assert api.call("repeatingFormsEvents").json() == [
        {"event_name": "week_4_arm_1", "form_name": "follow_up", "custom_form_label": ""}
    ]
    visit = {
        "record_id": "001001",
        "redcap_event_name": "week_4_arm_1",
        "redcap_repeat_instrument": "follow_up",
    }
    api.import_ok([{**visit, "redcap_repeat_instance": "1", "sbp": "120"}])
    api.import_ok([{**visit, "redcap_repeat_instance": "new", "sbp": "135"}])
    # Whether a blank base row accompanies repeating-only events is not pinned down here.
    rows = [
        r
        for r in api.export(records="001001", fields="record_id,sbp", events="week_4_arm_1")
        if r["redcap_repeat_instrument"]
    ]
    assert [list(r)[:4] for r in rows] == [
        ["record_id", "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance"]
    ] * 2
    assert [(r["redcap_repeat_instrument"], r["redcap_repeat_instance"], r["sbp"]) for r in rows] == [
        ("follow_up", 1, "120"),
        ("follow_up", 2, "135"),
    ]


@pytest.mark.parametrize(("delimiter", "sep"), [(";", ";"), ("tab", "\t"), ("|", "|"), ("^", "^")])
def test_csv_delimiters_on_import(rc: Api, delimiter: str, sep: str) -> None:
    data = (
        sep.join(["record_id", "redcap_event_name", "age"])
        + "\n"
        + sep.join(["001001", "screening_arm_1", "40"])
    )
    resp = rc.call("record", format="csv", type="flat", csvDelimiter=delimiter, data=data + "\n")
    assert (resp.status_code, resp.text) == (200, "1")
    assert rc.export(records="001001", fields="record_id,age", events="screening_arm_1")[0]["age"] == "40"


# --- allocation tables are checked on load --------------------------------------------------


def _rewrite_table(path: Path, name: str, edit: Any) -> None:
    with (path / name).open(newline="") as fh:
        rows = list(csv.reader(fh))
    rows = edit(rows)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    (path / name).write_text(out.getvalue())


def _load(tmp_path: Path, edit: Any) -> None:
    from airflow_provider_redcap.emulator import RedcapEmulator

    path = make_variant(tmp_path, edit)
    emu = RedcapEmulator(path, db_path=path / "state.sqlite3")
    with emu.serve(host="127.0.0.1", port=0):
        pass


def _set_cell(row: int, col: int, value: str) -> Any:
    def edit(rows: list[list[str]]) -> list[list[str]]:
        rows[row][col] = value
        return rows

    return edit


@pytest.mark.parametrize(
    ("table", "edit", "message"),
    [
        (
            "allocation_48213_production.csv",
            _set_cell(1, 0, "9"),
            '"9" is not a valid categorical option for the field "rand_arm"',
        ),
        (
            "allocation_48213_production.csv",
            _set_cell(1, 2, "2"),
            '"2" is not a valid categorical option for the field "sex"',
        ),
        ("allocation_48297_production.csv", _set_cell(1, 0, ""), 'Empty values detected in column "'),
        (
            "allocation_48213_production.csv",
            _set_cell(0, 2, "gender"),
            "The header variables in the first row of your CSV file are not correct. "
            'The first row should be the following: "',
        ),
        ("allocation_48213_production.csv", lambda rows: [], "Uploaded file was empty."),
    ],
)
def test_invalid_allocation_tables_are_refused(tmp_path: Path, table: str, edit: Any, message: str) -> None:
    from airflow_provider_redcap.emulator import ProjectError

    def change(_project: dict[str, Any], path: Path) -> None:
        _rewrite_table(path, table, edit)

    with pytest.raises(ProjectError) as info:
        _load(tmp_path, change)
    assert message in str(info.value)


def test_identical_development_and_production_tables_are_refused(tmp_path: Path) -> None:
    from airflow_provider_redcap.emulator import ProjectError

    def same(project: dict[str, Any], _path: Path) -> None:
        tables = project["randomizations"][0]["allocation_tables"]
        tables["development"] = tables["production"]

    with pytest.raises(ProjectError):
        _load(tmp_path, same)


def test_the_demo_folder_loads_as_its_files_describe_it(tmp_path: Path, demo: DemoFacts) -> None:
    from airflow_provider_redcap.emulator import RedcapEmulator

    path = make_variant(tmp_path, lambda _project, _path: None)
    emu = RedcapEmulator(path, db_path=path / "state.sqlite3")
    with emu.serve(host="127.0.0.1", port=0) as server:
        api = Api(server.url, server.token)
        info = api.call("project").json()
        events = api.call("event").json()
        dags = api.call("dag").json()
        allocations = {
            m["randomization_id"]: emu.admin.allocations(m["randomization_id"])
            for m in demo.project["randomizations"]
        }

    assert (info["project_id"], info["project_title"]) == (
        demo.project["project_id"],
        demo.project["project_title"],
    )
    assert [e["unique_event_name"] for e in events] == list(demo.event_ids)
    assert {d["unique_group_name"]: str(d["data_access_group_id"]) for d in dags} == demo.dag_ids
    for model in demo.project["randomizations"]:
        for status, code in (("development", 0), ("production", 1)):
            with (demo.path / model["allocation_tables"][status]).open(newline="") as fh:
                rows_in_file = sum(1 for _ in csv.DictReader(fh))
            loaded = [a for a in allocations[model["randomization_id"]] if a["project_status"] == code]
            assert len(loaded) == rows_in_file
            assert not any(a["is_used_by"] for a in loaded)
