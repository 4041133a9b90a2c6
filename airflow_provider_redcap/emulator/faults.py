"""Fault injection for reliability tests: per method and kind, with a probability, a seed and a count.

Kinds: ``drop_after_commit`` (the change is committed, then the connection is cut after the headers,
so the client sees an incomplete response), ``error_before_commit`` / ``error_after_commit`` (HTTP 500
or 502, without or after committing), ``delay`` (answer late) and ``html_200`` (a 200 HTML page, as a
login or maintenance page in front of REDCap would send; nothing is committed).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

KINDS = ("drop_after_commit", "error_before_commit", "error_after_commit", "delay", "html_200")
BEFORE_COMMIT = ("error_before_commit", "html_200", "delay")

HTML_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>REDCap</title></head><body>\n"
    "<h1>REDCap is temporarily unavailable</h1>\n"
    "<p>The system is undergoing maintenance. Please try again later.</p>\n</body></html>\n"
)
BAD_GATEWAY_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)


@dataclass
class Fault:
    """One injected fault.

    :param method: ``record.randomize``, ``record.import``, ``record.export``, ``record.delete``, a
        content name such as ``metadata``, or ``*`` for every request.
    :param kind: one of :data:`KINDS`.
    :param probability: chance of firing on each matching request.
    :param times: fire at most this many times (``None``: no limit).
    :param seed: seed of this fault's random generator, for reproducible runs.
    :param status: HTTP status for the error kinds (500 or 502).
    :param seconds: how long ``delay`` waits.
    """

    method: str
    kind: str
    probability: float = 1.0
    times: int | None = None
    seed: int | None = None
    status: int = 500
    seconds: float = 1.0
    fired: int = field(default=0, init=False)
    _rng: random.Random = field(default_factory=random.Random, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if self.status not in (500, 502):
            raise ValueError("fault status must be 500 or 502")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("fault probability must be between 0 and 1")
        self._rng = random.Random(self.seed)

    def matches(self, method: str) -> bool:
        return self.method in ("*", method) or (self.method == "record" and method.startswith("record."))

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "kind": self.kind,
            "probability": self.probability,
            "times": self.times,
            "seed": self.seed,
            "status": self.status,
            "seconds": self.seconds,
            "fired": self.fired,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        allowed = {"method", "kind", "probability", "times", "seed", "status", "seconds"}
        return cls(**{k: v for k, v in data.items() if k in allowed})

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """``method:kind[:probability[:seed]]`` as given on the command line."""
        parts = spec.split(":")
        if len(parts) < 2:
            raise ValueError(f"bad fault {spec!r}; expected method:kind[:probability[:seed]]")
        kind = parts[1]
        status = 500
        if kind.endswith(("_500", "_502")):
            kind, status = kind[:-4], int(kind[-3:])
        return cls(
            method=parts[0],
            kind=kind,
            status=status,
            probability=float(parts[2]) if len(parts) > 2 and parts[2] else 1.0,
            seed=int(parts[3]) if len(parts) > 3 and parts[3] else None,
        )


class FaultSet:
    """The active faults of one emulator (thread-safe)."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def active(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def draw(self, method: str) -> list[Fault]:
        """The faults that fire for this request (each counted once)."""
        fired = []
        with self._lock:
            for fault in self._faults:
                if not fault.matches(method) or (fault.times is not None and fault.fired >= fault.times):
                    continue
                if fault._rng.random() < fault.probability:
                    fault.fired += 1
                    fired.append(fault)
        return fired
