"""The example DAGs parse without errors, without a metadata DB and without touching the network."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"
EXPECTED_DAG_IDS = {
    "redcap_import_and_randomize",
    "redcap_blinded_randomization",
    "redcap_daily_randomization",
}


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(EXAMPLE_DAGS))


def test_no_import_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}


def test_all_example_dags_found(dagbag: DagBag) -> None:
    assert set(dagbag.dag_ids) == EXPECTED_DAG_IDS


def test_parsing_makes_no_network_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a DAG file opened a network connection while being parsed")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    bag = DagBag(dag_folder=str(EXAMPLE_DAGS))
    assert bag.import_errors == {}


def test_import_dag_shape(dagbag: DagBag) -> None:
    dag = dagbag.dags["redcap_import_and_randomize"]
    assert set(dag.task_dict) == {
        "import_screening",
        "participant.wait_for_strata",
        "participant.randomize",
        "summarize",
        "fail_run_if_a_task_failed",
    }
    wait = dag.get_task("participant.wait_for_strata")
    assert wait.mode == "reschedule"
    assert wait.soft_fail is True
    assert dag.get_task("summarize").trigger_rule == "all_done"
    assert dag.params["randomization_id"] == 48213


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAG_IDS))
def test_a_failed_randomization_fails_the_run(dagbag: DagBag, dag_id: str) -> None:
    """The all_done report is a leaf; without the one_failed watcher a failed run would look green."""
    watcher = dagbag.dags[dag_id].get_task("fail_run_if_a_task_failed")
    assert watcher.trigger_rule == "one_failed"
    assert any(task_id.endswith("randomize") for task_id in watcher.upstream_task_ids)


def test_blinded_dag_never_reads_the_open_arm() -> None:
    source = (EXAMPLE_DAGS / "redcap_blinded_randomization.py").read_text(encoding="utf-8")
    assert "rand_arm" not in source


def test_daily_dag_schedule(dagbag: DagBag) -> None:
    dag = dagbag.dags["redcap_daily_randomization"]
    assert dag.catchup is False
    assert dag.max_active_runs == 1
