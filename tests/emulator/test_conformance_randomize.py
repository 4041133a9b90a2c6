"""Randomize Record, exactly as REDCap 15.7.6 does it (reference §1.1, §2, §5.1 items 5-7).

Expected allocations are read from the demo's allocation-table CSV files: the n-th record of a
stratum (sex, age group, DAG) gets the n-th row of that stratum in upload order.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from redcap_conformance import CONTENT_TYPES, JSON_CT, XML_DECL, Api, DemoFacts, error_message

pytestmark = pytest.mark.integration

OPEN, CONCEALED = 48213, 48297
KEYS = ["randomization_id", "record", "target_field", "target_field_name", "target_field_alt"]
FORMATS = ["json", "csv", "xml"]


def expected_body(rid: int, record: str, target_field: str, value: str, alt: str | None) -> dict[str, Any]:
    return {
        "randomization_id": rid,
        "record": record,
        "target_field": value,
        "target_field_name": target_field,
        "target_field_alt": alt,
    }


def stored_target(api: Api, record: str, field: str) -> str:
    rows = api.export(records=record, fields=f"record_id,{field}", events="randomization_arm_1")
    return rows[0][field] if rows else ""


# --- refusals: order, status, raw text, content type ----------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("rid", ["999999", "0", "", "abc", "-48213"])
def test_invalid_randomization_id(rc: Api, fmt: str, rid: str) -> None:
    rc.enrol("001001", "boston", "0", "1")
    resp = rc.randomize("001001", rid, format=fmt)
    assert resp.status_code == 200
    assert resp.text == "Invalid data supplied"
    assert resp.headers["content-type"].lower() == CONTENT_TYPES[fmt]


def test_randomization_id_is_cast_to_an_integer(rc: Api, demo: DemoFacts) -> None:
    # REDCap casts the id with PHP's intval: leading digits count, the rest is ignored.
    rc.enrol("001001", "boston", "0", "1")
    resp = rc.randomize("001001", "48213abc")
    assert resp.status_code == 200
    assert resp.json()["randomization_id"] == OPEN
    assert resp.json()["target_field"] == demo.stratum_rows(OPEN, "0", "1", "boston")[0].target


def test_missing_randomization_id_does_not_default_to_the_first_model(rc: Api) -> None:
    rc.enrol("001001", "boston", "0", "1")
    resp = rc.randomize("001001", None)
    assert (resp.status_code, resp.text) == (200, "Invalid data supplied")
    assert stored_target(rc, "001001", "rand_arm") == ""


def test_randomization_id_is_checked_before_the_record(rc: Api) -> None:
    resp = rc.randomize("nope", 1)
    assert (resp.status_code, resp.text) == (200, "Invalid data supplied")


@pytest.mark.parametrize("fmt", FORMATS)
def test_record_does_not_exist(rc: Api, fmt: str) -> None:
    resp = rc.randomize("nope", OPEN, format=fmt)
    assert resp.status_code == 200
    assert resp.text == "Cannot randomize. Record does not exist."
    assert resp.headers["content-type"].lower() == CONTENT_TYPES[fmt]


@pytest.mark.parametrize("fmt", FORMATS)
def test_already_randomized(rc: Api, fmt: str) -> None:
    rc.enrol("001001", "boston", "0", "1")
    assert rc.randomize("001001", OPEN).status_code == 200
    resp = rc.randomize("001001", OPEN, format=fmt)
    assert resp.status_code == 200
    assert resp.text == "Cannot randomize. Randomization already completed for record."
    assert resp.headers["content-type"].lower() == CONTENT_TYPES[fmt]


def test_a_record_is_randomized_once_per_model(rc: Api, demo: DemoFacts) -> None:
    rc.enrol("001001", "boston", "0", "1")
    assert rc.randomize("001001", OPEN).status_code == 200
    resp = rc.randomize("001001", CONCEALED)
    assert resp.status_code == 200
    assert resp.json()["target_field"] == demo.stratum_rows(CONCEALED, "0", "1", "boston")[0].target


@pytest.mark.parametrize("fmt", FORMATS)
def test_record_not_assigned_to_a_dag(rc: Api, fmt: str) -> None:
    rc.enrol("009001", None, "0", "1")
    resp = rc.randomize("009001", OPEN, format=fmt)
    assert resp.status_code == 200
    assert resp.text == "Cannot randomize. Record not assigned to a DAG"
    assert resp.headers["content-type"].lower() == CONTENT_TYPES[fmt]


def test_dag_is_checked_before_strata(rc: Api) -> None:
    rc.enrol("009001", None, "", "")
    resp = rc.randomize("009001", OPEN)
    assert resp.text == "Cannot randomize. Record not assigned to a DAG"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("sex", "age_group", "missing"),
    [("", "", ["sex", "age_group"]), ("0", "", ["age_group"]), ("", "2", ["sex"])],
)
def test_missing_stratification_data(
    rc: Api, demo: DemoFacts, fmt: str, sex: str, age_group: str, missing: list[str]
) -> None:
    rc.enrol("001001", "boston", sex, age_group)
    resp = rc.randomize("001001", OPEN, format=fmt)
    assert resp.status_code == 200
    event_id = demo.event_ids["baseline_arm_1"]
    listed = ",".join(f"{f} (event {event_id})" for f in missing)
    assert resp.text == f"Cannot randomize. Missing stratification data for fields: {listed}"
    assert resp.headers["content-type"].lower() == CONTENT_TYPES[fmt]


def test_record_with_only_a_screening_row_misses_all_strata(rc: Api) -> None:
    rc.import_ok(
        [
            {
                "record_id": "001001",
                "redcap_event_name": "screening_arm_1",
                "redcap_data_access_group": "boston",
                "age": "30",
            }
        ]
    )
    resp = rc.randomize("001001", OPEN)
    assert (
        resp.text
        == "Cannot randomize. Missing stratification data for fields: sex (event 4102),age_group (event 4102)"
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_allocations_available_when_the_stratum_is_exhausted(rc: Api, demo: DemoFacts, fmt: str) -> None:
    rows = demo.stratum_rows(OPEN, "1", "2", "denver")
    for n in range(len(rows)):
        rc.enrol(f"002{n:03d}", "denver", "1", "2")
        assert rc.randomize(f"002{n:03d}", OPEN).status_code == 200
    rc.enrol("002999", "denver", "1", "2")
    resp = rc.randomize("002999", OPEN, format=fmt)
    assert resp.status_code == 200
    assert resp.text == "Cannot randomize. No allocations available."
    assert resp.headers["content-type"].lower() == CONTENT_TYPES[fmt]
    # Exhaustion is per stratum and DAG: the same strata at another site still randomize.
    rc.enrol("001999", "boston", "1", "2")
    assert rc.randomize("001999", OPEN).status_code == 200


def test_refusals_write_nothing(rc: Api, server: Any) -> None:
    rc.enrol("001001", "boston", "", "1")
    rc.randomize("001001", OPEN)
    assert stored_target(rc, "001001", "rand_arm") == ""
    assert not [a for a in server.admin.allocations(OPEN) if a["is_used_by"]]


def test_site_user_cannot_see_another_dags_record(rc: Api, demo: DemoFacts) -> None:
    rc.enrol("002001", "denver", "0", "1")
    resp = rc.randomize("002001", OPEN, token=demo.tokens["site_boston"])
    assert (resp.status_code, resp.text) == (200, "Cannot randomize. Record not assigned to a DAG")


def test_site_user_randomizes_its_own_record(rc: Api, demo: DemoFacts) -> None:
    site = demo.tokens["site_boston"]
    rc.enrol("001001", "boston", "1", "1", token=site)
    resp = rc.randomize("001001", OPEN, token=site)
    row = demo.stratum_rows(OPEN, "1", "1", "boston")[0]
    assert resp.json() == expected_body(OPEN, "001001", "rand_arm", row.target, row.alt)


def test_randomize_privilege_error_is_wrapped(rc: Api, demo: DemoFacts) -> None:
    resp = rc.randomize("001001", OPEN, token=demo.tokens["no_randomize"])
    assert resp.status_code == 403
    assert error_message(resp) == "You do not have Randomize privileges"


# --- success bodies -------------------------------------------------------------------------


def test_open_success_json(rc: Api, demo: DemoFacts) -> None:
    rc.enrol("001001", "boston", "0", "1")
    resp = rc.randomize("001001", OPEN)
    assert resp.status_code == 200
    assert resp.headers["content-type"].lower() == JSON_CT
    row = demo.stratum_rows(OPEN, "0", "1", "boston")[0]
    body = json.loads(resp.text)
    assert list(body) == KEYS
    assert body == expected_body(OPEN, "001001", "rand_arm", row.target, row.alt)
    assert isinstance(body["randomization_id"], int)
    assert stored_target(rc, "001001", "rand_arm") == row.target


def test_concealed_success_json(rc: Api, demo: DemoFacts) -> None:
    rc.enrol("003001", "seattle", "1", "3")
    resp = rc.randomize("003001", CONCEALED)
    row = demo.stratum_rows(CONCEALED, "1", "3", "seattle")[0]
    assert resp.json() == expected_body(CONCEALED, "003001", "kit_number", row.target, "*")
    assert stored_target(rc, "003001", "kit_number") == row.target
    assert stored_target(rc, "003001", "rand_arm") == ""


def test_zero_is_a_present_stratum_value(rc: Api, demo: DemoFacts) -> None:
    rc.enrol("002001", "denver", "0", "2")
    resp = rc.randomize("002001", OPEN)
    assert resp.status_code == 200, resp.text
    assert resp.json()["target_field"] == demo.stratum_rows(OPEN, "0", "2", "denver")[0].target


@pytest.mark.parametrize(
    ("value", "included"),
    [
        ("true", True),
        ("1", True),
        ("True", False),
        ("TRUE", False),
        ("false", False),
        ("0", False),
        ("yes", False),
        (None, False),
    ],
)
def test_return_alt_only_for_true_or_1(rc: Api, demo: DemoFacts, value: str | None, included: bool) -> None:
    rc.enrol("001001", "boston", "0", "1")
    body = rc.randomize("001001", OPEN, return_alt=value).json()
    row = demo.stratum_rows(OPEN, "0", "1", "boston")[0]
    expected = expected_body(OPEN, "001001", "rand_arm", row.target, row.alt)
    if not included:
        del expected["target_field_alt"]
    assert body == expected
    assert list(body) == list(expected)


def test_success_csv(rc: Api, demo: DemoFacts) -> None:
    rc.enrol("001001", "boston", "1", "3")
    resp = rc.randomize("001001", CONCEALED, format="csv")
    assert resp.headers["content-type"].lower() == CONTENT_TYPES["csv"]
    row = demo.stratum_rows(CONCEALED, "1", "3", "boston")[0]
    assert list(csv.reader(io.StringIO(resp.text))) == [
        KEYS,
        [str(CONCEALED), "001001", row.target, "kit_number", "*"],
    ]


def test_success_xml_uses_items_root(rc: Api, demo: DemoFacts) -> None:
    rc.enrol("001001", "boston", "0", "2")
    resp = rc.randomize("001001", OPEN, format="xml")
    assert resp.headers["content-type"].lower() == CONTENT_TYPES["xml"]
    row = demo.stratum_rows(OPEN, "0", "2", "boston")[0]
    values = [str(OPEN), "001001", row.target, "rand_arm", row.alt or ""]
    inner = "".join(
        f"<{k}><![CDATA[{v}]]></{k}>" if v != "" else f"<{k}></{k}>"
        for k, v in zip(KEYS, values, strict=True)
    )
    assert resp.text == f"{XML_DECL}\n<items>\n{inner}\n</items>\n"


# --- allocation order -----------------------------------------------------------------------


@pytest.mark.parametrize("rid", [OPEN, CONCEALED])
def test_stratum_consumed_in_upload_order(rc: Api, demo: DemoFacts, server: Any, rid: int) -> None:
    rows = demo.stratum_rows(rid, "0", "3", "seattle")
    # Interleave other strata and sites, as real enrolment does.
    rc.enrol("003001", "seattle", "0", "3")
    rc.enrol("003002", "seattle", "1", "3")
    rc.enrol("003003", "seattle", "0", "3")
    rc.enrol("001001", "boston", "0", "3")
    rc.enrol("003004", "seattle", "0", "3")
    got = {}
    for record in ("003001", "003002", "003003", "001001", "003004"):
        resp = rc.randomize(record, rid)
        assert resp.status_code == 200, resp.text
        got[record] = resp.json()["target_field"]
    assert [got["003001"], got["003003"], got["003004"]] == [r.target for r in rows[:3]]
    assert got["003002"] == demo.stratum_rows(rid, "1", "3", "seattle")[0].target
    assert got["001001"] == demo.stratum_rows(rid, "0", "3", "boston")[0].target
    target_field = demo.model(rid)["target_field"]
    for record, value in got.items():
        assert stored_target(rc, record, target_field) == value


def test_admin_allocations_show_who_used_which_row(rc: Api, demo: DemoFacts, server: Any) -> None:
    rc.enrol("001001", "boston", "1", "1")
    rc.randomize("001001", OPEN)
    allocations = server.admin.allocations(OPEN)
    table = demo.allocation_table(OPEN)
    assert [(a["target_field"], a["target_field_alt"]) for a in allocations if a["project_status"] == 1] == [
        (r.target, r.alt) for r in table
    ]
    used = [a for a in allocations if a["is_used_by"]]
    assert len(used) == 1
    expected = demo.stratum_rows(OPEN, "1", "1", "boston")[0]
    assert used[0]["is_used_by"] == "001001"
    assert used[0]["target_field"] == expected.target
    assert used[0]["strata"] == {"sex": "1", "age_group": "1"}
    assert str(used[0]["group_id"]) == "2201"
    assert used[0]["allocation_time"]


def test_randomize_is_logged(rc: Api, server: Any) -> None:
    rc.enrol("001001", "boston", "1", "1")
    rc.randomize("001001", OPEN)
    entries = [e for e in server.admin.log() if any("Randomize record (API)" in str(v) for v in e.values())]
    assert len(entries) == 1


def test_the_target_field_cannot_then_be_imported(rc: Api) -> None:
    rc.enrol("001001", "boston", "1", "1")
    rc.randomize("001001", OPEN)
    resp = rc.import_rows(
        [{"record_id": "001001", "redcap_event_name": "randomization_arm_1", "rand_arm": "1"}]
    )
    assert resp.status_code == 400


# --- delete frees the row; admin removal ----------------------------------------------------


def test_delete_frees_the_allocation_row_for_the_next_record(rc: Api, demo: DemoFacts, server: Any) -> None:
    rows = demo.stratum_rows(CONCEALED, "0", "1", "denver")
    rc.enrol("002001", "denver", "0", "1")
    rc.enrol("002002", "denver", "0", "1")
    assert rc.randomize("002001", CONCEALED).json()["target_field"] == rows[0].target
    assert rc.call("record", action="delete", records="002001").status_code == 200
    assert not [a for a in server.admin.allocations(CONCEALED) if a["is_used_by"] == "002001"]
    assert rc.randomize("002002", CONCEALED).json()["target_field"] == rows[0].target
    rc.enrol("002003", "denver", "0", "1")
    assert rc.randomize("002003", CONCEALED).json()["target_field"] == rows[1].target


def test_admin_remove_randomization(rc: Api, demo: DemoFacts, server: Any) -> None:
    rc.enrol("001001", "boston", "0", "1")
    rc.randomize("001001", OPEN)
    server.admin.remove_randomization(OPEN, "001001")
    assert stored_target(rc, "001001", "rand_arm") == ""
    resp = rc.randomize("001001", OPEN)
    assert resp.status_code == 200
    assert resp.json()["target_field"] == demo.stratum_rows(OPEN, "0", "1", "boston")[0].target


def test_reset_returns_to_the_initial_state(rc: Api, server: Any) -> None:
    rc.enrol("001001", "boston", "0", "1")
    rc.randomize("001001", OPEN)
    server.admin.reset()
    assert rc.export(fields="record_id") == []
    assert not [a for a in server.admin.allocations() if a["is_used_by"]]


# --- project status -------------------------------------------------------------------------


def _development(project: dict[str, Any], _path: Path) -> None:
    project["in_production"] = 0


def test_development_uses_the_development_table(serve_variant: Any, demo: DemoFacts) -> None:
    server = serve_variant(_development)
    api = Api(server.url, server.token)
    for n in range(3):
        api.enrol(f"00300{n}", "seattle", "1", "2")
    got = [api.randomize(f"00300{n}", CONCEALED).json()["target_field"] for n in range(3)]
    dev = demo.stratum_rows(CONCEALED, "1", "2", "seattle", status="development")
    assert got == [r.target for r in dev[:3]]
    prod = demo.stratum_rows(CONCEALED, "1", "2", "seattle", status="production")
    assert got != [r.target for r in prod[:3]]


def _seeded_analysis(project: dict[str, Any], path: Path) -> None:
    project["in_production"] = 2
    (path / "records.csv").write_text(
        "record_id,redcap_event_name,redcap_data_access_group,sex,age_group\n001001,baseline_arm_1,boston,0,1\n"
    )


def test_analysis_cleanup_uses_no_table(serve_variant: Any) -> None:
    server = serve_variant(_seeded_analysis)
    api = Api(server.url, server.token)
    resp = api.randomize("001001", OPEN)
    assert (resp.status_code, resp.text) == (200, "Cannot randomize. No allocations available.")


def _open_without_numbers(project: dict[str, Any], path: Path) -> None:
    table = path / project["randomizations"][0]["allocation_tables"]["production"]
    with table.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["redcap_randomization_group", "sex", "age_group", "redcap_data_access_group"])
    for r in rows:
        writer.writerow(
            [r["redcap_randomization_group"], r["sex"], r["age_group"], r["redcap_data_access_group"]]
        )
    table.write_text(out.getvalue())


def test_open_model_without_numbers_returns_null_alt(serve_variant: Any, demo: DemoFacts) -> None:
    server = serve_variant(_open_without_numbers)
    api = Api(server.url, server.token)
    api.enrol("001001", "boston", "0", "1")
    resp = api.randomize("001001", OPEN)
    assert resp.text.endswith('"target_field_alt":null}')
    row = demo.stratum_rows(OPEN, "0", "1", "boston")[0]
    assert resp.json() == expected_body(OPEN, "001001", "rand_arm", row.target, None)


def _target_header_named_after_field(project: dict[str, Any], path: Path) -> None:
    table = path / project["randomizations"][1]["allocation_tables"]["production"]
    text = table.read_text()
    table.write_text(text.replace("redcap_randomization_number", "kit_number", 1))


def test_allocation_table_may_name_the_target_field(serve_variant: Any, demo: DemoFacts) -> None:
    server = serve_variant(_target_header_named_after_field)
    api = Api(server.url, server.token)
    api.enrol("001001", "boston", "0", "1")
    row = demo.stratum_rows(CONCEALED, "0", "1", "boston")[0]
    assert api.randomize("001001", CONCEALED).json()["target_field"] == row.target


def test_pytest_plugin_fixture_serves_the_demo(redcap_emulator: Any, demo: DemoFacts) -> None:
    assert redcap_emulator.token == demo.tokens["data_manager"]
    assert redcap_emulator.tokens == demo.tokens
    assert redcap_emulator.url.endswith("/api/")
    api = Api(redcap_emulator.url, redcap_emulator.token)
    api.enrol("001001", "boston", "0", "1")
    assert (
        api.randomize("001001", OPEN).json()["target_field"]
        == demo.stratum_rows(OPEN, "0", "1", "boston")[0].target
    )


def test_demo_tables_are_valid_for_the_model(demo: DemoFacts) -> None:
    """Guards the data files themselves: 18 strata, distinct dev/prod tables."""
    for rid in (OPEN, CONCEALED):
        prod, dev = demo.allocation_table(rid, "production"), demo.allocation_table(rid, "development")
        assert [(r.target, r.strata, r.group_id) for r in prod] != [
            (r.target, r.strata, r.group_id) for r in dev
        ]
        strata = {(r.strata["sex"], r.strata["age_group"], r.group_id) for r in prod}
        assert len(strata) == 18
