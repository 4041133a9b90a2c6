"""RedcapHook against the local REDCap emulator (real HTTP, real REDCap response shapes).

Expected values come from the demo project's files (project.json, events.csv, allocation CSVs),
read here independently of the emulator.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_redcap.exceptions import (
    RedcapAlreadyRandomizedError,
    RedcapAuthError,
    RedcapConnectionError,
    RedcapImportError,
    RedcapMissingStratificationError,
    RedcapPermissionError,
    RedcapServerError,
    RedcapValidationError,
)
from airflow_provider_redcap.hooks.redcap import RedcapHook
from airflow_provider_redcap.models import RandomizationModel, StratumField

pytestmark = pytest.mark.integration


@pytest.fixture
def demo(redcap_project_dir: Path) -> dict[str, Any]:
    return json.loads((redcap_project_dir / "project.json").read_text())


@pytest.fixture
def hook(redcap_connection: Any) -> RedcapHook:
    return RedcapHook(retry_wait=0)


def _event_id(project_dir: Path, unique_event_name: str) -> int:
    with (project_dir / "events.csv").open(newline="") as handle:
        return next(
            int(r["event_id"]) for r in csv.DictReader(handle) if r["unique_event_name"] == unique_event_name
        )


def _first_allocation(project_dir: Path, table: str, sex: str, age_group: str, dag_id: str) -> dict[str, str]:
    with (project_dir / table).open(newline="") as handle:
        return next(
            r
            for r in csv.DictReader(handle)
            if (r["sex"], r["age_group"], r["redcap_data_access_group"]) == (sex, age_group, dag_id)
        )


def _enrol(
    hook: RedcapHook, record: str, sex: str | None, age_group: str | None, dag: str = "boston"
) -> None:
    row: dict[str, Any] = {
        "record_id": record,
        "redcap_event_name": "baseline_arm_1",
        "redcap_data_access_group": dag,
    }
    if sex is not None:
        row["sex"] = sex
    if age_group is not None:
        row["age_group"] = age_group
    hook.import_records(
        [{"record_id": record, "redcap_event_name": "screening_arm_1", "age": 50}, row],
        record_id_field="record_id",
    )


def test_test_connection_names_project_and_version(hook: RedcapHook, demo: dict[str, Any]) -> None:
    ok, message = hook.test_connection()
    assert ok, message
    assert str(demo["project_id"]) in message
    assert demo["redcap_version"] in message


@pytest.mark.parametrize("username", ["data_manager", "no_randomize", "monitor"])
def test_test_connection_names_missing_privileges(
    redcap_connection: Any, demo: dict[str, Any], monkeypatch: pytest.MonkeyPatch, username: str
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_REDCAP_DEFAULT", redcap_connection.airflow_connection_json(username))
    rights = next(u["rights"] for u in demo["users"] if u["username"] == username)
    missing = []
    if not rights.get("random_perform"):
        missing.append("Randomize (needed by RedcapRandomizeOperator)")
    if not rights.get("api_import"):
        missing.append("API Import (needed by RedcapImportRecordsOperator)")
    allocations = redcap_connection.admin.allocations()
    records = redcap_connection.admin.records()

    ok, message = RedcapHook(retry_wait=0).test_connection()

    assert ok, message  # every one of these users can export
    assert str(demo["project_id"]) in message
    if missing:
        assert message.endswith(f" Missing privileges: {', '.join(missing)}.")
    else:
        assert "Missing" not in message
    assert "Could not" not in message
    # The probes change nothing.
    assert redcap_connection.admin.allocations() == allocations
    assert redcap_connection.admin.records() == records


def test_check_randomization_id_allocates_nothing(
    redcap_connection: Any, demo: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [m["randomization_id"] for m in demo["randomizations"]]
    allocations = redcap_connection.admin.allocations()
    hook = RedcapHook(retry_wait=0)
    assert [hook.check_randomization_id(rid) for rid in ids] == [True] * len(ids)
    assert hook.check_randomization_id(max(ids) + 1) is False
    assert hook.check_randomization_id(0) is False
    monkeypatch.setenv(
        "AIRFLOW_CONN_REDCAP_DEFAULT", redcap_connection.airflow_connection_json("no_randomize")
    )
    assert RedcapHook(retry_wait=0).check_randomization_id(ids[0]) is None
    assert redcap_connection.admin.allocations() == allocations


def test_randomization_models_from_project_xml(hook: RedcapHook, demo: dict[str, Any]) -> None:
    expected = [
        RandomizationModel(
            position=i,
            target_field=m["target_field"],
            target_event=m["target_event"],
            strata=tuple(StratumField(s["field"], s["event"]) for s in m["strata"]),
            group_by_dag=m["group_by_dag"],
        )
        for i, m in enumerate(sorted(demo["randomizations"], key=lambda m: m["randomization_id"]), start=1)
    ]
    assert hook.get_randomization_models() == expected


def test_import_export_and_randomize_open_model(hook: RedcapHook, redcap_project_dir: Path) -> None:
    _enrol(hook, "9001", sex="0", age_group="2")
    rows = hook.export_records(records=["9001"], fields=["sex", "age_group"], events=["baseline_arm_1"])
    assert [(r["sex"], r["age_group"]) for r in rows] == [("0", "2")]
    assert hook.last_missing_records == []

    result = hook.randomize_record("9001", 48213)
    expected = _first_allocation(redcap_project_dir, "allocation_48213_production.csv", "0", "2", "2201")
    assert (result.randomization_id, result.record, result.target_field) == (48213, "9001", "rand_arm")
    assert result.value == expected["redcap_randomization_group"]
    assert result.alternate_value == expected["redcap_randomization_number"]
    assert result.concealed is False

    with pytest.raises(RedcapAlreadyRandomizedError):
        hook.randomize_record("9001", 48213)


def test_missing_strata_name_the_numeric_event(hook: RedcapHook, redcap_project_dir: Path) -> None:
    _enrol(hook, "9002", sex="1", age_group=None)
    with pytest.raises(RedcapMissingStratificationError) as info:
        hook.randomize_record("9002", 48213)
    assert info.value.missing == [("age_group", _event_id(redcap_project_dir, "baseline_arm_1"))]


def test_export_reports_missing_records(hook: RedcapHook) -> None:
    _enrol(hook, "9003", sex="1", age_group="1")
    hook.export_records(records=["9003", "no-such-record"])
    assert hook.last_missing_records == ["no-such-record"]


def test_import_validation_errors_are_parsed(hook: RedcapHook) -> None:
    with pytest.raises(RedcapImportError) as info:
        hook.import_records(
            [{"record_id": "9004", "redcap_event_name": "screening_arm_1", "age": "old"}],
            record_id_field="record_id",
        )
    cause = info.value.__cause__
    assert isinstance(cause, RedcapValidationError)
    assert [(e.record, e.field, e.value) for e in cause.errors] == [("9004", "age", "old")]


def test_rights(redcap_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_REDCAP_DEFAULT", redcap_emulator.airflow_connection_json("monitor"))
    with pytest.raises(RedcapPermissionError, match="Randomize"):
        RedcapHook().randomize_record("9001", 48213)
    monkeypatch.setenv("AIRFLOW_CONN_REDCAP_DEFAULT", redcap_emulator.airflow_connection_json("expired_user"))
    with pytest.raises(RedcapAuthError, match="expired"):
        RedcapHook().get_project_info()


def test_dropped_randomize_is_not_retried(hook: RedcapHook, redcap_connection: Any) -> None:
    from airflow_provider_redcap.emulator import Fault

    _enrol(hook, "9005", sex="0", age_group="2")
    hook.get_version()
    redcap_connection.admin.add_fault(Fault(method="record.randomize", kind="drop_after_commit", times=1))
    with pytest.raises(RedcapConnectionError) as info:
        hook.randomize_record("9005", 48213)
    assert info.value.may_have_reached_server is True
    used = [a for a in redcap_connection.admin.allocations(48213) if a["is_used_by"] == "9005"]
    assert len(used) == 1  # committed once, and no second allocation from a retry


def test_url_without_api_folder_gets_a_hint(redcap_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    root = redcap_emulator.url.removesuffix("api/")  # http://127.0.0.1:PORT/
    conn = json.loads(redcap_emulator.airflow_connection_json())
    monkeypatch.setenv("AIRFLOW_CONN_REDCAP_DEFAULT", json.dumps({**conn, "host": root.rstrip("/")}))
    with pytest.raises(RedcapServerError) as info:
        RedcapHook(retry_wait=0).get_version()
    assert info.value.status_code == 501
    assert "REDCap's API URL ends in /api/" in str(info.value)
    assert "check the connection's host" in str(info.value)
