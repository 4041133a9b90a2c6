"""The client-side throttle, driven by an injected clock (never by real time)."""

from __future__ import annotations

from typing import Any

import pytest
from common import payloads as p

from airflow_provider_redcap.hooks._throttle import Throttle


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _count_in_windows(times: list[float], window: float = 60.0) -> int:
    """The largest number of send times inside any half-open 60-second window."""
    return max(sum(1 for t in times if start <= t < start + window) for start in times)


def test_burst_up_to_the_limit_is_free() -> None:
    clock = FakeClock()
    throttle = Throttle(5, clock=clock, sleep=clock.sleep)
    assert [throttle.acquire() for _ in range(5)] == [0.0] * 5
    assert clock.slept == []


def test_request_over_the_limit_waits_for_the_window() -> None:
    clock = FakeClock()
    throttle = Throttle(3, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        throttle.acquire()
    clock.now += 10.0
    assert throttle.acquire() == pytest.approx(50.0)  # the first request leaves the window at +60 s
    assert clock.now == pytest.approx(1060.0)


def test_no_60_second_window_ever_exceeds_the_limit() -> None:
    clock = FakeClock()
    throttle = Throttle(10, clock=clock, sleep=clock.sleep)
    sent: list[float] = []
    for i in range(95):
        clock.now += (i % 7) * 0.9  # irregular arrivals, mostly faster than the limit
        throttle.acquire()
        sent.append(clock.now)
    assert _count_in_windows(sent) <= 10
    assert len(sent) == 95


def test_old_requests_leave_the_window() -> None:
    clock = FakeClock()
    throttle = Throttle(2, clock=clock, sleep=clock.sleep)
    throttle.acquire()
    throttle.acquire()
    clock.now += 61.0
    assert throttle.acquire() == 0.0


def test_reserve_is_non_blocking_bookkeeping_for_async_callers() -> None:
    clock = FakeClock()
    throttle = Throttle(1, clock=clock, sleep=clock.sleep)
    assert throttle.reserve() == 0.0
    assert throttle.reserve() == pytest.approx(60.0)
    assert throttle.reserve() == pytest.approx(120.0)
    assert clock.slept == []


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Throttle(0)


def test_hook_uses_the_configured_limit(make_hook: Any, requests_mock: Any) -> None:
    hook = make_hook(requests_per_minute=2)
    requests_mock.post(p.API_URL, text=p.VERSION, headers={"Content-Type": p.CSV})
    hook.get_conn()
    clock = FakeClock()
    hook._throttle = Throttle(hook.settings.requests_per_minute, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        hook.get_version()
    assert clock.slept == [pytest.approx(60.0)]
    assert hook.settings.requests_per_minute == 2


def test_default_limit_is_300(hook: Any) -> None:
    hook.get_conn()
    assert hook._throttle.requests_per_minute == 300
