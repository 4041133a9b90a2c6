"""RedcapStratificationSensor: poke() against an in-memory REDCap (requests-mock), deferral, mapping."""

from __future__ import annotations

import json
from typing import Any

import pytest
from airflow.sdk.exceptions import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)
from common.fake_redcap import OPEN_RID, URL, FakeRedcap

from airflow_provider_redcap.sensors import RedcapStratificationSensor
from airflow_provider_redcap.triggers.stratification import RedcapStratificationTrigger


def sensor(**kwargs: Any) -> RedcapStratificationSensor:
    kwargs.setdefault("randomization_id", OPEN_RID)
    kwargs.setdefault("target_field", "rand_arm")
    return RedcapStratificationSensor(task_id="wait", **kwargs)


def exports(fake: FakeRedcap) -> list[dict[str, Any]]:
    return [c for c in fake.calls if c["content"] == "record" and "data" not in c and "action" not in c]


def test_defaults_to_reschedule_mode() -> None:
    assert sensor(records=["1"]).mode == "reschedule"


def test_waiting_then_done_as_strata_are_filled(fake: FakeRedcap) -> None:
    fake.add("001001", "screening_arm_1", age="30")
    fake.add("001001", "baseline_arm_1", sex="0")  # "0" is a value
    fake.dags["001001"] = "boston"
    fake.add("001002", "baseline_arm_1", sex="1", age_group="2")
    task = sensor(records=["001001", "001002", "001003"])

    first = task.poke({})

    assert not first.is_done
    assert first.xcom_value == {
        "randomization_id": OPEN_RID,
        "complete": [],
        "waiting": {
            "001001": ["age_group (baseline_arm_1)"],
            "001002": ["data access group"],
        },
        "not_found": ["001003"],
    }
    fake.add("001001", "baseline_arm_1", age_group="1")
    fake.dags["001002"] = "denver"
    fake.add_participant("001003", sex="1", age_group="3", dag="seattle")

    second = task.poke({})

    assert second.is_done
    assert second.xcom_value == {
        "randomization_id": OPEN_RID,
        "complete": ["001001", "001002", "001003"],
        "waiting": {},
        "not_found": [],
    }


def test_one_export_per_poke_with_only_strata_fields_and_dag(fake: FakeRedcap) -> None:
    fake.add_participant("001001")
    fake.add("001002", "baseline_arm_1", sex="1")
    task = sensor(records=["001001", "001002"])
    task.poke({})
    task.poke({})
    calls = exports(fake)
    assert len(calls) == 2
    # The strata are resolved and the randomization id checked once per sensor instance; each poke is
    # then a single export.
    assert [(c["content"], c.get("action")) for c in fake.calls] == [
        ("metadata", None),
        ("project_xml", None),
        ("project", None),
        ("version", None),
        ("record", "randomize"),
        ("record", None),
        ("record", None),
    ]
    assert calls[0]["fields"] == ["record_id", "sex", "age_group"]
    assert "events" not in calls[0]  # every event; each stratum is then read in its own
    assert calls[0]["exportDataAccessGroups"] == "true"
    assert calls[0]["records"] == ["001001", "001002"]


def test_record_with_only_a_screening_row_waits_after_one_export(fake: FakeRedcap) -> None:
    fake.add_participant("001001")
    fake.add("001002", "screening_arm_1", age="40")
    task = sensor(records=["001001", "001002"])
    task._spec()  # the strata, resolved on the first poke, are not part of the poke's own export
    before = len(exports(fake))

    result = task.poke({})

    assert len(exports(fake)) - before == 1
    # Reference 1.3: exports leave out records that do not exist, and 001002 has a row (screening).
    assert result.xcom_value["waiting"] == {
        "001002": ["sex (baseline_arm_1)", "age_group (baseline_arm_1)", "data access group"]
    }
    assert result.xcom_value["not_found"] == []
    assert result.xcom_value["complete"] == ["001001"]


def test_explicit_strata_without_dag(fake: FakeRedcap) -> None:
    fake.add("001001", "baseline_arm_1", sex="1")
    fake.add("001001", "screening_arm_1", eligible="0")
    task = RedcapStratificationSensor(
        task_id="wait",
        records="001001",
        strata=["sex", {"field": "eligible", "event": "screening_arm_1"}],
    )
    result = task.poke({})
    assert result.is_done
    call = exports(fake)[0]
    assert call["fields"] == ["record_id", "sex", "eligible"]
    assert "events" not in call  # "sex" names no event: all events are read
    assert call.get("exportDataAccessGroups") in (None, "false")
    assert fake.calls_of("project_xml") == []


def test_stratum_in_the_wrong_event_does_not_count(fake: FakeRedcap) -> None:
    fake.add("001001", "screening_arm_1", sex="1", age_group="1")
    fake.dags["001001"] = "boston"
    result = sensor(records=["001001"]).poke({})
    # The record exists (in screening), so it waits for strata in their own event.
    assert result.xcom_value["waiting"] == {"001001": ["sex (baseline_arm_1)", "age_group (baseline_arm_1)"]}
    assert result.xcom_value["not_found"] == []


def test_record_not_found_waits_apart_with_a_warning(
    fake: FakeRedcap, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.add_participant("001001", age_group="")
    fake.add("001002", "screening_arm_1", age="40")  # screened, no baseline data yet
    fake.dags["001002"] = "boston"

    result = sensor(records=["001001", "001002", "999999"]).poke({})

    assert not result.is_done
    assert result.xcom_value["waiting"] == {
        "001001": ["age_group (baseline_arm_1)"],
        "001002": ["sex (baseline_arm_1)", "age_group (baseline_arm_1)"],
    }
    assert result.xcom_value["not_found"] == ["999999"]
    # One export, in every event, tells the screened record from the one that does not exist.
    assert [c.get("events") for c in exports(fake)] == [None]
    assert exports(fake)[0]["records"] == ["001001", "001002", "999999"]
    logged = capsys.readouterr().out.splitlines()
    warnings = [line for line in logged if "[warning" in line]
    assert len(warnings) == 1
    assert "999999" in warnings[0]
    assert "001002" not in warnings[0]
    waiting = [line for line in logged if "[info" in line and "waiting for" in line]
    assert len(waiting) == 1
    assert "001002" in waiting[0]
    assert "999999" not in waiting[0]


def test_models_with_the_same_strata_need_no_target_field(fake: FakeRedcap) -> None:
    fake.add_participant("001001")
    result = RedcapStratificationSensor(task_id="w", records=["001001"]).poke({})
    assert result.is_done


def test_models_with_different_strata_need_a_target_field(fake: FakeRedcap) -> None:
    fake.models[OPEN_RID].strata = (("sex", "baseline_arm_1"),)
    with pytest.raises(AirflowFailException, match="target_field"):
        RedcapStratificationSensor(task_id="w", records=["001001"]).poke({})


def test_unknown_target_field_fails_at_once(fake: FakeRedcap) -> None:
    with pytest.raises(AirflowFailException, match="no randomization model"):
        sensor(records=["001001"], target_field="arm").poke({})


def test_unknown_stratum_field_fails_at_once(fake: FakeRedcap) -> None:
    # REDCap refuses the export (HTTP 400) and names the field.
    with pytest.raises(AirflowFailException, match="shoe_size"):
        sensor(records=["001001"], strata=["shoe_size"]).poke({})
    assert len(exports(fake)) == 1


def test_unknown_stratum_event_fails_at_once(fake: FakeRedcap) -> None:
    # Exports read every event, so the event is checked against the project's events instead.
    with pytest.raises(AirflowFailException, match="no_such_event"):
        sensor(records=["001001"], strata=[{"field": "sex", "event": "no_such_event"}]).poke({})
    assert exports(fake) == []


def test_transient_error_makes_the_poke_return_false(fake: FakeRedcap) -> None:
    fake.add_participant("001001")
    # The randomization id check (a 503 there only logs a warning), the export and the hook's one retry.
    fake.outages["record"] = 3
    task = sensor(records=["001001"])
    assert not task.poke({}).is_done
    assert task.poke({}).is_done


def test_stratum_the_token_cannot_export_fails_at_once(fake: FakeRedcap) -> None:
    # REDCap drops fields the user may not export; the record would wait for a value it holds.
    fake.add_participant("001001")
    fake.unexportable = {"sex"}
    with pytest.raises(AirflowFailException, match="sex"):
        sensor(records=["001001"]).poke({})


def test_permission_error_fails_at_once(fake: FakeRedcap) -> None:
    fake.forbidden = {"record"}
    with pytest.raises(AirflowFailException, match="permissions"):
        sensor(records=["001001"]).poke({})


def test_permanent_error_respects_soft_fail(fake: FakeRedcap) -> None:
    fake.forbidden = {"metadata"}
    task = sensor(records=["001001"], soft_fail=True, mode="poke")
    with pytest.raises(AirflowSkipException):
        task.execute({})


def test_permanent_error_respects_soft_fail_when_deferrable(fake: FakeRedcap) -> None:
    fake.forbidden = {"metadata"}
    task = sensor(records=["001001"], soft_fail=True, deferrable=True)
    with pytest.raises(AirflowSkipException):
        task.execute({})


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ("001001", ["001001"]),
        (["001001", "001001"], ["001001"]),
        ([["001001"]], ["001001"]),
        ('["7", "8"]', ["7", "8"]),
    ],
)
def test_records_accept_the_shapes_mapping_produces(
    fake: FakeRedcap, records: Any, expected: list[str]
) -> None:
    sensor(records=records).poke({})
    assert exports(fake)[0]["records"] == expected


def test_deferrable_hands_the_wait_to_the_trigger(fake: FakeRedcap) -> None:
    fake.add("001001", "baseline_arm_1", sex="1")
    task = sensor(records=["001001"], deferrable=True, poke_interval=30, timeout=600)

    with pytest.raises(TaskDeferred) as info:
        task.execute({})

    trigger = info.value.trigger
    assert isinstance(trigger, RedcapStratificationTrigger)
    assert info.value.method_name == "execute_complete"
    assert info.value.timeout.total_seconds() == 600
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_redcap.triggers.stratification.RedcapStratificationTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs  # JSON primitives only
    assert kwargs["records"] == ["001001"]
    assert kwargs["poke_interval"] == 30
    assert kwargs["spec"] == {
        "record_id_field": "record_id",
        "strata": [
            {"field": "sex", "event": "baseline_arm_1"},
            {"field": "age_group", "event": "baseline_arm_1"},
        ],
        "group_by_dag": True,
        "longitudinal": True,
    }


def test_deferrable_returns_at_once_when_complete(fake: FakeRedcap) -> None:
    fake.add_participant("001001")
    result = sensor(records=["001001"], deferrable=True).execute({})
    assert result["complete"] == ["001001"]


def test_execute_complete() -> None:
    task = sensor(records=["001001"], deferrable=True)
    result = {"randomization_id": OPEN_RID, "complete": ["001001"], "waiting": {}, "not_found": []}
    assert task.execute_complete({}, {"status": "success", "result": result}) == result
    with pytest.raises(AirflowFailException, match="boom"):
        task.execute_complete({}, {"status": "error", "message": "boom"})


def test_trigger_timeout_fails_or_skips_like_a_sensor_timeout() -> None:
    event = {"status": "timeout", "message": "001001 (sex (baseline_arm_1))", "result": {}}
    with pytest.raises(AirflowSensorTimeout, match="001001"):
        sensor(records=["001001"], deferrable=True).resume_execution("execute_complete", {"event": event}, {})
    with pytest.raises(AirflowSkipException):
        sensor(records=["001001"], deferrable=True, soft_fail=True).resume_execution(
            "execute_complete", {"event": event}, {}
        )


# -- the randomization id check (REDCap's order, reference 1.1: privilege, id, record) ----------------


def randomize_calls(fake: FakeRedcap) -> list[dict[str, Any]]:
    return fake.calls_of("record", "randomize")


def test_unknown_randomization_id_fails_at_the_first_poke(fake: FakeRedcap) -> None:
    fake.add_participant("001001")
    unknown = max(fake.models) + 1
    with pytest.raises(
        AirflowFailException, match=f"randomization_id {unknown} is not a randomization model"
    ):
        sensor(records=["001001"], randomization_id=unknown).poke({})
    assert exports(fake) == []
    assert fake.committed == []


def test_randomization_id_check_sends_a_record_that_cannot_exist_once_per_instance(
    fake: FakeRedcap,
) -> None:
    fake.add("001001", "baseline_arm_1", sex="1")
    task = sensor(records=["001001"])
    task.poke({})
    task.poke({})
    calls = randomize_calls(fake)
    assert len(calls) == 1
    assert calls[0]["randomization_id"] == str(OPEN_RID)
    assert calls[0]["record"].startswith("__airflow_provider_redcap_probe_")
    assert fake.committed == []


def test_no_randomization_id_no_check(fake: FakeRedcap) -> None:
    fake.add_participant("001001")
    assert sensor(records=["001001"], randomization_id=None).poke({}).is_done
    assert randomize_calls(fake) == []


def test_unknown_randomization_id_fails_even_with_soft_fail(fake: FakeRedcap) -> None:
    # A configuration error, not data that failed to arrive: a skip would leave the run green.
    task = sensor(records=["001001"], randomization_id=max(fake.models) + 1, soft_fail=True, mode="poke")
    with pytest.raises(AirflowFailException, match="not a randomization model"):
        task.execute({})
    assert exports(fake) == []


def test_unknown_randomization_id_fails_before_deferring(fake: FakeRedcap) -> None:
    fake.add("001001", "baseline_arm_1", sex="1")
    task = sensor(records=["001001"], randomization_id=max(fake.models) + 1, deferrable=True)
    with pytest.raises(AirflowFailException, match="not a randomization model"):
        task.execute({})
    soft = sensor(records=["001001"], randomization_id=max(fake.models) + 1, deferrable=True, soft_fail=True)
    with pytest.raises(AirflowFailException, match="not a randomization model"):
        soft.execute({})


def test_execute_checks_the_randomization_id_once(fake: FakeRedcap) -> None:
    fake.add_participant("001001")
    assert sensor(records=["001001"], mode="poke").execute({})["complete"] == ["001001"]
    assert len(randomize_calls(fake)) == 1


def test_rescheduled_pokes_do_not_check_the_randomization_id_again(fake: FakeRedcap) -> None:
    fake.add_participant("001001")
    context: Any = {"task_reschedule_count": 3}
    assert sensor(records=["001001"], mode="poke").execute(context)["complete"] == ["001001"]
    assert randomize_calls(fake) == []


def _randomize_answers(requests_mock: Any, status: int, body: str, content_type: str) -> None:
    """Answer Randomize calls only; everything else still reaches the fake REDCap."""
    requests_mock.post(
        URL,
        additional_matcher=lambda r: "action=randomize" in (r.text or ""),
        status_code=status,
        text=body,
        headers={"Content-Type": content_type},
    )


def test_token_without_randomize_privilege_skips_the_check(
    fake: FakeRedcap, requests_mock: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.add_participant("001001")
    _randomize_answers(
        requests_mock, 403, json.dumps({"error": "You do not have Randomize privileges"}), "application/json"
    )
    assert sensor(records=["001001"]).poke({}).is_done
    logged = capsys.readouterr().out.splitlines()
    assert any("[info" in line and "Randomize privilege" in line for line in logged)
    assert not any("[warning" in line for line in logged)


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (503, json.dumps({"error": "Service Unavailable"}), "application/json"),
        (200, "<html><head><title>Sign in</title></head><body>SSO</body></html>", "text/html"),
        (
            200,
            "Cannot randomize. Missing stratification data for fields: sex (event 4102)",
            "application/json",
        ),
    ],
    ids=["server_error", "html_page", "unexpected_refusal"],
)
def test_any_other_answer_to_the_check_warns_and_goes_on(
    fake: FakeRedcap,
    requests_mock: Any,
    capsys: pytest.CaptureFixture[str],
    status: int,
    body: str,
    content_type: str,
) -> None:
    fake.add_participant("001001")
    _randomize_answers(requests_mock, status, body, content_type)
    task = sensor(records=["001001"])
    assert task.poke({}).is_done
    assert task.poke({}).is_done
    warnings = [line for line in capsys.readouterr().out.splitlines() if "[warning" in line]
    assert any("Could not check randomization_id" in line for line in warnings)
    # Checked once per instance, and never repeated: a randomize call is not safe to send twice.
    assert len([r for r in requests_mock.request_history if "action=randomize" in (r.text or "")]) == 1
