"""Request parameters read the way PHP and REDCap read them."""

from __future__ import annotations

import pytest

from airflow_provider_redcap.emulator.params import Params


@pytest.mark.parametrize(
    "pairs",
    [
        [("fields[]", "a"), ("fields[]", "b")],
        [("fields[0]", "a"), ("fields[1]", "b")],
        [("fields", "a, b")],
        [("fields", " a,,b ")],
    ],
)
def test_array_forms(pairs: list[tuple[str, str]]) -> None:
    assert Params(pairs).list("fields") == ["a", "b"]


def test_last_scalar_wins_and_missing_list_is_empty() -> None:
    params = Params([("content", "metadata"), ("content", "record")])
    assert params.get("content") == "record"
    assert params.list("records") == []


@pytest.mark.parametrize(
    ("fmt", "return_format", "expected"),
    [
        ("", "", ("xml", "xml")),
        ("json", "", ("json", "json")),
        ("csv", "json", ("csv", "json")),
        ("yaml", "", ("xml", "xml")),
        ("json", "html", ("json", "xml")),
        ("odm", "", ("odm", "xml")),
    ],
)
def test_format_defaults(fmt: str, return_format: str, expected: tuple[str, str]) -> None:
    params = Params([("format", fmt), ("returnFormat", return_format)])
    assert (params.format, params.return_format) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("TRUE", True), ("0", False), ("yes", False), ("", False)],
)
def test_usual_flags(value: str, expected: bool) -> None:
    assert Params([("exportDataAccessGroups", value)]).flag("exportDataAccessGroups") is expected
