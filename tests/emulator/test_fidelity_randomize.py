"""Fidelity probes of Randomize Record with tricky inputs (reference §1.0, §1.1, §2, §5.1).

Expected values come from the reference text and from the demo's allocation table files, read here
independently of the emulator.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.integration

OPEN_RID = 48213
CONCEALED_RID = 48297
DAG_IDS = {"boston": "2201", "denver": "2202", "seattle": "2203"}


def _demo() -> Path:
    from airflow_provider_redcap.emulator import demo_project_dir

    return Path(demo_project_dir())


def _first_row(rid: int, status: str, sex: str, age_group: str, dag: str) -> dict[str, str]:
    """The lowest (upload-order) allocation row of a stratum, read straight from the table file."""
    with (_demo() / f"allocation_{rid}_{status}.csv").open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if (row["sex"], row["age_group"], row["redcap_data_access_group"]) == (
                sex,
                age_group,
                DAG_IDS[dag],
            ):
                return row
    raise AssertionError("stratum not in the allocation table")


@pytest.fixture(scope="module")
def served() -> Iterator[Any]:
    from airflow_provider_redcap.emulator import RedcapEmulator

    with RedcapEmulator(_demo()).serve(host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
def server(served: Any) -> Any:
    served.admin.reset()
    return served


def _post(server: Any, token: str | None = None, **params: Any) -> requests.Response:
    params.setdefault("format", "json")
    params["token"] = token or server.token
    return requests.post(server.url, data=params, timeout=30)


def _seed(
    server: Any, record: str, *, sex: str = "0", age_group: str = "2", dag: str | None = "boston"
) -> None:
    row = {"record_id": record, "redcap_event_name": "baseline_arm_1", "sex": sex, "age_group": age_group}
    if dag is not None:
        row["redcap_data_access_group"] = dag
    resp = _post(server, content="record", data=json.dumps([row]))
    assert resp.status_code == 200, resp.text


def _randomize(
    server: Any, record: str, rid: Any = OPEN_RID, token: str | None = None, **extra: Any
) -> requests.Response:
    params = {"content": "record", "action": "randomize", "record": record, "randomization_id": rid, **extra}
    return _post(server, token, **params)


# --- randomization_id parsing: PHP intval, 0/missing invalid (§1.1 item 2) ------------------------


def test_rid_with_trailing_letters_is_read_as_its_leading_integer(server: Any) -> None:
    _seed(server, "501")
    resp = _randomize(server, "501", rid=f"{OPEN_RID}abc", returnAlt="true")
    expected = _first_row(OPEN_RID, "production", "0", "2", "boston")
    assert resp.status_code == 200
    assert json.loads(resp.text) == {
        "randomization_id": OPEN_RID,
        "record": "501",
        "target_field": expected["redcap_randomization_group"],
        "target_field_name": "rand_arm",
        "target_field_alt": expected["redcap_randomization_number"],
    }


@pytest.mark.parametrize("rid", ["0", "", "abc", None])
def test_zero_blank_or_missing_rid_is_invalid_data_supplied_as_raw_200_text(
    server: Any, rid: str | None
) -> None:
    _seed(server, "502")
    params: dict[str, Any] = {"content": "record", "action": "randomize", "record": "502"}
    if rid is not None:
        params["randomization_id"] = rid
    resp = _post(server, **params)
    assert resp.status_code == 200
    assert resp.text == "Invalid data supplied"
    assert resp.headers["content-type"] == "application/json; charset=utf-8"


def test_rid_of_no_model_in_this_project_is_invalid_data_supplied(server: Any) -> None:
    _seed(server, "503")
    resp = _randomize(server, "503", rid=OPEN_RID + 1)
    assert (resp.status_code, resp.text) == (200, "Invalid data supplied")


# --- returnAlt: only exact "true" or "1" (§1.0, §1.1 item 9) -------------------------------------


@pytest.mark.parametrize("value", ["True", "TRUE", "yes", "on", "0", "false"])
def test_return_alt_other_than_lowercase_true_or_1_is_ignored(server: Any, value: str) -> None:
    _seed(server, "510")
    body = json.loads(_randomize(server, "510", returnAlt=value).text)
    assert list(body) == ["randomization_id", "record", "target_field", "target_field_name"]


@pytest.mark.parametrize("value", ["true", "1"])
def test_return_alt_lowercase_true_or_1_adds_the_alternate(server: Any, value: str) -> None:
    _seed(server, "511")
    body = json.loads(_randomize(server, "511", returnAlt=value).text)
    expected = _first_row(OPEN_RID, "production", "0", "2", "boston")
    assert body["target_field_alt"] == expected["redcap_randomization_number"]


# --- body formats (§1.1 item 9) ------------------------------------------------------------------


def test_csv_success_is_header_plus_one_row_with_the_real_keys(server: Any) -> None:
    _seed(server, "520", sex="1", age_group="3", dag="denver")
    resp = _randomize(server, "520", returnAlt="1", format="csv")
    expected = _first_row(OPEN_RID, "production", "1", "3", "denver")
    assert resp.headers["content-type"] == "text/csv; charset=utf-8"
    lines = resp.text.strip("\n").split("\n")
    assert lines[0] == "randomization_id,record,target_field,target_field_name,target_field_alt"
    assert lines[1:] == [
        f"{OPEN_RID},520,{expected['redcap_randomization_group']},rand_arm,{expected['redcap_randomization_number']}"
    ]


def test_concealed_xml_success_uses_items_root_and_star_alternate(server: Any) -> None:
    _seed(server, "521", sex="0", age_group="3", dag="seattle")
    resp = _randomize(server, "521", rid=CONCEALED_RID, returnAlt="true", format="xml")
    expected = _first_row(CONCEALED_RID, "production", "0", "3", "seattle")
    assert resp.headers["content-type"] == "text/xml; charset=utf-8"
    assert resp.text == (
        '<?xml version="1.0" encoding="UTF-8" ?>\n<items>\n'
        f"<randomization_id><![CDATA[{CONCEALED_RID}]]></randomization_id>"
        "<record><![CDATA[521]]></record>"
        f"<target_field><![CDATA[{expected['redcap_randomization_number']}]]></target_field>"
        "<target_field_name><![CDATA[kit_number]]></target_field_name>"
        "<target_field_alt><![CDATA[*]]></target_field_alt>"
        "\n</items>\n"
    )


@pytest.mark.parametrize(("fmt", "ctype"), [("xml", "text/xml"), ("csv", "text/csv")])
def test_soft_refusals_are_unwrapped_in_every_format(server: Any, fmt: str, ctype: str) -> None:
    resp = _randomize(server, "no-such-record", format=fmt)
    assert resp.status_code == 200
    assert resp.text == "Cannot randomize. Record does not exist."
    assert resp.headers["content-type"] == f"{ctype}; charset=utf-8"


# --- check order and strata (§1.1 items 3-6, §5.1 item 5) ----------------------------------------


def test_missing_record_parameter_is_record_does_not_exist(server: Any) -> None:
    resp = _post(server, content="record", action="randomize", randomization_id=OPEN_RID)
    assert (resp.status_code, resp.text) == (200, "Cannot randomize. Record does not exist.")


def test_record_in_no_dag_is_refused_before_strata(server: Any) -> None:
    # no DAG and also a blank stratum: the DAG message wins (check order, §5.1 item 5)
    _seed(server, "530", age_group="", dag=None)
    resp = _randomize(server, "530")
    assert (resp.status_code, resp.text) == (200, "Cannot randomize. Record not assigned to a DAG")


def test_missing_strata_lists_field_and_numeric_event_without_spaces(server: Any) -> None:
    resp = _post(
        server,
        content="record",
        data=json.dumps(
            [
                {
                    "record_id": "531",
                    "redcap_event_name": "screening_arm_1",
                    "redcap_data_access_group": "boston",
                }
            ]
        ),
    )
    assert resp.status_code == 200, resp.text
    resp = _randomize(server, "531")
    assert resp.text == (
        "Cannot randomize. Missing stratification data for fields: sex (event 4102),age_group (event 4102)"
    )


def test_stratum_value_zero_is_present(server: Any) -> None:
    _seed(server, "532", sex="0", age_group="1", dag="denver")
    body = json.loads(_randomize(server, "532", returnAlt="true").text)
    assert (
        body["target_field"]
        == _first_row(OPEN_RID, "production", "0", "1", "denver")["redcap_randomization_group"]
    )


def test_second_randomize_of_the_same_record_is_already_completed(server: Any) -> None:
    _seed(server, "533")
    assert _randomize(server, "533").status_code == 200
    resp = _randomize(server, "533")
    assert (resp.status_code, resp.text) == (
        200,
        "Cannot randomize. Randomization already completed for record.",
    )


# --- deletion frees the row (§2 "Un-randomizing" (b)) --------------------------------------------


def test_deleting_a_randomized_record_frees_its_row_for_the_next_record(server: Any) -> None:
    _seed(server, "540", sex="1", age_group="1", dag="boston")
    first = json.loads(_randomize(server, "540", returnAlt="1").text)
    resp = _post(server, content="record", action="delete", records="540")
    assert resp.status_code == 200, resp.text
    _seed(server, "541", sex="1", age_group="1", dag="boston")
    second = json.loads(_randomize(server, "541", returnAlt="1").text)
    expected = _first_row(OPEN_RID, "production", "1", "1", "boston")
    assert first["target_field_alt"] == second["target_field_alt"] == expected["redcap_randomization_number"]


# --- DAG-restricted user (§1.1 item 5: strata read limited to the user's DAG) --------------------


def test_dag_user_randomizing_another_dags_record_sees_no_dag(server: Any) -> None:
    _seed(server, "550", dag="denver")
    resp = _randomize(server, "550", token=server.tokens["site_boston"], returnAlt="true")
    assert (resp.status_code, resp.text) == (200, "Cannot randomize. Record not assigned to a DAG")
    assert not [a for a in server.admin.allocations(OPEN_RID) if a["is_used_by"] == "550"]


def test_randomize_needs_only_random_perform(server: Any) -> None:
    resp = _randomize(server, "560", token=server.tokens["no_randomize"])
    assert resp.status_code == 403
    assert resp.text == '{"error":"You do not have Randomize privileges"}'


# --- project status 2 (Analysis/Cleanup) has no allocation rows (§2 "Development vs production") ---


@pytest.fixture
def cleanup_server(tmp_path: Path) -> Iterator[Any]:
    from airflow_provider_redcap.emulator import RedcapEmulator

    folder = tmp_path / "cleanup"
    shutil.copytree(_demo(), folder)
    info = json.loads((folder / "project.json").read_text())
    info["in_production"] = 2
    (folder / "project.json").write_text(json.dumps(info))
    with RedcapEmulator(folder, db_path=tmp_path / "state.sqlite3").serve(host="127.0.0.1", port=0) as srv:
        yield srv


def test_analysis_cleanup_project_has_no_allocations(cleanup_server: Any) -> None:
    # imports are refused in status 2; PHP's json_encode escapes "/", hence the parsed comparison
    resp = _post(
        cleanup_server,
        content="record",
        data=json.dumps([{"record_id": "570", "redcap_event_name": "baseline_arm_1", "sex": "0"}]),
    )
    assert resp.status_code == 403
    assert json.loads(resp.text) == {
        "error": "Data may not be imported because the project is in Analysis/Cleanup status."
    }


def test_analysis_cleanup_project_randomize_answers_no_allocations(tmp_path: Path) -> None:
    from airflow_provider_redcap.emulator import RedcapEmulator

    folder = tmp_path / "cleanup_seeded"
    shutil.copytree(_demo(), folder)
    info = json.loads((folder / "project.json").read_text())
    info["in_production"] = 2
    (folder / "project.json").write_text(json.dumps(info))
    (folder / "records.csv").write_text(
        "record_id,redcap_event_name,redcap_data_access_group,sex,age_group\n571,baseline_arm_1,boston,0,2\n"
    )
    with RedcapEmulator(folder, db_path=tmp_path / "s.sqlite3").serve(host="127.0.0.1", port=0) as srv:
        resp = _randomize(srv, "571", returnAlt="true")
        assert (resp.status_code, resp.text) == (200, "Cannot randomize. No allocations available.")


@pytest.mark.parametrize("rid", [f"{OPEN_RID}.9", f" {OPEN_RID}", f"+{OPEN_RID}"])
def test_rid_is_read_like_php_intval(server: Any, rid: str) -> None:
    _seed(server, "580")
    resp = _randomize(server, "580", rid=rid)
    assert json.loads(resp.text)["randomization_id"] == OPEN_RID


def test_open_model_without_numbers_returns_json_null_alternate(tmp_path: Path) -> None:
    """§1.1 item 9: the stored alternate "may be NULL → JSON null" when no number was uploaded."""
    from airflow_provider_redcap.emulator import RedcapEmulator

    folder = tmp_path / "no_numbers"
    shutil.copytree(_demo(), folder)
    for status in ("development", "production"):
        path = folder / f"allocation_{OPEN_RID}_{status}.csv"
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        cols = ["redcap_randomization_group", "sex", "age_group", "redcap_data_access_group"]
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    with RedcapEmulator(folder, db_path=tmp_path / "s.sqlite3").serve(host="127.0.0.1", port=0) as srv:
        _seed(srv, "590")
        resp = _randomize(srv, "590", returnAlt="true")
        assert resp.status_code == 200
        assert '"target_field_alt":null' in resp.text
        assert json.loads(resp.text)["target_field_alt"] is None
