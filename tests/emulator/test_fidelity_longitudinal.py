"""Longitudinal shapes from public projects: PyCap's one-arm doctest project with a repeating event,
and a two-arm project like REDCapR's ``longitudinal`` test project (arms "Drug A"/"Drug B").

The fixtures ``projects/fidelity_repeating_event`` and ``projects/fidelity_two_arms`` are our own.
Expected values come from the reference (§1.3, §1.8) and from PyCap's doctests, which were run against
a real server (``redcap/methods/records.py``: the one-arm project's rows carry
``'redcap_repeat_instrument': ''`` and ``'redcap_repeat_instance': 1`` and the event label ``Event 1``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.integration

PROJECTS = Path(__file__).parent / "projects"


def _serve(name: str) -> Iterator[Any]:
    from airflow_provider_redcap.emulator import RedcapEmulator

    with RedcapEmulator(PROJECTS / name).serve(host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
def repeating() -> Iterator[Any]:
    yield from _serve("fidelity_repeating_event")


@pytest.fixture
def two_arms() -> Iterator[Any]:
    yield from _serve("fidelity_two_arms")


def _post(server: Any, **params: Any) -> requests.Response:
    params.setdefault("format", "json")
    params["token"] = server.token
    return requests.post(server.url, data=params, timeout=30)


def _import(server: Any, rows: list[dict[str, Any]]) -> requests.Response:
    return _post(server, content="record", data=json.dumps(rows))


def test_repeating_event_rows_have_blank_instrument_and_integer_instance(repeating: Any) -> None:
    resp = _import(
        repeating,
        [
            {
                "record_id": "1",
                "redcap_event_name": "event_1_arm_1",
                "redcap_repeat_instance": 1,
                "seen": "1",
            },
            {
                "record_id": "1",
                "redcap_event_name": "event_1_arm_1",
                "redcap_repeat_instance": 2,
                "seen": "0",
            },
        ],
    )
    assert (resp.status_code, resp.text) == (200, '{"count": 1}')
    rows = _post(repeating, content="record", fields="record_id,seen").json()
    assert rows == [
        {
            "record_id": "1",
            "redcap_event_name": "event_1_arm_1",
            "redcap_repeat_instrument": "",
            "redcap_repeat_instance": 1,
            "seen": "1",
        },
        {
            "record_id": "1",
            "redcap_event_name": "event_1_arm_1",
            "redcap_repeat_instrument": "",
            "redcap_repeat_instance": 2,
            "seen": "0",
        },
    ]


def test_repeating_forms_events_export_names_the_whole_event(repeating: Any) -> None:
    resp = _post(repeating, content="repeatingFormsEvents")
    assert resp.status_code == 200
    assert resp.json() == [{"event_name": "event_1_arm_1", "form_name": "", "custom_form_label": ""}]


def test_one_arm_event_label_is_the_bare_event_name(repeating: Any) -> None:
    _import(
        repeating, [{"record_id": "1", "redcap_event_name": "event_1_arm_1", "redcap_repeat_instance": 1}]
    )
    rows = _post(repeating, content="record", fields="record_id", rawOrLabel="label").json()
    assert [r["redcap_event_name"] for r in rows] == ["Event 1"]


def test_two_arm_event_label_names_the_arm(two_arms: Any) -> None:
    _import(two_arms, [{"record_id": "1", "redcap_event_name": "enrollment_arm_2", "seen": "1"}])
    rows = _post(two_arms, content="record", fields="record_id", rawOrLabel="label").json()
    assert [r["redcap_event_name"] for r in rows] == ["Enrollment (Arm 2: Drug B)"]


def test_events_and_arms_exports_for_two_arms(two_arms: Any) -> None:
    assert _post(two_arms, content="arm").json() == [
        {"arm_num": 1, "name": "Drug A"},
        {"arm_num": 2, "name": "Drug B"},
    ]
    events = _post(two_arms, content="event", arms="2").json()
    assert events == [
        {
            "event_name": "Enrollment",
            "arm_num": 2,
            "unique_event_name": "enrollment_arm_2",
            "custom_event_label": "",
            "event_id": 62102,
        }
    ]


def test_label_csv_matches_pycaps_real_server_doctest(repeating: Any) -> None:
    """PyCap's doctest (``export_records(format_type="csv", fields=[...], raw_or_label="label")`` on a
    real one-arm project with a repeating event) shows exactly
    ``record_id,redcap_event_name,redcap_repeat_instrument,redcap_repeat_instance,field_1,checkbox_field___1,
    checkbox_field___2\\n1,"Event 1",,1,Yes,Unchecked,Checked\\n``: the label holding a space is quoted."""
    _import(
        repeating,
        [{"record_id": "1", "redcap_event_name": "event_1_arm_1", "redcap_repeat_instance": 1, "seen": "1",
          "symptoms___2": "1"}],
    )  # fmt: skip
    resp = _post(
        repeating, content="record", format="csv", fields="record_id,seen,symptoms", rawOrLabel="label"
    )
    assert resp.text == (
        "record_id,redcap_event_name,redcap_repeat_instrument,redcap_repeat_instance,seen,symptoms___1,"
        'symptoms___2\n1,"Event 1",,1,Yes,Unchecked,Checked\n'
    )


@pytest.fixture
def two_arms_randomized(tmp_path: Path) -> Iterator[Any]:
    """The two-arm fixture plus an unstratified open model whose target (a yesno) lives in arm 1."""
    import shutil

    from airflow_provider_redcap.emulator import RedcapEmulator

    folder = tmp_path / "two_arms_rand"
    shutil.copytree(PROJECTS / "fidelity_two_arms", folder)
    info = json.loads((folder / "project.json").read_text())
    info["users"][0]["rights"]["random_perform"] = 1
    info["randomizations"] = [
        {
            "randomization_id": 52711,
            "target_field": "seen",
            "target_event": "enrollment_arm_1",
            "strata": [],
            "group_by_dag": False,
            "allocation_tables": {"development": "alloc_dev.csv", "production": "alloc_prod.csv"},
        }
    ]
    (folder / "project.json").write_text(json.dumps(info))
    (folder / "alloc_dev.csv").write_text("redcap_randomization_group\n1\n0\n")
    (folder / "alloc_prod.csv").write_text("redcap_randomization_group\n0\n1\n")
    with RedcapEmulator(folder, db_path=tmp_path / "s.sqlite3").serve(host="127.0.0.1", port=0) as server:
        yield server


def test_randomize_needs_the_record_in_the_target_events_arm(two_arms_randomized: Any) -> None:
    """§1.1 item 3: the record must exist in the arm of the randomization's target event."""
    srv = two_arms_randomized
    assert _import(srv, [{"record_id": "1", "redcap_event_name": "enrollment_arm_2"}]).status_code == 200
    resp = _post(srv, content="record", action="randomize", record="1", randomization_id=52711)
    assert (resp.status_code, resp.text) == (200, "Cannot randomize. Record does not exist.")
    assert _import(srv, [{"record_id": "2", "redcap_event_name": "enrollment_arm_1"}]).status_code == 200
    resp = _post(srv, content="record", action="randomize", record="2", randomization_id=52711)
    assert json.loads(resp.text) == {
        "randomization_id": 52711,
        "record": "2",
        "target_field": "1",  # first row of alloc_dev.csv (project in development)
        "target_field_name": "seen",
    }
