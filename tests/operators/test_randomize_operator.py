"""RedcapRandomizeOperator against an in-memory REDCap (requests-mock), through the real hook."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.exceptions import AirflowException
from airflow.sdk.exceptions import AirflowFailException
from common.fake_redcap import CONCEALED_RID, OPEN_RID, TOKEN, FakeRedcap

from airflow_provider_redcap.links.redcap import RECORD_URL_XCOM_KEY
from airflow_provider_redcap.operators import RedcapRandomizeOperator
from airflow_provider_redcap.operators.randomize import PARTIAL_RESULTS_XCOM_KEY


class FakeTI:
    def __init__(self, fake: FakeRedcap | None = None) -> None:
        self.pushed: dict[str, Any] = {}
        self.calls_at_push: dict[str, int] = {}
        self._fake = fake

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value
        if self._fake is not None:
            self.calls_at_push[key] = len(self._fake.calls)


def open_op(**kwargs: Any) -> RedcapRandomizeOperator:
    kwargs.setdefault("target_field", "rand_arm")
    return RedcapRandomizeOperator(task_id="randomize", randomization_id=OPEN_RID, **kwargs)


def randomize_calls(fake: FakeRedcap) -> list[str]:
    return [c["record"] for c in fake.calls_of("record", "randomize")]


def test_open_model_randomizes_each_record_once_after_one_read(fake: FakeRedcap) -> None:
    fake.models[OPEN_RID].allocations = [("2", "R-0001"), ("1", "R-0002")]
    fake.add_participant("001001")
    fake.add_participant("001002", sex="1")

    results = open_op(records=["001001", "001002"]).execute(context={})

    # Metadata: 1 = Placebo, 2 = Low dose; the allocations were handed out in order.
    assert results == [
        {
            "record": "001001",
            "randomization_id": OPEN_RID,
            "target_field": "rand_arm",
            "target_event": "randomization_arm_1",
            "value": "2",
            "label": "Low dose",
            "alternate_value": "R-0001",
            "concealed": False,
            "status": "randomized",
        },
        {
            "record": "001002",
            "randomization_id": OPEN_RID,
            "target_field": "rand_arm",
            "target_event": "randomization_arm_1",
            "value": "1",
            "label": "Placebo",
            "alternate_value": "R-0002",
            "concealed": False,
            "status": "randomized",
        },
    ]
    assert randomize_calls(fake) == ["001001", "001002"]
    record_calls = [c for c in fake.calls if c["content"] == "record"]
    # One read of the target field for both records, before the first randomize call.
    assert record_calls[0].get("action") is None
    assert set(record_calls[0]["records"]) == {"001001", "001002"}
    assert "rand_arm" in record_calls[0]["fields"]
    assert [c.get("action") for c in record_calls[1:]] == ["randomize", "randomize"]
    # returnAlt goes as lowercase "true": REDCap ignores any other spelling.
    assert all(c["returnAlt"] == "true" for c in fake.calls_of("record", "randomize"))


def test_record_already_holding_a_value_is_existing_and_not_sent(fake: FakeRedcap) -> None:
    fake.add_participant("001001")
    fake.add("001001", "randomization_arm_1", rand_arm="3")

    result = open_op(record="001001").execute(context={})

    assert result["status"] == "existing"
    assert (result["value"], result["label"]) == ("3", "High dose")
    assert result["alternate_value"] is None
    assert randomize_calls(fake) == []


def test_target_field_the_token_cannot_export_fails_before_any_call(fake: FakeRedcap) -> None:
    # De-identified export rights drop unvalidated text fields, such as a concealed model's target.
    fake.add_participant("001001")
    fake.add("001001", "randomization_arm_1", kit_number="K-1033")
    fake.unexportable = {"kit_number"}

    with pytest.raises(AirflowFailException) as info:
        RedcapRandomizeOperator(
            task_id="r", randomization_id=CONCEALED_RID, record="001001", target_field="kit_number"
        ).execute(context={})

    assert "kit_number" in str(info.value)
    assert randomize_calls(fake) == []


def test_value_in_another_event_does_not_count(fake: FakeRedcap) -> None:
    fake.add_participant("001001")
    fake.add("001001", "week_4_arm_1", rand_arm="3")  # not the target event

    result = open_op(record="001001").execute(context={})

    assert result["status"] == "randomized"
    assert randomize_calls(fake) == ["001001"]


def test_dropped_connection_after_commit_is_recovered_without_second_call(fake: FakeRedcap) -> None:
    fake.models[OPEN_RID].allocations = [("3", "R-0009"), ("1", "R-0010")]
    fake.add_participant("001001")
    fake.faults["001001"] = ["drop_after_commit"]

    result = open_op(record="001001").execute(context={})

    assert fake.committed == [(OPEN_RID, "001001", "3")]
    assert randomize_calls(fake) == ["001001"]
    assert result["status"] == "recovered"
    assert (result["value"], result["label"]) == ("3", "High dose")
    assert fake.models[OPEN_RID].allocations == [("1", "R-0010")]


def test_already_randomized_answer_is_recovered(fake: FakeRedcap) -> None:
    fake.models[OPEN_RID].allocations = [("1", "R-0001")]
    fake.add_participant("001001")
    fake.faults["001001"] = ["commit_then_refuse"]

    result = open_op(record="001001").execute(context={})

    assert result["status"] == "recovered"
    assert result["value"] == "1"
    assert randomize_calls(fake) == ["001001"]


def test_error_answer_with_nothing_committed_is_sent_once_more(fake: FakeRedcap) -> None:
    fake.models[OPEN_RID].allocations = [("2", "R-0001"), ("3", "R-0002")]
    fake.add_participant("001001")
    fake.faults["001001"] = ["error_before_commit"]

    result = open_op(record="001001").execute(context={})

    assert randomize_calls(fake) == ["001001", "001001"]
    assert fake.committed == [(OPEN_RID, "001001", "2")]
    assert result["status"] == "randomized"
    assert result["value"] == "2"


@pytest.mark.parametrize("fault", ["timeout_still_running", "drop_before_commit"])
def test_no_answer_is_not_sent_again_in_the_same_run(fake: FakeRedcap, fault: str) -> None:
    # Without an answer REDCap may still be working on the call: an empty target field proves nothing.
    fake.models[OPEN_RID].allocations = [("2", "R-0001"), ("3", "R-0002")]
    fake.add_participant("001001")
    fake.faults["001001"] = [fault]

    with pytest.raises(AirflowException) as info:
        open_op(record="001001").execute(context={})

    assert not isinstance(info.value, AirflowFailException)  # an Airflow retry reads first
    assert "001001" in str(info.value)
    assert randomize_calls(fake) == ["001001"]
    assert len(fake.committed) <= 1


def test_lost_answer_without_in_task_retry_leaves_it_to_airflow(fake: FakeRedcap) -> None:
    fake.add_participant("001001")
    fake.faults["001001"] = ["error_before_commit"]

    with pytest.raises(AirflowException) as info:
        open_op(record="001001", retry_unconfirmed=False).execute(context={})

    # Retryable: not an AirflowFailException.
    assert not isinstance(info.value, AirflowFailException)
    assert "001001" in str(info.value)
    assert fake.committed == []
    # The Airflow retry is safe: it reads first, then randomizes once.
    result = open_op(record="001001").execute(context={})
    assert result["status"] == "randomized"
    assert len(fake.committed) == 1


def test_retried_task_after_commit_returns_existing(fake: FakeRedcap) -> None:
    fake.add_participant("001001")
    fake.faults["001001"] = ["drop_after_commit"]
    first = open_op(record="001001").execute(context={})

    second = open_op(record="001001").execute(context={})

    assert first["value"] == second["value"]
    assert second["status"] == "existing"
    assert len(fake.committed) == 1


def test_concealed_model_carries_only_the_randomization_number(
    fake: FakeRedcap, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.models[CONCEALED_RID].allocations = [("K-1062", "1")]
    fake.add_participant("001001")

    result = RedcapRandomizeOperator(
        task_id="r", randomization_id=str(CONCEALED_RID), record="001001", target_field="kit_number"
    ).execute(context={})

    assert result == {
        "record": "001001",
        "randomization_id": CONCEALED_RID,
        "target_field": "kit_number",
        "target_event": "randomization_arm_1",
        "value": "K-1062",
        "label": None,
        "alternate_value": None,
        "concealed": True,
        "status": "randomized",
    }
    logged = capsys.readouterr().out
    assert "K-1062" in logged
    for arm in ("Placebo", "Low dose", "High dose", "group", "allocated"):
        assert arm not in logged


def test_refusals_are_all_reported_and_successes_pushed_first(fake: FakeRedcap) -> None:
    fake.models[OPEN_RID].allocations = [("1", "R-0001")]
    fake.add_participant("001001")
    fake.add("001002", "screening_arm_1", age="50")  # no strata yet
    fake.dags["001002"] = "denver"
    fake.add_participant("001003")  # the allocation list will be empty by then
    fake.add_participant("001004", dag=None)
    ti = FakeTI()

    with pytest.raises(AirflowFailException) as info:
        open_op(records=["001001", "001002", "001003", "001004", "009999"]).execute(context={"ti": ti})

    message = str(info.value)
    assert "001002" in message
    assert "Missing stratification data" in message
    assert "sex (event 4102)" in message
    assert "001003" in message
    assert "No allocations available" in message
    assert "001004" in message
    assert "not assigned to a DAG" in message
    assert "009999" in message
    assert "Record does not exist" in message
    assert randomize_calls(fake) == ["001001", "001002", "001003", "001004", "009999"]
    assert [r["record"] for r in ti.pushed[PARTIAL_RESULTS_XCOM_KEY]] == ["001001"]
    assert ti.pushed[PARTIAL_RESULTS_XCOM_KEY][0]["value"] == "1"


def test_fail_fast_stops_at_the_first_refusal(fake: FakeRedcap) -> None:
    fake.add("001001", "screening_arm_1", age="50")
    fake.dags["001001"] = "boston"
    fake.add_participant("001002")

    with pytest.raises(AirflowFailException, match="not attempted"):
        open_op(records=["001001", "001002"], fail_fast=True).execute(context={})

    assert randomize_calls(fake) == ["001001"]
    assert fake.committed == []


def test_invalid_randomization_id_stops_the_task(fake: FakeRedcap) -> None:
    fake.add_participant("001001")
    fake.add_participant("001002")

    with pytest.raises(AirflowFailException, match="Invalid data supplied"):
        RedcapRandomizeOperator(
            task_id="r", randomization_id=777, records=["001001", "001002"], target_field="rand_arm"
        ).execute(context={})

    assert randomize_calls(fake) == ["001001"]


@pytest.mark.parametrize("bad", ["abc", "0", "-4", "", True])
def test_randomization_id_must_be_a_positive_number(fake: FakeRedcap, bad: Any) -> None:
    with pytest.raises(AirflowFailException, match="randomization_id"):
        RedcapRandomizeOperator(task_id="r", randomization_id=bad, record="1").execute(context={})
    assert fake.calls == []


def test_two_models_need_a_target_field(fake: FakeRedcap) -> None:
    fake.add_participant("001001")
    with pytest.raises(AirflowFailException, match="target_field"):
        RedcapRandomizeOperator(task_id="r", randomization_id=OPEN_RID, record="001001").execute(context={})
    assert randomize_calls(fake) == []


def test_single_model_is_discovered(fake: FakeRedcap) -> None:
    del fake.models[CONCEALED_RID]
    fake.add_participant("001001")
    result = RedcapRandomizeOperator(task_id="r", randomization_id=OPEN_RID, records="001001").execute(
        context={}
    )
    assert [(r["target_field"], r["target_event"]) for r in result] == [("rand_arm", "randomization_arm_1")]


def test_target_mismatch_fails_loudly(fake: FakeRedcap) -> None:
    fake.add_participant("001001")
    with pytest.raises(AirflowFailException, match="set target_field='rand_arm'"):
        RedcapRandomizeOperator(
            task_id="r", randomization_id=OPEN_RID, record="001001", target_field="kit_number"
        ).execute(context={})


def test_target_mismatch_stops_every_further_call_whatever_fail_fast(fake: FakeRedcap) -> None:
    # The open model 48213 allocates into rand_arm; the task is wrongly told kit_number.
    fake.models[OPEN_RID].allocations = [("2", "R-0001"), ("1", "R-0002")]
    for record in ("001001", "001002", "001003"):
        fake.add_participant(record)
    fake.faults["001001"] = ["error_before_commit"]  # would normally be sent once more
    ti = FakeTI()

    with pytest.raises(AirflowFailException) as info:
        RedcapRandomizeOperator(
            task_id="r",
            randomization_id=OPEN_RID,
            records=["001001", "001002", "001003"],
            target_field="kit_number",
            fail_fast=False,
        ).execute(context={"ti": ti})

    assert randomize_calls(fake) == ["001001", "001002"]
    assert fake.committed == [(OPEN_RID, "001002", "2")]
    message = str(info.value)
    assert message.startswith(f"RECORD 001002 WAS RANDOMIZED in randomization {OPEN_RID}")
    assert "value '2' (randomization number 'R-0001') into field 'rand_arm'" in message
    assert "0 record(s) done; 3 not:" in message
    assert "001003: not attempted" in message
    assert ti.pushed[PARTIAL_RESULTS_XCOM_KEY] == [
        {
            "record": "001002",
            "randomization_id": OPEN_RID,
            "target_field": "rand_arm",
            "target_event": "randomization_arm_1",
            "value": "2",
            "label": None,
            "alternate_value": "R-0001",
            "concealed": False,
            "status": "randomized_other_target",
        }
    ]


def test_already_randomized_with_empty_target_stops_the_task(fake: FakeRedcap) -> None:
    # A previous wrongly paired run left 001001's allocation in kit_number (model 48297).
    fake.add_participant("001001")
    fake.add_participant("001002")
    fake.add("001001", "randomization_arm_1", kit_number="K-1062")

    with pytest.raises(AirflowFailException) as info:
        RedcapRandomizeOperator(
            task_id="r", randomization_id=CONCEALED_RID, records=["001001", "001002"], target_field="rand_arm"
        ).execute(context={})

    assert randomize_calls(fake) == ["001001"]
    assert fake.committed == []
    message = str(info.value)
    assert "already randomized in randomization 48297, but target_field 'rand_arm' is empty" in message
    assert "kit_number @ randomization_arm_1" in message
    assert "001002: not attempted" in message


def test_transient_read_failure_is_retryable_and_sends_nothing(fake: FakeRedcap) -> None:
    fake.add_participant("001001")
    fake.outages["record"] = 2  # the export and its one retry

    with pytest.raises(AirflowException) as info:
        open_op(record="001001").execute(context={})

    assert not isinstance(info.value, AirflowFailException)
    assert randomize_calls(fake) == []


def test_link_url_is_pushed_before_any_randomize_call(fake: FakeRedcap) -> None:
    fake.add_participant("001001")
    ti = FakeTI(fake)

    open_op(record="001001").execute(context={"ti": ti})

    assert ti.pushed[RECORD_URL_XCOM_KEY] == (
        "https://redcap.example.org/redcap/redcap_v15.7.6/DataEntry/record_home.php?pid=1742&id=001001"
    )
    first_randomize = next(i for i, c in enumerate(fake.calls) if c.get("action") == "randomize")
    assert ti.calls_at_push[RECORD_URL_XCOM_KEY] <= first_randomize


def test_record_and_records_are_exclusive() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        RedcapRandomizeOperator(task_id="r", randomization_id=1, record="1", records=["2"])
    with pytest.raises(ValueError, match="exactly one"):
        RedcapRandomizeOperator(task_id="r", randomization_id=1)


@pytest.mark.parametrize("records", [[], "[]"], ids=["list", "rendered_json"])
def test_empty_records_from_upstream_randomize_nothing(
    fake: FakeRedcap, records: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # A daily run that found nobody: records=XComArg renders to an empty list.
    assert open_op(records=records).execute(context={"ti": FakeTI(fake)}) == []
    assert fake.calls == []
    assert "nothing to randomize" in capsys.readouterr().out


def test_record_rendered_to_no_id_names_the_parameter(fake: FakeRedcap) -> None:
    with pytest.raises(
        AirflowFailException, match=r"record rendered to no record id \(record=\[\], records=None\)"
    ):
        open_op(record=[]).execute(context={})
    assert fake.calls == []


def test_record_and_records_both_none_at_run_time_names_both(fake: FakeRedcap) -> None:
    # Constructed with records=, then rendered to None (render_template_as_native_obj).
    op = open_op(records=["001001"])
    op.records = None
    with pytest.raises(AirflowFailException, match="record and records are both None"):
        op.execute(context={})
    assert fake.calls == []


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [({"record": " "}, "record=' '"), ({"records": ["001", ""]}, "records=['001', '']")],
)
def test_blank_record_id_names_the_parameter(fake: FakeRedcap, kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(AirflowFailException) as info:
        open_op(**kwargs).execute(context={})
    assert str(info.value).startswith(f"{named}: ")
    assert "blank" in str(info.value)


def test_duplicate_records_are_randomized_once(fake: FakeRedcap) -> None:
    fake.add_participant("001001")
    results = open_op(records=["001001", "001001"]).execute(context={})
    assert [r["record"] for r in results] == ["001001"]
    assert randomize_calls(fake) == ["001001"]


def test_token_never_appears_in_messages_or_logs(
    fake: FakeRedcap, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.add_participant("001001")
    fake.add("001002", "screening_arm_1", age="50")
    fake.faults["001001"] = ["drop_after_commit"]
    ti = FakeTI()
    with pytest.raises(AirflowFailException) as info:
        open_op(records=["001001", "001002"]).execute(context={"ti": ti})
    assert TOKEN not in str(info.value)
    assert TOKEN not in capsys.readouterr().out
    assert TOKEN not in repr(ti.pushed)
