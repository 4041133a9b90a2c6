"""Project folder loading: REDCap's upload checks on allocation tables, both dictionary header styles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from airflow_provider_redcap.emulator import ProjectError, RedcapEmulator
from airflow_provider_redcap.emulator.project import load_project

CLASSIC = Path(__file__).parent / "projects" / "classic"
LONG = Path(__file__).parent / "projects" / "longitudinal"


def copy(tmp_path: Path, source: Path = CLASSIC) -> Path:
    target = tmp_path / source.name
    shutil.copytree(source, target)
    return target


def test_upload_headers_and_api_headers_give_the_same_rows() -> None:
    classic = load_project(CLASSIC)  # REDCap's upload headers
    long = load_project(LONG)  # API export column names
    assert classic.fields["age"].validation == "integer"  # "int" in the upload file
    assert classic.fields["weight"].validation == "number"  # "float" in the upload file
    assert classic.fields["dob"].row["identifier"] == "y"
    assert long.fields["site"].choices == {"0": "Zero site", "1": "One", "2": "Two"}
    assert [e.unique_name for e in long.events] == ["enrolment_arm_1", "visit_arm_1"]


def test_randomization_models_are_ordered_by_id_and_typed() -> None:
    models = load_project(CLASSIC).randomizations
    assert [(m.rid, m.blinded, m.group_by_dag) for m in models] == [(7311, False, False), (7355, True, True)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "redcap_randomization_group,sex\n1,0\n",
            "The header variables in the first row of your CSV file are not "
            'correct. The first row should be the following: "redcap_randomization_group,sex,smoker"',
        ),
        (
            "redcap_randomization_group,sex,smoker\n3,0,0\n",
            '"3" is not a valid categorical option for the field "arm"',
        ),
        ("redcap_randomization_group,sex,smoker\n1,,0\n", 'Empty values detected in column "sex"'),
        ("", "Uploaded file was empty."),
    ],
)
def test_allocation_table_checks(tmp_path: Path, content: str, message: str) -> None:
    folder = copy(tmp_path)
    (folder / "alloc_open_dev.csv").write_text(content)
    with pytest.raises(ProjectError) as err:
        load_project(folder)
    assert message in str(err.value)


def test_dag_column_must_hold_numeric_known_ids(tmp_path: Path) -> None:
    folder = copy(tmp_path)
    (folder / "alloc_blind_dev.csv").write_text(
        "redcap_randomization_number,sex,redcap_data_access_group\nK-1,0,north\n"
    )
    with pytest.raises(ProjectError, match="not a valid data access group id"):
        load_project(folder)


def test_bad_tokens_and_unknown_fields_are_refused(tmp_path: Path) -> None:
    folder = copy(tmp_path)
    info = json.loads((folder / "project.json").read_text())
    info["users"][0]["token"] = "short"
    (folder / "project.json").write_text(json.dumps(info))
    with pytest.raises(ProjectError, match="32-character"):
        load_project(folder)
    info["users"][0]["token"] = "A" * 32
    info["randomizations"][0]["target_field"] = "nope"
    (folder / "project.json").write_text(json.dumps(info))
    with pytest.raises(ProjectError, match="unknown target field"):
        load_project(folder)


def test_state_survives_a_restart_and_reset_restores_the_seed(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    emu = RedcapEmulator(CLASSIC, db_path=db)
    emu.api.handle(
        [
            ("token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA01"),
            ("content", "record"),
            ("action", "randomize"),
            ("record", "1"),
            ("randomization_id", "7311"),
        ]
    )
    emu.close()
    again = RedcapEmulator(CLASSIC, db_path=db)
    assert [a["is_used_by"] for a in again.admin.allocations(7311) if a["is_used_by"]] == ["1"]
    again.admin.reset()
    assert not [a for a in again.admin.allocations() if a["is_used_by"]]
    assert [r["record_id"] for r in again.admin.records()] == ["1", "2", "3"]
    again.close()


@pytest.mark.parametrize(
    ("edit", "status", "message"),
    [
        ({"api_enabled": False}, 400, "The REDCap API is not enabled."),
        ({"deleted": True}, 400, "The REDCap project no longer exists because it was deleted."),
        ({"offline": True}, 400, "This project is currently OFFLINE and is not accessible to normal users."),
    ],
)
def test_project_state_flags(tmp_path: Path, edit: dict[str, object], status: int, message: str) -> None:
    folder = copy(tmp_path)
    info = json.loads((folder / "project.json").read_text())
    (folder / "project.json").write_text(json.dumps({**info, **edit}))
    emu = RedcapEmulator(folder, db_path=tmp_path / "s.db")
    resp = emu.api.handle(
        [("token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA01"), ("content", "version"), ("format", "json")]
    )
    assert (resp.response.status, json.loads(resp.response.body)) == (status, {"error": message})
    emu.close()


def test_suspended_user_is_an_unknown_token(tmp_path: Path) -> None:
    folder = copy(tmp_path)
    info = json.loads((folder / "project.json").read_text())
    info["users"][0]["suspended"] = True
    (folder / "project.json").write_text(json.dumps(info))
    emu = RedcapEmulator(folder, db_path=tmp_path / "s.db")
    resp = emu.api.handle(
        [("token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA01"), ("content", "version"), ("format", "csv")]
    )
    assert (resp.response.status, resp.response.body) == (
        403,
        "ERROR: You do not have permissions to use the API",
    )
    assert emu.admin.log()[-1]["action"] == "Failed API request (invalid token)"
    emu.close()


def test_state_of_an_edited_folder_is_not_reused(tmp_path: Path) -> None:
    folder = copy(tmp_path)
    db = tmp_path / "state.db"
    emu = RedcapEmulator(folder, db_path=db)
    emu.api.handle(
        [
            ("token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA01"),
            ("content", "record"),
            ("action", "randomize"),
            ("record", "1"),
            ("randomization_id", "7311"),
        ]
    )
    emu.close()
    with (folder / "alloc_open_dev.csv").open("a") as fh:
        fh.write("2,D-06,1,1\n")
    again = RedcapEmulator(folder, db_path=db)
    assert not [a for a in again.admin.allocations() if a["is_used_by"]]
    rows = sum(
        len((folder / name).read_text().splitlines()) - 1
        for name in ("alloc_open_dev.csv", "alloc_open_prod.csv")
    )
    assert len(again.admin.allocations(7311)) == rows
    again.close()
