"""The "REDCap record" extra link."""

from __future__ import annotations

from unittest import mock

import pytest

from airflow_provider_redcap.links.redcap import (
    RECORD_URL_XCOM_KEY,
    RedcapRecordLink,
    record_url,
    redcap_base_url,
)
from airflow_provider_redcap.operators import RedcapRandomizeOperator


@pytest.mark.parametrize(
    ("api_url", "base"),
    [
        ("https://redcap.example.org/api/", "https://redcap.example.org/"),
        ("https://redcap.example.org/redcap/api/", "https://redcap.example.org/redcap/"),
        ("http://127.0.0.1:8123/api", "http://127.0.0.1:8123/"),
    ],
)
def test_base_url_strips_the_api_folder(api_url: str, base: str) -> None:
    assert redcap_base_url(api_url) == base


def test_record_and_dashboard_urls() -> None:
    api = "https://redcap.example.org/redcap/api/"
    assert record_url(api, "15.7.6", 1742, "001 017/a") == (
        "https://redcap.example.org/redcap/redcap_v15.7.6/DataEntry/record_home.php?pid=1742&id=001%20017%2Fa"
    )
    assert record_url(api, "15.7.6", 1742) == (
        "https://redcap.example.org/redcap/redcap_v15.7.6/DataEntry/record_status_dashboard.php?pid=1742"
    )


def test_link_reads_the_pushed_url() -> None:
    link = RedcapRecordLink()
    assert link.name == "REDCap record"
    with mock.patch("airflow.sdk.execution_time.xcom.XCom.get_value", return_value="https://x/y") as get:
        assert link.get_link(mock.Mock(), ti_key=mock.sentinel.key) == "https://x/y"
    get.assert_called_once_with(ti_key=mock.sentinel.key, key=RECORD_URL_XCOM_KEY)
    with mock.patch("airflow.sdk.execution_time.xcom.XCom.get_value", return_value=None):
        assert link.get_link(mock.Mock(), ti_key=mock.sentinel.key) == ""


def test_randomize_operator_offers_the_link() -> None:
    op = RedcapRandomizeOperator(task_id="r", randomization_id=1, record="1")
    assert [link.name for link in op.operator_extra_links] == ["REDCap record"]
