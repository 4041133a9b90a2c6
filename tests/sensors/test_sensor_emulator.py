"""The stratification sensor and its trigger against the REDCap emulator serving the demo project."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from airflow_provider_redcap.operators import RedcapImportRecordsOperator
from airflow_provider_redcap.sensors import RedcapStratificationSensor

pytestmark = pytest.mark.integration

OPEN_RID = 48213


def put(rows: list[dict[str, str]]) -> None:
    RedcapImportRecordsOperator(task_id="i", records=rows).execute(context={})


def screening(record: str, dag: str = "boston") -> dict[str, str]:
    return {
        "record_id": record,
        "redcap_event_name": "screening_arm_1",
        "redcap_data_access_group": dag,
        "age": "50",
    }


def baseline(record: str, **strata: str) -> dict[str, str]:
    return {"record_id": record, "redcap_event_name": "baseline_arm_1", **strata}


def sensor(records: Any, **kwargs: Any) -> RedcapStratificationSensor:
    return RedcapStratificationSensor(
        task_id="wait", records=records, randomization_id=OPEN_RID, target_field="rand_arm", **kwargs
    )


def test_waits_until_strata_are_filled(redcap_connection: Any) -> None:
    put([screening("001001"), baseline("001001", sex="0"), screening("001002", dag="denver")])
    task = sensor(["001001", "001002"])

    first = task.poke({})
    assert not first.is_done
    assert first.xcom_value["waiting"] == {
        "001001": ["age_group (baseline_arm_1)"],
        "001002": ["sex (baseline_arm_1)", "age_group (baseline_arm_1)"],  # screened only
    }
    assert first.xcom_value["not_found"] == []

    put([baseline("001001", age_group="1"), baseline("001002", sex="1", age_group="3")])
    second = task.poke({})
    assert second.is_done
    assert second.xcom_value == {
        "randomization_id": OPEN_RID,
        "complete": ["001001", "001002"],
        "waiting": {},
        "not_found": [],
    }


def test_record_that_does_not_exist_is_not_found_and_still_waited_for(redcap_connection: Any) -> None:
    put([screening("001001"), baseline("001001", sex="1", age_group="2")])
    result = sensor(["001001", "999999"]).poke({})
    assert not result.is_done
    assert result.xcom_value == {
        "randomization_id": OPEN_RID,
        "complete": ["001001"],
        "waiting": {},
        "not_found": ["999999"],
    }


def test_record_without_dag_waits(redcap_connection: Any) -> None:
    put([baseline("001003", sex="1", age_group="2")])
    result = sensor("001003").poke({})
    assert result.xcom_value["waiting"] == {"001003": ["data access group"]}


def test_unknown_stratum_field_fails(redcap_connection: Any) -> None:
    with pytest.raises(AirflowFailException, match="no_such_event"):
        sensor(["001001"], strata=[{"field": "sex", "event": "no_such_event"}]).poke({})


def test_unknown_randomization_id_fails_at_the_first_poke(redcap_connection: Any) -> None:
    put([screening("001001"), baseline("001001", sex="1", age_group="1")])
    allocations = redcap_connection.admin.allocations()
    known = {a["randomization_id"] for a in allocations}
    unknown = max(known) + 1
    with pytest.raises(
        AirflowFailException, match=f"randomization_id {unknown} is not a randomization model"
    ):
        RedcapStratificationSensor(
            task_id="wait", records=["001001"], randomization_id=unknown, target_field="rand_arm"
        ).poke({})
    assert redcap_connection.admin.allocations() == allocations


def test_known_randomization_id_check_allocates_nothing(redcap_connection: Any) -> None:
    put([screening("001001"), baseline("001001", sex="1", age_group="1")])
    allocations = redcap_connection.admin.allocations()
    result = sensor(["001001"]).poke({})
    assert result.is_done
    assert redcap_connection.admin.allocations() == allocations


def test_token_without_randomize_privilege_still_waits(
    redcap_connection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    put([screening("001001"), baseline("001001", sex="1", age_group="1")])
    monkeypatch.setenv("AIRFLOW_CONN_REDCAP_DEFAULT", redcap_connection.airflow_connection_json("monitor"))
    result = sensor(["001001"]).poke({})
    assert result.is_done


def test_deferrable_path_through_the_trigger(redcap_connection: Any) -> None:
    put([screening("001001"), baseline("001001", sex="1")])
    task = sensor(["001001"], deferrable=True, poke_interval=0.2, timeout=60)
    with pytest.raises(TaskDeferred) as info:
        task.execute({})
    trigger = info.value.trigger

    async def wait_while_the_site_enters_data() -> Any:
        waiting = asyncio.ensure_future(anext(trigger.run()))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        await asyncio.to_thread(put, [baseline("001001", age_group="2")])
        return await asyncio.wait_for(waiting, timeout=30)

    event = asyncio.run(wait_while_the_site_enters_data())
    assert event.payload == {
        "status": "success",
        "result": {"randomization_id": OPEN_RID, "complete": ["001001"], "waiting": {}, "not_found": []},
    }
    assert task.execute_complete({}, event.payload) == event.payload["result"]


class TestClassicProject:
    """A classic project: REDCap's project XML still names its one hidden event for every stratum."""

    @pytest.fixture
    def redcap_project_dir(self) -> Path:
        return Path(__file__).parents[1] / "emulator" / "projects" / "fidelity_classic_rand"

    def test_complete_strata_are_seen(self, redcap_connection: Any) -> None:
        # The model (project.json) is stratified by sex and region, with no DAG grouping.
        put([{"record_id": "1", "sex": "0", "region": "1"}, {"record_id": "2", "sex": "1"}])

        task = RedcapStratificationSensor(task_id="wait", records=["1", "2"], randomization_id=30917)

        result = task.poke({})

        assert result.xcom_value == {
            "randomization_id": 30917,
            "complete": ["1"],
            "waiting": {"2": ["region"]},
            "not_found": [],
        }
