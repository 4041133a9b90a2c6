"""Request parameters the way PHP and REDCap read them.

PHP keeps the last value of a repeated key, turns ``x[]``/``x[0]`` keys into arrays, and REDCap also
accepts comma-separated strings for its array parameters. Invalid option values fall back to defaults.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_ARRAY_KEY = re.compile(r"^(?P<name>[^\[\]]+)\[(?P<index>[^\]]*)\]$")


class Params:
    """Parsed form parameters of one API request.

    :param pairs: ``(key, value)`` pairs in body order.
    """

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._scalars: dict[str, str] = {}
        self._arrays: dict[str, list[tuple[str, str]]] = {}
        for key, value in pairs:
            match = _ARRAY_KEY.match(key)
            if match:
                self._arrays.setdefault(match["name"], []).append((match["index"], value))
            else:
                self._scalars[key] = value

    def get(self, name: str, default: str = "") -> str:
        return self._scalars.get(name, default)

    def has(self, name: str) -> bool:
        return name in self._scalars or name in self._arrays

    def list(self, name: str) -> list[str]:
        """An array parameter from ``x[]``, ``x[0]`` or a comma-separated ``x``; blanks dropped."""
        if name in self._arrays:
            items = self._arrays[name]
            if all(index.isdigit() for index, _ in items):
                # PHP orders by insertion; a repeated index keeps its first position and the last value.
                merged: dict[str, str] = {}
                for index, value in items:
                    merged[index] = value
                values = list(merged.values())
            else:
                values = [value for _, value in items]
            return [v.strip() for v in values if v.strip() != ""]
        raw = self._scalars.get(name, "")
        return [part.strip() for part in raw.split(",") if part.strip() != ""]

    def flag(self, name: str) -> bool:
        """REDCap's usual boolean: ``1`` or case-insensitive ``true``."""
        return self.get(name).strip().lower() in ("1", "true")

    def choice(self, name: str, allowed: Iterable[str], default: str) -> str:
        value = self.get(name).strip()
        return value if value in tuple(allowed) else default

    @property
    def format(self) -> str:
        value = self.get("format").strip().lower()
        return value if value in ("json", "csv", "xml", "odm") else "xml"

    @property
    def return_format(self) -> str:
        value = self.get("returnFormat").strip().lower()
        if not value:
            value = self.format
        return value if value in ("json", "csv", "xml") else "xml"
