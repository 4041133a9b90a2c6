"""Client-side request throttle: at most N requests in any 60-second window.

REDCap bans a client IP permanently after 600 requests in a minute, so a sliding-window log (not
an average rate) is what keeps a hook safe. :meth:`Throttle.reserve` is pure bookkeeping that
returns how long to wait, so the async hook can ``await asyncio.sleep`` on it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW_SECONDS = 60.0


class Throttle:
    """Sliding-window limiter.

    :param requests_per_minute: the most requests allowed in any 60-second window.
    :param clock: monotonic clock in seconds (injectable for tests).
    :param sleep: blocking sleep used by :meth:`acquire` (injectable for tests).
    """

    def __init__(
        self,
        requests_per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if requests_per_minute < 1:
            raise ValueError("requests_per_minute must be at least 1")
        self.requests_per_minute = requests_per_minute
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Claim the next slot; return the seconds to wait before sending (0.0 when free now)."""
        with self._lock:
            now = self._clock()
            while self._sent and self._sent[0] <= now - WINDOW_SECONDS:
                self._sent.popleft()
            if len(self._sent) < self.requests_per_minute:
                start = now
            else:
                # The slot frees when the request N places back leaves the window.
                start = self._sent[-self.requests_per_minute] + WINDOW_SECONDS
            self._sent.append(start)
            return max(0.0, start - now)

    def acquire(self) -> float:
        """Block until a request may be sent; return the seconds waited."""
        delay = self.reserve()
        if delay > 0:
            self._sleep(delay)
        return delay
