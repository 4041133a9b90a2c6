"""Fixtures: an in-memory REDCap behind requests-mock, wired to ``redcap_default``."""

from __future__ import annotations

from typing import Any

import pytest
from common.fake_redcap import CONNECTION_JSON, FakeRedcap


@pytest.fixture
def fake(requests_mock: Any, monkeypatch: pytest.MonkeyPatch) -> FakeRedcap:
    monkeypatch.setenv("AIRFLOW_CONN_REDCAP_DEFAULT", CONNECTION_JSON)
    return FakeRedcap().install(requests_mock)
