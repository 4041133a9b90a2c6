"""The API token never appears in logs (hook, requests, urllib3 at DEBUG), exception text, repr()
or results, across success and every error path."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from common import payloads as p
from hook_testing import set_connection
from scripted_server import Answer, Script, scripted_server

from airflow_provider_redcap.exceptions import RedcapConnectionError, RedcapError
from airflow_provider_redcap.hooks.redcap import RedcapHook

TOKEN = p.TOKEN
CSV, JSON, HTML = p.CSV, p.JSON, p.HTML


def _texts_of(exc: BaseException) -> list[str]:
    """str/repr of an exception, its attributes and its whole cause/context chain."""
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args), repr(vars(current))]
        current = current.__cause__ or current.__context__
    return texts


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Script]:
    with scripted_server() as (url, script):
        set_connection(monkeypatch, host=url, extra={"retry_wait": 0})
        yield script


VERSION = Answer(200, p.VERSION, CSV)

# Each scenario: the answers the server gives, and the call to make.
SCENARIOS: dict[str, tuple[list[Answer], Callable[[RedcapHook], Any]]] = {
    "version": ([VERSION], lambda h: h.get_version()),
    "project": (
        [Answer(200, '{"project_id": 1742, "project_title": "ASTER-3"}')],
        lambda h: h.get_project_info(),
    ),
    "test_connection_ok": (
        [
            VERSION,
            Answer(200, '{"project_id": 1742, "project_title": "ASTER-3", "in_production": 1}'),
            Answer(200, p.RAND_INVALID_RID),
            Answer(200, '{"count": 0}'),
        ],
        lambda h: h.test_connection(),
    ),
    "test_connection_missing_privileges": (
        [
            VERSION,
            Answer(200, '{"project_id": 1742, "project_title": "ASTER-3", "in_production": 1}'),
            Answer(403, p.json_error(p.NO_RANDOMIZE)),
            Answer(403, p.json_error(p.NO_IMPORT)),
        ],
        lambda h: h.test_connection(),
    ),
    "randomization_id_probe": (
        [VERSION, Answer(200, p.RAND_RECORD_MISSING)],
        lambda h: h.check_randomization_id(1),
    ),
    "test_connection_bad_token": ([Answer(403, p.json_error(p.BAD_TOKEN))], lambda h: h.test_connection()),
    "bad_token": ([Answer(403, p.json_error(p.BAD_TOKEN))], lambda h: h.get_metadata()),
    "expired": ([Answer(403, p.csv_error(p.EXPIRED), CSV)], lambda h: h.get_metadata()),
    "no_export": ([Answer(403, p.xml_error(p.NO_EXPORT), p.XML)], lambda h: h.get_dags()),
    "banned": ([Answer(429, p.BANNED, HTML)], lambda h: h.get_dags()),
    "sso_page": ([Answer(200, p.SSO_LOGIN_PAGE, HTML)], lambda h: h.get_dags()),
    "bad_json": ([Answer(200, "[{")], lambda h: h.get_dags()),
    "502_then_ok": ([Answer(502, p.GATEWAY_PAGE, HTML), Answer(200, "[]")], lambda h: h.get_dags()),
    "500s_exhausted": ([Answer(500, p.json_error(p.OUT_OF_MEMORY))] * 4, lambda h: h.get_dags()),
    "truncated": ([Answer(200, '[{"record_id": "1"}', truncate=True)], lambda h: h.export_records()),
    "dropped": ([Answer(drop=True)] * 4, lambda h: h.get_dags()),
    "import_ok": (
        [Answer(200, '["1001"]')],
        lambda h: h.import_records([{"record_id": "1001"}], record_id_field="record_id"),
    ),
    "import_400": (
        [Answer(400, p.json_error(p.IMPORT_VALIDATION_LINES))],
        lambda h: h.import_records([{"record_id": "1001", "age": "abc"}], record_id_field="record_id"),
    ),
    "randomize_ok": (
        [VERSION, Answer(200, p.RAND_CONCEALED_SUCCESS)],
        lambda h: h.randomize_record("1001", 48297),
    ),
    "randomize_refused": (
        [VERSION, Answer(200, p.RAND_MISSING_STRATA)],
        lambda h: h.randomize_record("1001", 1),
    ),
    "randomize_dropped": ([VERSION, Answer(drop=True)], lambda h: h.randomize_record("1001", 1)),
    "randomize_old_server": ([Answer(200, p.OLD_VERSION, CSV)], lambda h: h.randomize_record("1001", 1)),
    "export_missing": (
        [Answer(200, '[{"field_name": "record_id"}]'), Answer(200, '[{"record_id": "1"}]')],
        lambda h: h.export_records(records=["1", "2"]),
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_token_absent_everywhere(
    name: str,
    server: Script,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    hook_logs: list[dict[str, Any]],
) -> None:
    answers, call = SCENARIOS[name]
    server.answers.extend(answers)
    caplog.set_level(logging.DEBUG)
    for logger in ("urllib3", "requests", "airflow", "airflow_provider_redcap"):
        caplog.set_level(logging.DEBUG, logger=logger)
    hook = RedcapHook()
    hook._sleep = lambda _: None
    texts: list[str] = []
    try:
        result = call(hook)
        texts += [repr(result), str(getattr(result, "to_dict", dict)())]
    except RedcapError as exc:
        texts += _texts_of(exc)
    texts += [repr(hook), str(hook.settings), repr(hook.settings)]
    out, err = capfd.readouterr()
    texts += [caplog.text, out, err, repr(hook_logs)]
    # The request really carried the token (so its absence elsewhere means something).
    assert any(TOKEN in body for body in server.bodies)
    assert caplog.records, "the DEBUG capture saw nothing; the test would prove nothing"
    for text in texts:
        assert TOKEN not in text


def test_transport_exceptions_do_not_leak(
    monkeypatch: pytest.MonkeyPatch, requests_mock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    set_connection(monkeypatch, extra={"retry_wait": 0})
    caplog.set_level(logging.DEBUG)
    # Even an exception whose text somehow contains the token is redacted by the hook.
    requests_mock.post(p.API_URL, exc=requests.exceptions.ConnectionError(f"boom token={TOKEN}"))
    hook = RedcapHook(max_retries=0)
    with pytest.raises(RedcapConnectionError) as info:
        hook.get_dags()
    assert TOKEN not in str(info.value)
    assert TOKEN not in caplog.text


def test_malformed_token_never_echoed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bad = TOKEN[:-1] + "!"
    set_connection(monkeypatch, password=bad)
    caplog.set_level(logging.DEBUG)
    ok, message = RedcapHook().test_connection()
    assert ok is False
    assert TOKEN[:-1] not in message
    assert TOKEN[:-1] not in caplog.text
