"""Fixtures for the hook's unit tests: an env-var connection and a hook that never sleeps."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from common.payloads import API_URL, CSV, VERSION
from hook_testing import content_is, set_connection

from airflow_provider_redcap.hooks.redcap import RedcapHook


@pytest.fixture
def connection(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch)


@pytest.fixture
def sleeps() -> list[float]:
    """Back-off sleeps the hook asked for (it never really sleeps in tests)."""
    return []


@pytest.fixture
def make_hook(connection: None, sleeps: list[float]) -> Callable[..., RedcapHook]:
    def make(**kwargs: Any) -> RedcapHook:
        kwargs.setdefault("retry_wait", 0.001)
        hook = RedcapHook(**kwargs)
        hook._sleep = sleeps.append
        return hook

    return make


@pytest.fixture
def hook(make_hook: Callable[..., RedcapHook]) -> Iterator[RedcapHook]:
    h = make_hook()
    yield h
    h.close()


@pytest.fixture
def version_ok(requests_mock: Any) -> None:
    """The version gate passes (randomize needs REDCap >= 14.7.0)."""
    requests_mock.post(
        API_URL, additional_matcher=content_is("version"), text=VERSION, headers={"Content-Type": CSV}
    )


@pytest.fixture
def hook_logs() -> Iterator[list[dict[str, Any]]]:
    """Every structlog event (the hook's own log, at DEBUG and up) emitted during the test."""
    import logging

    import structlog
    from structlog.testing import capture_logs

    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as captured:
            yield captured
    finally:
        structlog.configure(**saved)
