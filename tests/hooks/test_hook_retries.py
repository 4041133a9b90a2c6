"""Retry policy: what is retried, how often, and what never is (429, other 4xx, unsafe calls)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from common import payloads as p
from hook_testing import content_is, forms, json_response, set_connection
from scripted_server import scripted_server
from urllib3.connection import HTTPSConnection
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from airflow_provider_redcap.exceptions import (
    RedcapConnectionError,
    RedcapImportError,
    RedcapRateLimitError,
    RedcapRequestError,
    RedcapServerError,
)
from airflow_provider_redcap.hooks.redcap import RedcapHook

RANDOMIZE = content_is("record", action="randomize")


def refused() -> requests.exceptions.ConnectionError:
    """What requests raises when the TCP connection cannot be opened (nothing was sent)."""
    conn = HTTPSConnection("redcap.example.org", 443)
    reason = NewConnectionError(conn, "Failed to establish a new connection: [Errno 111] Connection refused")
    return requests.exceptions.ConnectionError(MaxRetryError(None, "/api/", reason))  # type: ignore[arg-type]


def dropped() -> requests.exceptions.ConnectionError:
    """The server closed the connection after the request was sent."""
    return requests.exceptions.ConnectionError(
        ProtocolError("Connection aborted.", ConnectionResetError(104))
    )


def test_429_is_one_request_and_no_retry(hook: RedcapHook, requests_mock: Any, sleeps: list[float]) -> None:
    requests_mock.post(p.API_URL, status_code=429, text=p.BANNED)
    with pytest.raises(RedcapRateLimitError):
        hook.get_metadata()
    assert requests_mock.call_count == 1
    assert sleeps == []


def test_400_is_not_retried(hook: RedcapHook, requests_mock: Any) -> None:
    requests_mock.post(
        p.API_URL, status_code=400, text=p.json_error(p.BAD_FIELDS), headers={"Content-Type": p.JSON}
    )
    with pytest.raises(RedcapRequestError):
        hook.get_metadata(fields=["foo", "bar"])
    assert requests_mock.call_count == 1


def test_502_then_success_is_retried(hook: RedcapHook, requests_mock: Any, sleeps: list[float]) -> None:
    requests_mock.post(
        p.API_URL,
        [
            {"status_code": 502, "text": p.GATEWAY_PAGE, "headers": {"Content-Type": p.HTML}},
            json_response(p.METADATA),
        ],
    )
    assert hook.get_metadata() == p.METADATA
    assert requests_mock.call_count == 2
    assert len(sleeps) == 1


@pytest.mark.parametrize("status", [408, 500, 503, 504])
def test_transient_statuses_retried_up_to_max_retries(
    make_hook: Any, requests_mock: Any, status: int
) -> None:
    hook = make_hook(max_retries=2)
    requests_mock.post(
        p.API_URL, status_code=status, text=p.json_error(p.OUT_OF_MEMORY), headers={"Content-Type": p.JSON}
    )
    with pytest.raises(RedcapServerError) as info:
        hook.get_metadata()
    assert info.value.status_code == status
    assert requests_mock.call_count == 3


def test_backoff_grows_with_jitter(make_hook: Any, requests_mock: Any, sleeps: list[float]) -> None:
    hook = make_hook(max_retries=3, retry_wait=1.0)
    requests_mock.post(p.API_URL, status_code=503, text="")
    with pytest.raises(RedcapServerError):
        hook.get_metadata()
    assert len(sleeps) == 3
    # initial 1 s doubling, plus up to 1 s of jitter: [1,2), [2,3), [4,5)
    for wait, low in zip(sleeps, (1.0, 2.0, 4.0), strict=True):
        assert low <= wait < low + 1.0


def test_501_is_not_retried(hook: RedcapHook, requests_mock: Any) -> None:
    requests_mock.post(
        p.API_URL, status_code=501, text=p.xml_error("The requested method is not implemented.")
    )
    with pytest.raises(RedcapServerError):
        hook.get_metadata()
    assert requests_mock.call_count == 1


@pytest.mark.parametrize(
    "failure",
    [refused, dropped, requests.exceptions.ReadTimeout, requests.exceptions.ConnectTimeout],
)
def test_reads_retry_connection_failures(hook: RedcapHook, requests_mock: Any, failure: Any) -> None:
    requests_mock.post(p.API_URL, [{"exc": failure()}, json_response(p.DAGS)])
    assert hook.get_dags() == p.DAGS
    assert requests_mock.call_count == 2


def test_max_retries_zero_means_one_attempt(make_hook: Any, requests_mock: Any) -> None:
    hook = make_hook(max_retries=0)
    requests_mock.post(p.API_URL, exc=requests.exceptions.ReadTimeout)
    with pytest.raises(RedcapConnectionError):
        hook.get_dags()
    assert requests_mock.call_count == 1


def test_truncated_body_is_an_ambiguous_connection_error(make_hook: Any, requests_mock: Any) -> None:
    hook = make_hook(max_retries=0)
    requests_mock.post(
        p.API_URL, exc=requests.exceptions.ChunkedEncodingError(ProtocolError("Response ended prematurely"))
    )
    with pytest.raises(RedcapConnectionError) as info:
        hook.get_dags()
    assert info.value.may_have_reached_server is True


def test_ssl_failure_not_retried(hook: RedcapHook, requests_mock: Any) -> None:
    requests_mock.post(p.API_URL, exc=requests.exceptions.SSLError("certificate verify failed"))
    with pytest.raises(RedcapConnectionError, match="verify_ssl"):
        hook.get_dags()
    assert requests_mock.call_count == 1


def test_https_to_a_plain_http_port_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # A real TLS handshake against a server that answers plain http.
    with scripted_server() as (url, script):
        set_connection(monkeypatch, host=url.replace("http://", "https://"))
        with pytest.raises(RedcapConnectionError) as info:
            RedcapHook(max_retries=0).get_dags()
    message = str(info.value)
    assert "the server does not answer https on this port" in message
    assert "check the URL's scheme and port" in message
    assert "verify_ssl" not in message
    assert script.bodies == []  # the handshake failed: nothing was sent


# -- randomize: never retried once the request may have reached REDCap --------------------------------


@pytest.mark.usefixtures("version_ok")
@pytest.mark.parametrize(
    "failure",
    [
        dropped,
        requests.exceptions.ReadTimeout,
        lambda: requests.exceptions.ChunkedEncodingError(ProtocolError("Response ended prematurely")),
    ],
)
def test_randomize_not_retried_after_send(hook: RedcapHook, requests_mock: Any, failure: Any) -> None:
    requests_mock.post(p.API_URL, additional_matcher=RANDOMIZE, exc=failure())
    with pytest.raises(RedcapConnectionError) as info:
        hook.randomize_record("1001", 48213)
    assert info.value.may_have_reached_server is True
    assert "read the record's target field" in str(info.value)
    assert len([f for f in forms(requests_mock) if f.get("action") == "randomize"]) == 1


@pytest.mark.usefixtures("version_ok")
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_randomize_5xx_not_retried(hook: RedcapHook, requests_mock: Any, status: int) -> None:
    requests_mock.post(p.API_URL, additional_matcher=RANDOMIZE, status_code=status, text=p.GATEWAY_PAGE)
    with pytest.raises(RedcapServerError) as info:
        hook.randomize_record("1001", 48213)
    assert info.value.status_code == status
    assert len([f for f in forms(requests_mock) if f.get("action") == "randomize"]) == 1


@pytest.mark.usefixtures("version_ok")
@pytest.mark.parametrize("failure", [refused, requests.exceptions.ConnectTimeout])
def test_randomize_retries_connect_phase_failures(hook: RedcapHook, requests_mock: Any, failure: Any) -> None:
    requests_mock.post(
        p.API_URL,
        additional_matcher=RANDOMIZE,
        response_list=[
            {"exc": failure()},
            {"text": p.RAND_OPEN_SUCCESS, "headers": {"Content-Type": p.JSON}},
        ],
    )
    assert hook.randomize_record("1001", 48213).value == "2"
    assert len([f for f in forms(requests_mock) if f.get("action") == "randomize"]) == 2


@pytest.mark.usefixtures("version_ok")
def test_randomize_connect_failure_exhausted_says_nothing_was_sent(
    hook: RedcapHook, requests_mock: Any
) -> None:
    requests_mock.post(p.API_URL, additional_matcher=RANDOMIZE, exc=refused())
    with pytest.raises(RedcapConnectionError) as info:
        hook.randomize_record("1001", 48213)
    assert info.value.may_have_reached_server is False
    assert "nothing was sent" in str(info.value)
    assert len([f for f in forms(requests_mock) if f.get("action") == "randomize"]) == 4


# -- imports ---------------------------------------------------------------------------------------------


def test_auto_numbered_import_not_retried_after_send(hook: RedcapHook, requests_mock: Any) -> None:
    requests_mock.post(p.API_URL, exc=requests.exceptions.ReadTimeout)
    with pytest.raises(RedcapImportError) as info:
        hook.import_records(
            [{"record_id": "x1", "age": 40}], force_auto_number=True, record_id_field="record_id"
        )
    assert requests_mock.call_count == 1
    assert isinstance(info.value.__cause__, RedcapConnectionError)
    assert "may or may not have been saved" in str(info.value)


def test_plain_import_is_retried(hook: RedcapHook, requests_mock: Any) -> None:
    requests_mock.post(
        p.API_URL,
        [
            {"exc": requests.exceptions.ReadTimeout()},
            {"text": json.dumps(["1001"]), "headers": {"Content-Type": p.JSON}},
        ],
    )
    result = hook.import_records([{"record_id": "1001", "age": 40}], record_id_field="record_id")
    assert result.record_ids == ("1001",)
    assert requests_mock.call_count == 2


# -- the low-level request(): the same safety for calls that are not safe to repeat -----------------------


RANDOMIZE_PARAMS = {"action": "randomize", "record": "1001", "randomization_id": 48213}
AUTO_IMPORT_PARAMS = {"data": json.dumps([{"record_id": "x1"}]), "forceAutoNumber": True}


@pytest.mark.parametrize(
    ("params", "failure"),
    [
        (RANDOMIZE_PARAMS, requests.exceptions.ReadTimeout),
        (RANDOMIZE_PARAMS, None),
        (AUTO_IMPORT_PARAMS, requests.exceptions.ReadTimeout),
    ],
)
def test_request_never_repeats_an_unsafe_call(
    hook: RedcapHook, requests_mock: Any, params: dict[str, Any], failure: Any
) -> None:
    if failure is None:
        requests_mock.post(p.API_URL, status_code=502, text=p.GATEWAY_PAGE)
    else:
        requests_mock.post(p.API_URL, exc=failure)
    with pytest.raises((RedcapConnectionError, RedcapServerError)):
        hook.request("record", **params)
    assert requests_mock.call_count == 1


def test_import_stopped_by_a_garbled_answer_may_have_saved_the_batch(
    hook: RedcapHook, requests_mock: Any
) -> None:
    # REDCap saved the batch, but the 200 answer does not parse: the batch is not known to be unsaved.
    requests_mock.post(
        p.API_URL,
        [
            {"text": json.dumps(["1001"]), "headers": {"Content-Type": p.JSON}},
            {"text": '["1002"', "headers": {"Content-Type": p.JSON}},
        ],
    )
    with pytest.raises(RedcapImportError) as info:
        hook.import_records(
            [{"record_id": "1001"}, {"record_id": "1002"}], batch_size=1, record_id_field="record_id"
        )
    assert info.value.imported_records == ["1001"]
    assert "may or may not have been saved" in str(info.value)
