"""Randomize Record against the engine: REDCap's check order, exact answers, allocation choice."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from airflow_provider_redcap.emulator import RedcapEmulator
from airflow_provider_redcap.emulator.formats import ApiResponse

CLASSIC = Path(__file__).parent / "projects" / "classic"
LONG = Path(__file__).parent / "projects" / "longitudinal"
ADMIN = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA01"
NORTH = "NNNNNNNNNNNNNNNNNNNNNNNNNNNNNN02"
READER = "RRRRRRRRRRRRRRRRRRRRRRRRRRRRRR03"
RANDOMIZER = "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ04"
JSON_TYPE = "application/json; charset=utf-8"


def call(emu: RedcapEmulator, token: str = ADMIN, **params: str) -> ApiResponse:
    return emu.api.handle([("token", token), *params.items()]).response


def randomize(emu: RedcapEmulator, record: str, rid: str, token: str = ADMIN, **extra: str) -> ApiResponse:
    return call(
        emu,
        token,
        content="record",
        action="randomize",
        record=record,
        randomization_id=rid,
        format=extra.pop("format", "json"),
        **extra,
    )


def import_json(emu: RedcapEmulator, rows: list[dict[str, str]], token: str = ADMIN) -> ApiResponse:
    return call(emu, token, content="record", format="json", data=json.dumps(rows))


def table(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_open_model_takes_first_row_of_the_stratum_in_upload_order(emu: RedcapEmulator) -> None:
    # Record 1 is female (0), non-smoker (0): the first dev row with sex=0, smoker=0.
    expected = next(
        r for r in table(CLASSIC / "alloc_open_dev.csv") if r["sex"] == "0" and r["smoker"] == "0"
    )
    resp = randomize(emu, "1", "7311", returnAlt="true")
    assert (resp.status, resp.content_type) == (200, JSON_TYPE)
    assert resp.body == json.dumps(
        {
            "randomization_id": 7311,
            "record": "1",
            "target_field": expected["redcap_randomization_group"],
            "target_field_name": "arm",
            "target_field_alt": expected["redcap_randomization_number"],
        },
        separators=(",", ":"),
    )
    stored = [r for r in emu.admin.records(["arm"]) if r["record_id"] == "1"]
    assert stored[0]["arm"] == expected["redcap_randomization_group"]


def test_second_record_of_the_stratum_gets_the_next_row(emu: RedcapEmulator) -> None:
    rows = [r for r in table(CLASSIC / "alloc_open_dev.csv") if r["sex"] == "0" and r["smoker"] == "0"]
    import_json(emu, [{"record_id": "9", "sex": "0", "smoker": "0"}])
    randomize(emu, "1", "7311")
    second = json.loads(randomize(emu, "9", "7311").body)
    assert second["target_field"] == rows[1]["redcap_randomization_group"]
    used = [a for a in emu.admin.allocations(7311) if a["is_used_by"]]
    assert [(a["is_used_by"], a["target_field_alt"]) for a in used] == [
        ("1", rows[0]["redcap_randomization_number"]),
        ("9", rows[1]["redcap_randomization_number"]),
    ]


@pytest.mark.parametrize(
    ("value", "included"),
    [("True", False), ("yes", False), ("false", False), ("", False), ("true", True), ("1", True)],
)
def test_return_alt_only_for_exact_true_or_one(emu: RedcapEmulator, value: str, included: bool) -> None:
    body = json.loads(randomize(emu, "1", "7311", returnAlt=value).body)
    keys = ["randomization_id", "record", "target_field", "target_field_name"]
    assert list(body) == [*keys, "target_field_alt"] if included else keys


def test_concealed_model_writes_the_number_and_answers_star(emu: RedcapEmulator) -> None:
    # Record 1: DAG north (301), sex 0 -> first row with sex 0 and DAG 301.
    expected = next(
        r
        for r in table(CLASSIC / "alloc_blind_dev.csv")
        if r["sex"] == "0" and r["redcap_data_access_group"] == "301"
    )
    body = json.loads(randomize(emu, "1", "7355", returnAlt="1").body)
    assert body["target_field"] == expected["redcap_randomization_number"]
    assert body["target_field_alt"] == "*"
    assert [r["kit"] for r in emu.admin.records(["kit"]) if r["record_id"] == "1"] == [
        expected["redcap_randomization_number"]
    ]


@pytest.mark.parametrize(
    ("record", "rid", "message"),
    [
        ("1", "999", "Invalid data supplied"),
        ("1", "abc", "Invalid data supplied"),
        ("1", "", "Invalid data supplied"),
        ("nope", "7311", "Cannot randomize. Record does not exist."),
        ("3", "7311", "Cannot randomize. Missing stratification data for fields: smoker (event 5521)"),
    ],
)
def test_refusals_are_plain_200_bodies(emu: RedcapEmulator, record: str, rid: str, message: str) -> None:
    resp = randomize(emu, record, rid)
    assert (resp.status, resp.body, resp.content_type) == (200, message, JSON_TYPE)


def test_missing_strata_lists_every_field_with_its_event_id(emu: RedcapEmulator) -> None:
    import_json(emu, [{"record_id": "20", "dob": "2000-01-01"}])
    resp = randomize(emu, "20", "7311")
    assert (
        resp.body
        == "Cannot randomize. Missing stratification data for fields: sex (event 5521),smoker (event 5521)"
    )


def test_zero_is_a_present_stratum_value(emu: RedcapEmulator) -> None:
    import_json(emu, [{"record_id": "21", "sex": "0", "smoker": "0"}])
    assert json.loads(randomize(emu, "21", "7311").body)["record"] == "21"


def test_already_randomized_is_refused(emu: RedcapEmulator) -> None:
    randomize(emu, "1", "7311")
    assert randomize(emu, "1", "7311").body == "Cannot randomize. Randomization already completed for record."


def test_dag_grouped_model_needs_a_dag(emu: RedcapEmulator) -> None:
    import_json(emu, [{"record_id": "30", "sex": "0"}])
    assert randomize(emu, "30", "7355").body == "Cannot randomize. Record not assigned to a DAG"


def test_exhausted_stratum(emu: RedcapEmulator) -> None:
    rows = [r for r in table(CLASSIC / "alloc_open_dev.csv") if r["sex"] == "1" and r["smoker"] == "1"]
    records = [f"x{i}" for i in range(len(rows) + 1)]
    import_json(emu, [{"record_id": r, "sex": "1", "smoker": "1"} for r in records])
    for r in records[:-1]:
        assert json.loads(randomize(emu, r, "7311").body)["record"] == r
    assert randomize(emu, records[-1], "7311").body == "Cannot randomize. No allocations available."


def test_privilege_is_checked_first_and_only_random_perform(emu: RedcapEmulator) -> None:
    resp = randomize(emu, "1", "999", token=READER)
    assert (resp.status, resp.body) == (403, '{"error":"You do not have Randomize privileges"}')
    # A user with only the Randomize right (no API export/import) may randomize.
    assert json.loads(randomize(emu, "1", "7311", token=RANDOMIZER).body)["record"] == "1"


def test_dag_user_cannot_read_strata_of_another_dag(emu: RedcapEmulator) -> None:
    # Record 2 is in "south"; REDCap reads strata through the user's DAG-limited export.
    assert randomize(emu, "2", "7355", token=NORTH).body == "Cannot randomize. Record not assigned to a DAG"


def test_xml_and_csv_bodies(emu: RedcapEmulator) -> None:
    import_json(emu, [{"record_id": "9", "sex": "0", "smoker": "0"}])
    xml = randomize(emu, "1", "7311", format="xml", returnAlt="true")
    first = next(r for r in table(CLASSIC / "alloc_open_dev.csv") if r["sex"] == "0" and r["smoker"] == "0")
    assert xml.body == (
        '<?xml version="1.0" encoding="UTF-8" ?>\n<items>\n'
        "<randomization_id><![CDATA[7311]]></randomization_id>"
        f"<record><![CDATA[1]]></record><target_field><![CDATA[{first['redcap_randomization_group']}]]>"
        "</target_field><target_field_name><![CDATA[arm]]></target_field_name>"
        f"<target_field_alt><![CDATA[{first['redcap_randomization_number']}]]></target_field_alt>\n</items>\n"
    )
    csv_body = randomize(emu, "9", "7311", format="csv").body
    assert csv_body.splitlines()[0] == "randomization_id,record,target_field,target_field_name"


def test_log_entry(emu: RedcapEmulator) -> None:
    randomize(emu, "1", "7311")
    entry = [e for e in emu.admin.log() if e["action"] == "Randomize record (API)"]
    assert entry[0]["details"] == "record_id = '1'\nrandomization_id = 7311"


def test_delete_frees_the_row_for_the_next_record(emu: RedcapEmulator) -> None:
    first = json.loads(randomize(emu, "1", "7311", returnAlt="1").body)
    resp = call(emu, content="record", action="delete", **{"records[0]": "1"})
    assert (resp.status, resp.body) == (200, "1")
    import_json(emu, [{"record_id": "50", "sex": "0", "smoker": "0"}])
    assert (
        json.loads(randomize(emu, "50", "7311", returnAlt="1").body)["target_field_alt"]
        == first["target_field_alt"]
    )


def test_admin_remove_randomization(emu: RedcapEmulator) -> None:
    randomize(emu, "1", "7311")
    emu.admin.remove_randomization(7311, "1")
    assert not [a for a in emu.admin.allocations(7311) if a["is_used_by"]]
    assert next(r for r in emu.admin.records(["arm"]) if r["record_id"] == "1")["arm"] == ""


def test_longitudinal_uses_production_table_and_target_event(long_emu: RedcapEmulator) -> None:
    # In production (status 1) the prod table applies; its header used the target's own name.
    expected = next(r for r in table(LONG / "alloc_prod.csv") if r["site"] == "0")
    body = json.loads(
        randomize(long_emu, "10", "88120", token="BBBBBBBBBBBBBBBBBBBBBBBBBBBBBB01", returnAlt="1").body
    )
    assert (body["target_field"], body["target_field_alt"]) == (
        expected["group"],
        expected["redcap_randomization_number"],
    )
    rows = [r for r in long_emu.admin.records(["group"]) if r["pid"] == "10" and r["group"]]
    assert [r["redcap_event_name"] for r in rows] == ["visit_arm_1"]


def test_longitudinal_missing_stratum_names_its_event(long_emu: RedcapEmulator) -> None:
    resp = randomize(long_emu, "11", "88120", token="BBBBBBBBBBBBBBBBBBBBBBBBBBBBBB01")
    assert resp.body == "Cannot randomize. Missing stratification data for fields: site (event 61001)"


def test_project_status_selects_the_table(emu: RedcapEmulator) -> None:
    emu.admin.set_project_status(1)
    expected = next(
        r for r in table(CLASSIC / "alloc_open_prod.csv") if r["sex"] == "0" and r["smoker"] == "0"
    )
    body = json.loads(randomize(emu, "1", "7311", returnAlt="1").body)
    assert (body["target_field"], body["target_field_alt"]) == (expected["redcap_randomization_group"], None)
