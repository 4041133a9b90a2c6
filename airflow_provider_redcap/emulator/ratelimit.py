"""REDCap's IP rate limiter: above N requests in a minute from one IP, that IP is banned for good.

Off unless a limit is given. A ban is not a throttle: every later request from the IP gets HTTP 429
with REDCap's plain, unwrapped body, until the emulator is reset.
"""

from __future__ import annotations

import threading
import time
from collections import deque


def banned_message(ip: str) -> str:
    return f"Your IP address ({ip}) has been banned due to suspected abuse."


class RateLimiter:
    """:param per_minute: the allowed requests per minute per client IP; ``None`` or 0 disables it."""

    def __init__(self, per_minute: int | None = None) -> None:
        self.per_minute = per_minute or 0
        self._hits: dict[str, deque[float]] = {}
        self._banned: set[str] = set()
        self._lock = threading.Lock()

    def check(self, ip: str, now: float | None = None) -> bool:
        """Count one request; ``False`` when the IP is (now) banned."""
        if self.per_minute <= 0:
            return True
        now = time.monotonic() if now is None else now
        with self._lock:
            if ip in self._banned:
                return False
            hits = self._hits.setdefault(ip, deque())
            hits.append(now)
            while hits and hits[0] <= now - 60.0:
                hits.popleft()
            if len(hits) > self.per_minute:
                self._banned.add(ip)
                return False
            return True

    @property
    def banned(self) -> set[str]:
        with self._lock:
            return set(self._banned)

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()
            self._banned.clear()
