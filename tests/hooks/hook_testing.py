"""Helpers for the hook's unit tests (imported by tests; fixtures live in conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import pytest
from common.payloads import API_URL, JSON, TOKEN


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str = "redcap_default", **fields: Any) -> None:
    """Put a JSON connection in ``AIRFLOW_CONN_<ID>``; ``fields`` override host/password/extra."""
    conn: dict[str, Any] = {"conn_type": "redcap", "host": API_URL, "password": TOKEN}
    conn.update(fields)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def form_of(request: Any) -> dict[str, str]:
    """The form body of a recorded request as a dict (keys like ``fields[0]`` kept as sent)."""
    return dict(parse_qsl(request.text, keep_blank_values=True))


def forms(mocker: Any) -> list[dict[str, str]]:
    return [form_of(r) for r in mocker.request_history]


def content_is(content: str, **extra: str) -> Callable[[Any], bool]:
    """A requests-mock matcher on the form's ``content`` (and other) parameters."""

    def match(request: Any) -> bool:
        form = form_of(request)
        return form.get("content") == content and all(form.get(k) == v for k, v in extra.items())

    return match


def json_response(data: Any, status: int = 200) -> dict[str, Any]:
    return {"text": json.dumps(data), "status_code": status, "headers": {"Content-Type": JSON}}
