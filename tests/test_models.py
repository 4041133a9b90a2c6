from __future__ import annotations

import json

import pytest

from airflow_provider_redcap import exceptions
from airflow_provider_redcap.exceptions import RedcapRandomizationError
from airflow_provider_redcap.models import (
    ImportResult,
    RandomizationModel,
    RandomizationResult,
    StratumField,
)


def test_randomization_model_round_trips_through_json() -> None:
    model = RandomizationModel(
        position=2,
        target_field="kit_number",
        target_event="randomization_arm_1",
        strata=(StratumField("sex", "baseline_arm_1"), StratumField("age_group", "baseline_arm_1")),
        group_by_dag=True,
    )
    restored = RandomizationModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert restored == model


def test_classic_project_model_has_no_events() -> None:
    model = RandomizationModel.from_dict(
        {"target_field": "arm", "target_event": "", "strata": [{"field": "sex", "event": ""}]}
    )
    assert model.target_event is None
    assert model.strata == (StratumField("sex", None),)
    assert str(model.strata[0]) == "sex"


def test_randomization_result_is_json_serialisable() -> None:
    result = RandomizationResult(48297, "001001", "kit_number", "K-1007", "*", concealed=True)
    assert json.loads(json.dumps(result.to_dict())) == {
        "randomization_id": 48297,
        "record": "001001",
        "target_field": "kit_number",
        "value": "K-1007",
        "alternate_value": "*",
        "concealed": True,
    }


def test_import_result_counts_records() -> None:
    assert ImportResult(("1", "2", "3")).count == 3


@pytest.mark.parametrize(
    "error_class",
    [
        exceptions.RedcapRecordNotFoundError,
        exceptions.RedcapAlreadyRandomizedError,
        exceptions.RedcapMissingStratificationError,
        exceptions.RedcapNoAllocationsError,
        exceptions.RedcapInvalidRandomizationIdError,
        exceptions.RedcapRandomizationUnsupportedError,
    ],
)
def test_randomization_refusals_are_permanent_redcap_errors(
    error_class: type[RedcapRandomizationError],
) -> None:
    error = error_class("Cannot randomize.", record="7", randomization_id=48213)
    assert isinstance(error, exceptions.RedcapRandomizationError)
    assert isinstance(error, exceptions.RedcapError)
    assert error.retryable is False
    assert (error.record, error.randomization_id, error.status_code) == ("7", 48213, 200)


def test_transport_failures_are_retryable() -> None:
    assert exceptions.RedcapConnectionError("dropped").retryable is True
    assert exceptions.RedcapServerError("502", status_code=502).retryable is True
    assert exceptions.RedcapRateLimitError("banned", status_code=429).retryable is False
