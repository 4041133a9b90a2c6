"""Response bodies in REDCap's json/csv/xml shapes, and REDCap's error envelopes.

REDCap wraps a message only when the status is not 200: ``{"error":"…"}``, ``ERROR: …`` or
``<hash><error>…</error></hash>``. A 200 body is sent exactly as the method produced it, which is how
randomize's plain-text refusals reach clients unwrapped even with ``format=json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CONTENT_TYPES = {
    "json": "application/json; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "xml": "text/xml; charset=utf-8",
    "odm": "text/xml; charset=utf-8",
}
HTML_CONTENT_TYPE = "text/html; charset=UTF-8"
XML_DECL = '<?xml version="1.0" encoding="UTF-8" ?>'

DEFAULT_MESSAGES = {
    400: "There were errors with your request. If you are sending data, then it might be due to the data "
    "being misformatted.",
    401: "The API token was missing or incorrect",
    403: "You do not have permissions to use the API",
    404: "The requested URI was not found.",
    500: "The server encountered an error processing your request.",
    501: "The requested method is not implemented.",
}


@dataclass
class ApiResponse:
    """What the API answers: status, body and content type (already final, never re-wrapped)."""

    status: int
    body: str
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """A REDCap error answer; raised anywhere inside a method, rendered with the request's returnFormat.

    :param status: HTTP status (400, 403, ...).
    :param message: the unwrapped message.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str, return_format: str) -> ApiResponse:
    """Wrap ``message`` the way REDCap's sendResponse does for a non-200 status."""
    message = message or DEFAULT_MESSAGES.get(status, "")
    fmt = return_format if return_format in ("json", "csv") else "xml"
    if fmt == "json":
        body = message if message.startswith('{"error"') else to_json({"error": message})
    elif fmt == "csv":
        body = f"ERROR: {message}"
    else:
        body = f"{XML_DECL}<hash><error>{message}</error></hash>"
    return ApiResponse(status, body, CONTENT_TYPES[fmt])


def ok(body: str, fmt: str) -> ApiResponse:
    return ApiResponse(200, body, CONTENT_TYPES.get(fmt, CONTENT_TYPES["xml"]))


def to_json(data: Any) -> str:
    """JSON as PHP's ``json_encode`` writes it: compact, ``/`` escaped, non-ASCII as ``\\uXXXX``."""
    # "/" can only occur inside string literals in JSON text, so a plain replace is safe.
    return json.dumps(data, ensure_ascii=True, separators=(",", ":")).replace("/", "\\/")


def _php_csv_cell(value: str, delimiter: str) -> str:
    # PHP's fputcsv quotes a cell holding the delimiter, a quote, a line break, a tab or a space.
    if any(ch in value for ch in (delimiter, '"', "\n", "\r", "\t", " ")):
        return '"' + value.replace('"', '""') + '"'
    return value


def to_csv(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, delimiter: str = ","
) -> str:
    """Header plus rows, quoted as PHP's ``fputcsv`` quotes; an empty row list still gives the header."""
    cols = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    lines = []
    if cols:
        lines.append(delimiter.join(_php_csv_cell(c, delimiter) for c in cols))
    for row in rows:
        lines.append(delimiter.join(_php_csv_cell(_csv_value(row.get(c)), delimiter) for c in cols))
    return "".join(line + "\n" for line in lines)


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return ",".join(f"{k}:{v}" for k, v in value.items())
    return str(value)


def _xml_value(key: str, value: Any) -> str:
    if value is None or value == "":
        return f"<{key}></{key}>"
    if isinstance(value, Mapping):
        inner = "".join(_xml_value(k, v) for k, v in value.items())
        return f"<{key}>{inner}</{key}>"
    return f"<{key}><![CDATA[{value}]]></{key}>"


def xml_items(rows: Iterable[Mapping[str, Any]], root: str = "records") -> str:
    """``<root><item>…</item>…</root>`` with CDATA values, REDCap's shape for list exports."""
    items = "".join("<item>" + "".join(_xml_value(k, v) for k, v in row.items()) + "</item>" for row in rows)
    return f"{XML_DECL}\n<{root}>\n{items}\n</{root}>\n"


def xml_object(obj: Mapping[str, Any], root: str = "items") -> str:
    """A single object as REDCap's ``<items>`` body (project info, randomize)."""
    inner = "".join(_xml_value(k, v) for k, v in obj.items())
    return f"{XML_DECL}\n<{root}>\n{inner}\n</{root}>\n"


def render_rows(
    rows: Sequence[Mapping[str, Any]],
    fmt: str,
    columns: Sequence[str] | None = None,
    root: str = "records",
    delimiter: str = ",",
) -> ApiResponse:
    if fmt == "json":
        return ok(to_json(list(rows)), fmt)
    if fmt == "csv":
        return ok(to_csv(rows, columns, delimiter), fmt)
    return ok(xml_items(rows, root), "xml")


def render_object(obj: Mapping[str, Any], fmt: str, root: str = "items", delimiter: str = ",") -> ApiResponse:
    if fmt == "json":
        return ok(to_json(dict(obj)), fmt)
    if fmt == "csv":
        return ok(to_csv([obj], list(obj), delimiter), fmt)
    return ok(xml_object(obj, root), "xml")
