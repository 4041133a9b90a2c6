"""The filterLogic parser and evaluator on their own (no eval, REDCap's comparison rules)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_redcap.emulator.filter_logic import compile_filter
from airflow_provider_redcap.emulator.formats import ApiError
from airflow_provider_redcap.emulator.project import load_project

LONG = load_project(Path(__file__).parent / "projects" / "longitudinal")
ENROL, VISIT = 61001, 61007
DATA = {
    (ENROL, "", 1): {"pid": "1", "site": "0", "consent_date": "2025-03-01"},
    (VISIT, "", 1): {"pid": "1", "score": "12"},
}


def matches(logic: str, key: tuple[int, str, int] = (ENROL, "", 1)) -> bool:
    return compile_filter(logic, LONG)("1", key, DATA)


@pytest.mark.parametrize(
    ("logic", "expected"),
    [
        ("[site] = '0'", True),
        ("[site] = 0", True),
        ('[site] <> "0"', False),
        ("[site] != '1'", True),
        ("[score] = ''", True),  # the enrolment row has no score
        ("[visit_arm_1][score] > 10", True),
        ("[visit_arm_1][score] >= 13", False),
        ("[visit_arm_1][score] < 9 or ([site] = '0' AND [consent_date] <> '')", True),
        ("[consent_date] > '2025-01-01'", True),
        ("[visit_arm_1][score] > ''", False),  # ordering against a blank is false
    ],
)
def test_logic(logic: str, expected: bool) -> None:
    assert matches(logic) is expected


def test_rows_are_evaluated_in_their_own_event() -> None:
    assert matches("[score] = '12'", (VISIT, "", 1))
    assert not matches("[score] = '12'", (ENROL, "", 1))


@pytest.mark.parametrize(
    "logic", ["[site] =", "[nope] = 1", "[site] = 1 and", "__import__('os')", "[x][site] = 1"]
)
def test_invalid_logic_is_a_400(logic: str) -> None:
    with pytest.raises(ApiError) as err:
        compile_filter(logic, LONG)
    assert err.value.status == 400
