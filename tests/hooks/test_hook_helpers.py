"""Pure helpers shared with the async hook: form encoding, response classification, XML parsing."""

from __future__ import annotations

import datetime as dt

import pytest
from common import payloads as p

from airflow_provider_redcap.exceptions import (
    RedcapAuthError,
    RedcapMissingStratificationError,
    RedcapPermissionError,
    RedcapRateLimitError,
    RedcapResponseError,
    RedcapServerError,
    RedcapValidationError,
)
from airflow_provider_redcap.hooks._params import build_form, encode_params
from airflow_provider_redcap.hooks._responses import (
    RawResponse,
    classify_response,
    excerpt,
    parse_count,
    parse_import_ids,
    parse_missing_strata,
    parse_randomize_response,
    parse_version,
    randomize_refusal,
    tls_hint,
)


def test_build_form_order_and_defaults() -> None:
    form = build_form(p.TOKEN, "record", params={"records": ["1", "2"], "filterLogic": None})
    assert list(form) == ["token", "content", "format", "returnFormat", "records[0]", "records[1]"]
    assert (form["format"], form["returnFormat"]) == ("json", "json")


def test_encode_params() -> None:
    assert encode_params(
        {
            "a": True,
            "b": False,
            "c": 3,
            "d": dt.date(2026, 3, 2),
            "e": dt.datetime(2026, 3, 2, 14, 5),
            "f": [],
        }
    ) == {"a": "true", "b": "false", "c": "3", "d": "2026-03-02", "e": "2026-03-02 14:05"}


def test_format_other_than_json() -> None:
    form = build_form(p.TOKEN, "metadata", format="csv")
    assert (form["format"], form["returnFormat"]) == ("csv", "json")


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (RawResponse(403, p.json_error(p.BAD_TOKEN), p.JSON), RedcapAuthError),
        (RawResponse(403, p.csv_error(p.NO_RANDOMIZE), p.CSV), RedcapPermissionError),
        (RawResponse(429, p.BANNED, "text/html"), RedcapRateLimitError),
        (RawResponse(500, p.json_error(p.OUT_OF_MEMORY), p.JSON), RedcapServerError),
        (RawResponse(502, p.GATEWAY_PAGE, p.HTML), RedcapServerError),
        (RawResponse(200, p.SSO_LOGIN_PAGE, p.HTML), RedcapResponseError),
        (RawResponse(200, "not json", p.JSON), RedcapResponseError),
        (RawResponse(302, "", "", "https://sso.example.org/"), RedcapResponseError),
    ],
)
def test_classification(response: RawResponse, error: type[Exception]) -> None:
    with pytest.raises(error):
        classify_response(response, content="record")


def test_import_400_is_a_validation_error_only_for_imports() -> None:
    response = RawResponse(400, p.json_error(p.IMPORT_VALIDATION_LINES), p.JSON)
    with pytest.raises(RedcapValidationError) as info:
        classify_response(response, content="record", action="import")
    assert len(info.value.errors) == 4
    with pytest.raises(Exception) as other:  # noqa: PT011 - the point is which class it is not
        classify_response(response, content="record")
    assert not isinstance(other.value, RedcapValidationError)


def test_text_formats_return_text_but_still_detect_envelopes() -> None:
    assert (
        classify_response(RawResponse(200, "a,b\n1,2\n", p.CSV), content="record", format="csv")
        == "a,b\n1,2\n"
    )
    with pytest.raises(Exception, match="went wrong"):
        classify_response(RawResponse(200, p.csv_error("went wrong"), p.CSV), content="record", format="csv")


def test_excerpt_strips_tags_and_limits_length() -> None:
    text = excerpt("<html><head><title>Login</title></head><body>" + "<p>word</p>" * 200 + "</body></html>")
    assert text.startswith("Login | word word")
    assert len(text) <= 200
    assert "<" not in text


def test_missing_strata_parsing_variants() -> None:
    assert parse_missing_strata(p.RAND_MISSING_STRATA) == [("sex", 41), ("agecat", 41)]
    assert parse_missing_strata(
        "Cannot randomize. Missing stratification data for fields: sex (event 4102)"
    ) == [("sex", 4102)]
    assert parse_missing_strata("Cannot randomize. Missing stratification data for fields: odd") == [
        ("odd", None)
    ]


def test_refusal_detection_ignores_ordinary_bodies() -> None:
    assert randomize_refusal(p.RAND_OPEN_SUCCESS, record="1", randomization_id=1) is None
    refusal = randomize_refusal(f"  {p.RAND_MISSING_STRATA}\n", record="1", randomization_id=7)
    assert isinstance(refusal, RedcapMissingStratificationError)
    assert refusal.randomization_id == 7


def test_randomize_refusal_in_csv_format_body() -> None:
    with pytest.raises(RedcapMissingStratificationError):
        parse_randomize_response(
            RawResponse(200, p.RAND_MISSING_STRATA, p.CSV), record="1", randomization_id=1
        )


def test_import_ids_and_auto_ids() -> None:
    assert parse_import_ids(["1", "2"], auto_ids=False) == (["1", "2"], {})
    assert parse_import_ids(["323,10", "324,11"], auto_ids=True) == (
        ["323", "324"],
        {"10": "323", "11": "324"},
    )
    with pytest.raises(RedcapResponseError):
        parse_import_ids(["323"], auto_ids=True)
    with pytest.raises(RedcapResponseError):
        parse_import_ids({"count": 1}, auto_ids=False)


def test_count_must_be_an_integer() -> None:
    assert parse_count({"count": 2}, content="record") == 2
    with pytest.raises(RedcapResponseError):
        parse_count({"count": "two"}, content="record")


def test_version_parsing() -> None:
    assert parse_version(" 15.7.6\n") == (15, 7, 6)
    assert parse_version("14.6.9") < (14, 7, 0) <= parse_version("14.7.0")
    with pytest.raises(RedcapResponseError):
        parse_version("<html>")


def test_shared_retry_policy() -> None:
    from airflow_provider_redcap.exceptions import RedcapConnectionError, RedcapRequestError
    from airflow_provider_redcap.hooks._responses import should_retry

    sent = RedcapConnectionError("read timeout", may_have_reached_server=True)
    unsent = RedcapConnectionError("refused", may_have_reached_server=False)
    assert should_retry(sent, idempotent=True)
    assert not should_retry(sent, idempotent=False)
    assert should_retry(unsent, idempotent=False)
    for status in (408, 500, 502, 503, 504):
        assert should_retry(RedcapServerError("x", status_code=status), idempotent=True)
        assert not should_retry(RedcapServerError("x", status_code=status), idempotent=False)
    assert not should_retry(RedcapServerError("x", status_code=501), idempotent=True)
    assert not should_retry(RedcapRateLimitError("x", status_code=429), idempotent=True)
    assert not should_retry(RedcapRequestError("x", status_code=400), idempotent=True)


@pytest.mark.parametrize(
    ("error", "plain_http"),
    [
        ("[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)", True),
        ("[SSL] record layer failure (_ssl.c:1000)", True),  # OpenSSL 3.2+
        ("[SSL: HTTP_REQUEST] http request (_ssl.c:1000)", True),
        ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", False),
    ],
)
def test_tls_hint_tells_a_plain_http_port_from_a_certificate_problem(error: str, plain_http: bool) -> None:
    hint = tls_hint(error)
    assert ("does not answer https on this port" in hint) is plain_http
    assert ("verify_ssl" in hint) is not plain_http
