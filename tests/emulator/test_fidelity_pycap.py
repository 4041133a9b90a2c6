"""Drive the emulator with PyCap, a public REDCap client none of us wrote.

PyCap is not a dependency of this package: the module is skipped when it is not installed
(``pip install PyCap``; written against PyCap 2.7.0). Expected values come from the reference and
from what PyCap needs to parse the answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

redcap = pytest.importorskip("redcap")

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served() -> Iterator[Any]:
    from airflow_provider_redcap.emulator import RedcapEmulator, demo_project_dir

    with RedcapEmulator(demo_project_dir()).serve(host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
def server(served: Any) -> Any:
    served.admin.reset()
    return served


@pytest.fixture
def proj(server: Any) -> Any:
    return redcap.Project(server.url, server.token)


BASELINE = [
    {
        "record_id": "1",
        "redcap_event_name": "baseline_arm_1",
        "sex": "0",
        "age_group": "1",
        "conditions___2": "1",
    },
    {"record_id": "2", "redcap_event_name": "baseline_arm_1", "sex": "1", "age_group": "3"},
    {"record_id": "2", "redcap_event_name": "screening_arm_1", "screen_date": "2024-01-05", "age": "70"},
]


def test_pycap_reads_the_project_structure(proj: Any) -> None:
    info = proj.export_project_info()
    assert (info["project_id"], info["in_production"], info["is_longitudinal"]) == (1742, 1, 1)
    assert str(proj.export_version()) == "15.7.6"
    assert proj.def_field == "record_id"
    assert proj.is_longitudinal
    assert [a["arm_num"] for a in proj.export_arms()] == [1]
    events = proj.export_events()
    assert [(e["unique_event_name"], e["event_id"]) for e in events] == [
        ("screening_arm_1", 4101),
        ("baseline_arm_1", 4102),
        ("randomization_arm_1", 4103),
        ("week_4_arm_1", 4104),
    ]
    assert list(events[0]) == ["event_name", "arm_num", "unique_event_name", "custom_event_label", "event_id"]
    assert {m["form"] for m in proj.export_instrument_event_mappings()} >= {"screening", "randomization"}
    assert [d["unique_group_name"] for d in proj.export_dags()] == ["boston", "denver", "seattle"]
    names = proj.export_field_names(field="conditions")
    assert [n["export_field_name"] for n in names] == ["conditions___1", "conditions___2", "conditions___3"]
    csv_text = proj.export_metadata(format_type="csv")
    assert csv_text.startswith("field_name,form_name,section_header,field_type,field_label,")


def test_pycap_import_return_contents(proj: Any) -> None:
    assert proj.import_records(BASELINE) == {"count": 2}
    assert proj.import_records(BASELINE, return_content="ids") == ["1", "2"]
    # PyCap asks for returnFormat=json; a real server then answers JSON even for CSV data.
    csv_data = "record_id,redcap_event_name,sex\n3,baseline_arm_1,1\n"
    assert proj.import_records(csv_data, import_format="csv") == {"count": 1}


def test_pycap_import_errors_raise_with_redcaps_lines(proj: Any) -> None:
    with pytest.raises(redcap.RedcapError) as err:
        proj.import_records([{"record_id": "9", "redcap_event_name": "screening_arm_1", "age": "abc"}])
    assert '"9","age","abc","The value of age must be an integer."' in str(err.value)
    with pytest.raises(redcap.RedcapError) as err:
        proj.import_records([{"record_id": "9", "redcap_event_name": "nope_arm_1", "age": "40"}])
    assert "The following values of redcap_event_name are invalid: nope_arm_1" in str(err.value)


def test_pycap_export_records_shapes(proj: Any) -> None:
    proj.import_records(BASELINE)
    rows = proj.export_records(records=["2"], fields=["age", "sex"])
    # PyCap backfills the record id; values are strings
    assert rows == [
        {"record_id": "2", "redcap_event_name": "screening_arm_1", "age": "70", "sex": ""},
        {"record_id": "2", "redcap_event_name": "baseline_arm_1", "age": "", "sex": "1"},
    ]
    checked = proj.export_records(records=["1"], fields=["conditions"], events=["baseline_arm_1"])
    assert [r["conditions___2"] for r in checked] == ["1"]
    assert [r["record_id"] for r in proj.export_records(filter_logic="[sex] = '1'")] == ["2"]
    eav = proj.export_records(record_type="eav", records=["2"], fields=["age"])
    assert {"record": "2", "redcap_event_name": "screening_arm_1", "field_name": "age", "value": "70"} in eav


def test_pycap_delete_and_next_record_name(proj: Any, server: Any) -> None:
    proj.import_records(BASELINE)
    assert proj.generate_next_record_name() == "3"
    assert proj.delete_records(["2"]) == 1
    assert proj.generate_next_record_name() == "2"
    boston = redcap.Project(server.url, server.tokens["site_boston"])
    assert boston.generate_next_record_name() == "2201-1"


def test_pycap_auto_ids(proj: Any) -> None:
    proj.import_records(BASELINE)
    out = proj.import_records(
        [{"record_id": "77", "redcap_event_name": "baseline_arm_1", "sex": "1"}],
        force_auto_number=True,
        return_content="auto_ids",
    )
    assert out == ["3,77"]


def test_pycap_logging_sees_the_import(proj: Any) -> None:
    proj.import_records(BASELINE[:1])
    rows = proj.export_logging(log_type="record")
    assert [(r["action"], r["record"]) for r in rows] == [("Create record (API)", "1")]
    assert list(rows[0]) == ["timestamp", "username", "action", "details", "record"]


def test_label_event_name_has_no_arm_suffix_in_a_single_arm_project(proj: Any) -> None:
    """PyCap's doctest, run against a real server, shows ``"Event 1"`` as the label of ``event_1_arm_1``
    in a one-arm project (``redcap/methods/records.py``, export_records csv/label example); REDCap adds
    ``(Arm n: name)`` only when the project has several arms."""
    proj.import_records(BASELINE[:1])
    rows = proj.export_records(records=["1"], fields=["sex"], raw_or_label="label")
    assert [r["redcap_event_name"] for r in rows] == ["Baseline"]


@pytest.mark.parametrize(
    ("return_format_type", "expected"),
    [
        ("json", {"count": 2}),
        ("csv", "2"),
        ("xml", '<?xml version="1.0" encoding="UTF-8" ?><count>2</count>'),
    ],
)
def test_import_success_body_follows_return_format_not_format(
    proj: Any, return_format_type: str, expected: Any
) -> None:
    """PyCap's integration tests against a real server (``tests/integration/test_simple_project.py``)
    import CSV data (``import_format="df"`` posts ``format=csv``) and get ``{"count": 3}`` with the
    default ``returnFormat=json`` (``test_import_df_no_index``) and
    ``<?xml version="1.0" encoding="UTF-8" ?><count>3</count>`` with ``returnFormat=xml``
    (``test_import_and_delete_records_non_json``): the success body follows ``returnFormat``."""
    data = "record_id,redcap_event_name,sex\n11,baseline_arm_1,1\n12,baseline_arm_1,0\n"
    out = proj.import_records(data, import_format="csv", return_format_type=return_format_type)
    assert out == expected


def test_delete_count_is_plain_whatever_the_return_format(proj: Any) -> None:
    """Same PyCap real-server test: ``delete_records(..., return_format_type="xml")`` answers ``"3"``."""
    proj.import_records(BASELINE)
    assert proj.delete_records(["1", "2"], return_format_type="xml") == "2"
