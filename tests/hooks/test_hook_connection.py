"""Connection settings: URL rules, token shape, extras coercion, masking, per-request TLS/proxy/timeout."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from common.payloads import API_URL, CSV, TOKEN, VERSION
from hook_testing import set_connection

from airflow_provider_redcap.exceptions import RedcapConfigurationError
from airflow_provider_redcap.hooks._connection import build_settings, validate_api_url, validate_token
from airflow_provider_redcap.hooks.redcap import RedcapHook


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("https://redcap.example.org/api/", "https://redcap.example.org/api/"),
        ("https://redcap.example.org/api", "https://redcap.example.org/api/"),
        ("  https://redcap.example.org/redcap/api/  ", "https://redcap.example.org/redcap/api/"),
        ("HTTPS://redcap.example.org:8443/api", "https://redcap.example.org:8443/api/"),
        ("http://127.0.0.1:8123/api/", "http://127.0.0.1:8123/api/"),
        ("http://127.9.9.9/api", "http://127.9.9.9/api/"),
        ("http://localhost:8123/api/", "http://localhost:8123/api/"),
        ("http://[::1]:8123/api/", "http://[::1]:8123/api/"),
    ],
)
def test_accepted_urls(host: str, expected: str) -> None:
    assert validate_api_url(host) == expected


@pytest.mark.parametrize(
    "host", ["http://redcap.example.org/api/", "http://10.0.0.5/api/", "http://128.0.0.1/api/"]
)
def test_plain_http_refused_for_non_loopback_hosts(host: str) -> None:
    with pytest.raises(RedcapConfigurationError, match="Plain http:// is refused") as info:
        validate_api_url(host)
    assert "unencrypted" in str(info.value)


def test_versioned_documentation_folder_gets_the_right_form() -> None:
    with pytest.raises(RedcapConfigurationError) as info:
        validate_api_url("https://redcap.example.org/redcap/redcap_v15.7.6/API/")
    assert "https://redcap.example.org/redcap/api/" in str(info.value)
    assert "versioned" in str(info.value)


@pytest.mark.parametrize(
    "host",
    [
        "",
        None,
        "ftp://redcap.example.org/api/",
        "https://user:pw@redcap.example.org/api/",
        "https://x/api/?a=1",
    ],
)
def test_bad_urls(host: str | None) -> None:
    with pytest.raises(RedcapConfigurationError):
        validate_api_url(host)


def test_uri_style_host_and_schema_are_rebuilt() -> None:
    # Airflow splits redcap://:TOKEN@redcap.example.org/api/ into host + schema.
    assert validate_api_url("redcap.example.org", schema="api/") == "https://redcap.example.org/api/"
    assert validate_api_url("redcap.example.org", schema="redcap/api", port=8443) == (
        "https://redcap.example.org:8443/redcap/api/"
    )


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("redcap.example.org/api/", None, "https://redcap.example.org/api/"),
        ("redcap.example.org/redcap/api", None, "https://redcap.example.org/redcap/api/"),
        ("redcap.example.org/api/", 8443, "https://redcap.example.org:8443/api/"),
        ("redcap.example.org:8443/api/", None, "https://redcap.example.org:8443/api/"),
        ("https://redcap.example.org/api/", 8443, "https://redcap.example.org:8443/api/"),
        ("https://redcap.example.org:8443/api/", 8443, "https://redcap.example.org:8443/api/"),
    ],
)
def test_scheme_less_host_and_port_field(host: str, port: int | None, expected: str) -> None:
    assert validate_api_url(host, port=port) == expected


def test_port_field_contradicting_the_url_is_refused() -> None:
    with pytest.raises(RedcapConfigurationError, match="8443"):
        validate_api_url("https://redcap.example.org:9000/api/", port=8443)


def test_uri_connection_with_port_and_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    # Airflow parses this into host redcap.example.org, port 8443, schema "api/".
    monkeypatch.setenv("AIRFLOW_CONN_REDCAP_DEFAULT", f"redcap://:{TOKEN}@redcap.example.org:8443/api/")
    assert RedcapHook().settings.url == "https://redcap.example.org:8443/api/"


@pytest.mark.parametrize(
    ("host", "warned"),
    [
        ("http://127.0.0.1:8123", True),
        ("https://redcap.example.org/redcap/", True),
        ("https://redcap.example.org/redcap/api/", False),
        ("https://redcap.example.org/API", False),
    ],
)
def test_url_not_ending_in_api_is_warned_about_not_refused(
    monkeypatch: pytest.MonkeyPatch, hook_logs: list[dict[str, Any]], host: str, warned: bool
) -> None:
    set_connection(monkeypatch, host=host)
    url = RedcapHook().settings.url
    warnings = [e["event"] for e in hook_logs if e["log_level"] == "warning" and "/api/" in e["event"]]
    assert bool(warnings) is warned
    if warned:
        assert url in warnings[0]


def test_token_is_stripped() -> None:
    assert validate_token(f"  {TOKEN}\n") == TOKEN


@pytest.mark.parametrize(
    ("value", "length"),
    [
        ("AB12", 4),
        ("A1B2C3D4E5F6A7B8C9D0E1F2A3B4C5D6A1B2C3D4E5F6A7B8C9D0E1F2A3B4C5D6", 64),
        ("A1B2C3D4E5F6A7B8C9D0E1F2A3B4C5D!", 32),
        ("Ä1B2C3D4E5F6A7B8C9D0E1F2A3B4C5D6", 32),
    ],
)
def test_malformed_token_message_states_shape_and_length_only(value: str, length: int) -> None:
    with pytest.raises(RedcapConfigurationError) as info:
        validate_token(value)
    message = str(info.value)
    assert "32" in message
    assert f"has {length} characters" in message
    # No character of the value: every 3-character window of the token is absent from the message.
    windows = {value[i : i + 3] for i in range(len(value) - 2)}
    assert not any(w in message for w in windows)


def test_missing_token() -> None:
    with pytest.raises(RedcapConfigurationError, match="no API token"):
        validate_token("   ")


def test_uri_extras_arrive_as_strings_and_are_coerced() -> None:
    settings = build_settings(
        API_URL,
        TOKEN,
        {"verify_ssl": "false", "timeout": "12.5", "max_retries": "5", "requests_per_minute": "120"},
    )
    assert settings.verify is False
    assert settings.timeout == 12.5
    assert settings.max_retries == 5
    assert settings.requests_per_minute == 120


def test_defaults() -> None:
    settings = build_settings(API_URL, TOKEN, {})
    assert (settings.verify, settings.timeout, settings.max_retries, settings.requests_per_minute) == (
        True,
        30.0,
        3,
        300,
    )


def test_overrides_win_over_extras() -> None:
    settings = build_settings(API_URL, TOKEN, {"timeout": 5, "max_retries": 1}, timeout=9, max_retries=0)
    assert (settings.timeout, settings.max_retries) == (9, 0)


@pytest.mark.parametrize(
    "extra",
    [
        {"verify_ssl": "maybe"},
        {"timeout": "soon"},
        {"timeout": 0},
        {"max_retries": -1},
        {"max_retries": "2.5"},
        {"requests_per_minute": 600},
        {"requests_per_minute": 0},
        {"proxies": "not json"},
        {"proxies": {"https": 3128}},
        {"verify_ssl": False, "ca_bundle": "/etc/ssl/ca.pem"},
    ],
)
def test_bad_extras(extra: dict[str, Any]) -> None:
    with pytest.raises(RedcapConfigurationError):
        build_settings(API_URL, TOKEN, extra)


def test_ca_bundle_becomes_verify_and_proxies_parse_from_json_string() -> None:
    settings = build_settings(
        API_URL, TOKEN, {"ca_bundle": "/etc/ssl/private-ca.pem", "proxies": '{"https": "http://proxy:3128"}'}
    )
    assert settings.verify == "/etc/ssl/private-ca.pem"
    assert settings.proxies == {"https": "http://proxy:3128"}


def test_repr_never_shows_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch)
    hook = RedcapHook()
    settings = hook.settings
    assert TOKEN not in repr(settings)
    assert TOKEN not in str(settings)
    assert TOKEN not in repr(hook)
    assert "redcap.example.org" in repr(hook)


def test_construction_does_no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    with mock.patch.object(RedcapHook, "get_connection") as get_connection:
        RedcapHook("does_not_exist")
    get_connection.assert_not_called()


def test_token_registered_with_secret_masker(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, password=f" {TOKEN} ")
    with mock.patch("airflow.sdk.log.mask_secret") as mask_secret:
        assert RedcapHook().settings.token == TOKEN
    assert mock.call(TOKEN) in mask_secret.call_args_list


def test_malformed_token_fails_before_any_request(
    monkeypatch: pytest.MonkeyPatch, requests_mock: Any
) -> None:
    set_connection(monkeypatch, password="short")
    with pytest.raises(RedcapConfigurationError):
        RedcapHook().get_version()
    assert requests_mock.call_count == 0


def _version(requests_mock: Any) -> None:
    requests_mock.post(API_URL, text=VERSION, headers={"Content-Type": CSV})


def test_verify_timeout_proxies_passed_on_every_request(
    monkeypatch: pytest.MonkeyPatch, requests_mock: Any
) -> None:
    set_connection(
        monkeypatch,
        extra={
            "ca_bundle": "/etc/ssl/private-ca.pem",
            "timeout": "7",
            "proxies": {"https": "http://proxy:3128"},
        },
    )
    _version(requests_mock)
    hook = RedcapHook()
    hook.get_version()
    hook.get_version()
    assert requests_mock.call_count == 2
    for request in requests_mock.request_history:
        assert request.verify == "/etc/ssl/private-ca.pem"
        assert request.timeout == 7.0
        assert request.proxies == {"https": "http://proxy:3128"}


def test_worker_wide_ca_bundle_variable_cannot_override_verify(
    monkeypatch: pytest.MonkeyPatch, requests_mock: Any
) -> None:
    import requests

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/tmp/attacker-ca.pem")
    set_connection(monkeypatch)
    _version(requests_mock)
    RedcapHook().get_version()
    assert requests_mock.last_request.verify == requests.utils.DEFAULT_CA_BUNDLE_PATH


def test_verify_false_is_sent_as_false(monkeypatch: pytest.MonkeyPatch, requests_mock: Any) -> None:
    set_connection(monkeypatch, extra={"verify_ssl": "false"})
    _version(requests_mock)
    RedcapHook().get_version()
    assert requests_mock.last_request.verify is False


def test_one_session_per_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch)
    hook = RedcapHook()
    assert hook.get_conn() is hook.get_conn()
    assert RedcapHook().get_conn() is not hook.get_conn()


def test_uri_connection_with_encoded_url(monkeypatch: pytest.MonkeyPatch, requests_mock: Any) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_REDCAP_DEFAULT",
        f"redcap://:{TOKEN}@https%3A%2F%2Fredcap.example.org%2Fapi%2F?verify_ssl=false&timeout=9",
    )
    _version(requests_mock)
    hook = RedcapHook()
    assert hook.settings.url == API_URL
    hook.get_version()
    assert requests_mock.last_request.verify is False
    assert requests_mock.last_request.timeout == 9.0


def test_ui_field_behaviour_shape() -> None:
    behaviour = RedcapHook.get_ui_field_behaviour()
    assert set(behaviour["hidden_fields"]) == {"login", "port", "schema"}
    assert behaviour["relabeling"] == {"host": "REDCap API URL", "password": "API Token"}
    assert behaviour["placeholders"]["host"] == "https://redcap.example.org/api/"


def test_class_attributes() -> None:
    assert RedcapHook.conn_name_attr == "redcap_conn_id"
    assert RedcapHook.default_conn_name == "redcap_default"
    assert RedcapHook.conn_type == "redcap"
    assert RedcapHook.hook_name == "REDCap"
