"""Every read method against REDCap's real response shapes, and every error class they can raise."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from common import payloads as p
from hook_testing import content_is, form_of, json_response

from airflow_provider_redcap.exceptions import (
    RedcapAuthError,
    RedcapPermissionError,
    RedcapRateLimitError,
    RedcapRequestError,
    RedcapResponseError,
    RedcapServerError,
)
from airflow_provider_redcap.hooks.redcap import RedcapHook
from airflow_provider_redcap.models import RandomizationModel, StratumField


def _mock(requests_mock: Any, content: str, **response: Any) -> None:
    requests_mock.post(p.API_URL, additional_matcher=content_is(content), **response)


def test_every_post_sends_token_content_and_json_formats(hook: RedcapHook, requests_mock: Any) -> None:
    _mock(requests_mock, "project", **json_response(p.PROJECT_INFO))
    hook.get_project_info()
    request = requests_mock.last_request
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = form_of(request)
    assert form == {"token": p.TOKEN, "content": "project", "format": "json", "returnFormat": "json"}


def test_version_is_plain_text_csv(hook: RedcapHook, requests_mock: Any) -> None:
    _mock(requests_mock, "version", text="15.7.6", headers={"Content-Type": "text/csv; charset=utf-8"})
    assert hook.get_version() == "15.7.6"


def test_version_that_is_not_a_version_is_an_error(hook: RedcapHook, requests_mock: Any) -> None:
    _mock(requests_mock, "version", text="hello", headers={"Content-Type": p.CSV})
    with pytest.raises(RedcapResponseError):
        hook.get_version()


def test_project_info_and_longitudinal_flag_cached(hook: RedcapHook, requests_mock: Any) -> None:
    _mock(requests_mock, "project", **json_response(p.PROJECT_INFO))
    assert hook.get_project_info()["project_title"] == "ASTER-3: a multi-site randomized trial (demo)"
    assert hook.is_longitudinal() is True
    assert requests_mock.call_count == 1


def test_metadata_arrays_are_indexed(hook: RedcapHook, requests_mock: Any) -> None:
    _mock(requests_mock, "metadata", **json_response(p.METADATA[:2]))
    rows = hook.get_metadata(fields=["record_id", "age"], forms=["screening"])
    assert [r["field_name"] for r in rows] == ["record_id", "age"]
    form = form_of(requests_mock.last_request)
    assert (form["fields[0]"], form["fields[1]"], form["forms[0]"]) == ("record_id", "age", "screening")
    assert "fields" not in form


@pytest.mark.parametrize(
    ("method", "content", "payload", "kwargs", "sent"),
    [
        (
            "get_field_names",
            "exportFieldNames",
            p.FIELD_NAMES,
            {"field": "conditions"},
            {"field": "conditions"},
        ),
        ("get_events", "event", p.EVENTS, {"arms": [1]}, {"arms[0]": "1"}),
        ("get_arms", "arm", p.ARMS, {}, {}),
        ("get_form_event_mapping", "formEventMapping", p.FORM_EVENT_MAPPING, {}, {}),
        ("get_repeating_forms_events", "repeatingFormsEvents", p.REPEATING, {}, {}),
        ("get_dags", "dag", p.DAGS, {}, {}),
        ("export_logging", "log", p.LOGGING, {"logtype": "record", "record": "1001"}, {"logtype": "record"}),
    ],
)
def test_list_methods(
    hook: RedcapHook,
    requests_mock: Any,
    method: str,
    content: str,
    payload: list[dict[str, Any]],
    kwargs: dict[str, Any],
    sent: dict[str, str],
) -> None:
    _mock(requests_mock, content, **json_response(payload))
    assert getattr(hook, method)(**kwargs) == payload
    form = form_of(requests_mock.last_request)
    assert form["content"] == content
    for key, value in sent.items():
        assert form[key] == value


def test_export_logging_formats_datetimes_and_accepts_snake_case(
    hook: RedcapHook, requests_mock: Any
) -> None:
    import datetime as dt

    _mock(requests_mock, "log", **json_response(p.LOGGING))
    hook.export_logging(begin_time=dt.datetime(2026, 3, 2, 14, 0), log_type="record")
    form = form_of(requests_mock.last_request)
    assert form["beginTime"] == "2026-03-02 14:00"
    assert form["logtype"] == "record"


def test_events_on_classic_project_is_a_request_error(hook: RedcapHook, requests_mock: Any) -> None:
    _mock(
        requests_mock,
        "event",
        status_code=400,
        text=p.json_error(p.CLASSIC_EVENTS),
        headers={"Content-Type": p.JSON},
    )
    with pytest.raises(RedcapRequestError) as info:
        hook.get_events()
    assert info.value.status_code == 400
    assert info.value.redcap_message == p.CLASSIC_EVENTS


def test_next_record_name(hook: RedcapHook, requests_mock: Any) -> None:
    _mock(
        requests_mock,
        "generateNextRecordName",
        text="223-3",
        headers={"Content-Type": "text/html; charset=UTF-8"},
    )
    assert hook.generate_next_record_name() == "223-3"


def test_project_xml_and_randomization_models(hook: RedcapHook, requests_mock: Any) -> None:
    _mock(requests_mock, "project_xml", text=p.PROJECT_XML, headers={"Content-Type": p.XML})
    models = hook.get_randomization_models()
    form = form_of(requests_mock.last_request)
    assert (form["format"], form["returnMetadataOnly"], form["returnFormat"]) == ("xml", "true", "json")
    strata = (StratumField("sex", "baseline_arm_1"), StratumField("age_group", "baseline_arm_1"))
    assert models == [
        RandomizationModel(1, "rand_arm", "randomization_arm_1", strata, group_by_dag=True),
        RandomizationModel(2, "kit_number", "randomization_arm_1", strata, group_by_dag=True),
    ]


def test_classic_project_models_have_no_events(hook: RedcapHook, requests_mock: Any) -> None:
    _mock(requests_mock, "project_xml", text=p.PROJECT_XML_CLASSIC, headers={"Content-Type": p.XML})
    assert hook.get_randomization_models() == [
        RandomizationModel(1, "arm", None, (StratumField("site"), StratumField("sex")), group_by_dag=False)
    ]


def test_project_without_randomization_has_no_models(hook: RedcapHook, requests_mock: Any) -> None:
    _mock(requests_mock, "project_xml", text=p.PROJECT_XML_NO_RANDOMIZATION, headers={"Content-Type": p.XML})
    assert hook.get_randomization_models() == []


def test_project_xml_with_entities_is_refused(hook: RedcapHook, requests_mock: Any) -> None:
    bomb = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><ODM>&a;</ODM>'
    _mock(requests_mock, "project_xml", text=bomb, headers={"Content-Type": p.XML})
    with pytest.raises(RedcapResponseError):
        hook.get_randomization_models()


def test_low_level_request_passes_params(hook: RedcapHook, requests_mock: Any) -> None:
    _mock(requests_mock, "user", **json_response([{"username": "data_manager"}]))
    assert hook.request("user", format="json") == [{"username": "data_manager"}]


# -- errors, for any method ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "content_type", "error", "redcap_message"),
    [
        (403, p.json_error(p.BAD_TOKEN), p.JSON, RedcapAuthError, p.BAD_TOKEN),
        (403, p.csv_error(p.BAD_TOKEN), p.CSV, RedcapAuthError, p.BAD_TOKEN),
        (403, p.xml_error(p.BAD_TOKEN), p.XML, RedcapAuthError, p.BAD_TOKEN),
        (403, "", p.JSON, RedcapAuthError, p.BAD_TOKEN),
        (403, p.json_error(p.EXPIRED), p.JSON, RedcapAuthError, p.EXPIRED),
        (403, p.json_error(p.NO_EXPORT), p.JSON, RedcapPermissionError, p.NO_EXPORT),
        (400, p.json_error(p.NO_DAG_RIGHTS), p.JSON, RedcapPermissionError, p.NO_DAG_RIGHTS),
        (429, p.BANNED, "text/html; charset=UTF-8", RedcapRateLimitError, p.BANNED),
        (400, p.json_error(p.BAD_FIELDS), p.JSON, RedcapRequestError, p.BAD_FIELDS),
        (501, p.xml_error("The requested method is not implemented."), p.XML, RedcapServerError, None),
    ],
)
def test_error_statuses(
    make_hook: Any,
    requests_mock: Any,
    status: int,
    body: str,
    content_type: str,
    error: type[Exception],
    redcap_message: str | None,
) -> None:
    hook = make_hook(max_retries=0)
    requests_mock.post(p.API_URL, status_code=status, text=body, headers={"Content-Type": content_type})
    with pytest.raises(error) as info:
        hook.get_metadata()
    assert info.value.status_code == status
    if redcap_message:
        assert info.value.redcap_message == redcap_message
    assert requests_mock.call_count == 1


def test_rate_limit_message_is_not_a_plain_429(hook: RedcapHook, requests_mock: Any) -> None:
    requests_mock.post(p.API_URL, status_code=429, text=p.BANNED)
    with pytest.raises(RedcapRateLimitError, match="banned"):
        hook.get_project_info()


@pytest.mark.parametrize("page", [p.SSO_LOGIN_PAGE, p.MAINTENANCE_PAGE])
@pytest.mark.parametrize("content_type", [p.HTML, p.JSON])
def test_html_200_pages_are_errors_with_tag_stripped_excerpt(
    hook: RedcapHook, requests_mock: Any, page: str, content_type: str
) -> None:
    requests_mock.post(p.API_URL, text=page, headers={"Content-Type": content_type})
    with pytest.raises(RedcapResponseError) as info:
        hook.get_metadata()
    message = str(info.value)
    assert "HTML page" in message
    assert "<" not in info.value.redcap_message
    assert "var x" not in message  # scripts are dropped from the excerpt
    assert len(info.value.redcap_message) <= 200


def test_maintenance_excerpt_unescapes_entities(hook: RedcapHook, requests_mock: Any) -> None:
    requests_mock.post(p.API_URL, text=p.MAINTENANCE_PAGE, headers={"Content-Type": p.HTML})
    with pytest.raises(RedcapResponseError) as info:
        hook.get_dags()
    assert "maintenance & will be back" in info.value.redcap_message


def test_malformed_json_200_is_an_error(hook: RedcapHook, requests_mock: Any) -> None:
    requests_mock.post(p.API_URL, text='[{"record_id": "1"', headers={"Content-Type": p.JSON})
    with pytest.raises(RedcapResponseError, match="not valid JSON"):
        hook.get_metadata()


def test_error_envelope_in_a_200_is_never_data(hook: RedcapHook, requests_mock: Any) -> None:
    requests_mock.post(p.API_URL, text=p.json_error("Something odd"), headers={"Content-Type": p.JSON})
    with pytest.raises(RedcapRequestError, match="Something odd"):
        hook.get_metadata()


def test_object_where_a_list_is_expected(hook: RedcapHook, requests_mock: Any) -> None:
    requests_mock.post(p.API_URL, text=json.dumps({"a": 1}), headers={"Content-Type": p.JSON})
    with pytest.raises(RedcapResponseError, match="expected an array"):
        hook.get_dags()


def test_redirect_is_not_followed(hook: RedcapHook, requests_mock: Any) -> None:
    requests_mock.post(
        p.API_URL, status_code=307, headers={"Location": "https://sso.example.org/login?next=x"}
    )
    requests_mock.post("https://sso.example.org/login", text="should never be called")
    with pytest.raises(RedcapResponseError, match=r"redirect to https://sso\.example\.org/login"):
        hook.get_metadata()
    assert requests_mock.call_count == 1


# -- test_connection ------------------------------------------------------------------------------------


RANDOMIZE_SENTENCE = "Randomize (needed by RedcapRandomizeOperator)"
IMPORT_SENTENCE = "API Import (needed by RedcapImportRecordsOperator)"


def _connectable(requests_mock: Any) -> None:
    """Version and project info answer: the token works and can export."""
    _mock(requests_mock, "version", text=p.VERSION, headers={"Content-Type": p.CSV})
    _mock(requests_mock, "project", **json_response(p.PROJECT_INFO))


def _probes(requests_mock: Any, *, randomize: dict[str, Any], import_: dict[str, Any]) -> None:
    requests_mock.post(p.API_URL, additional_matcher=content_is("record", action="randomize"), **randomize)
    requests_mock.post(
        p.API_URL,
        additional_matcher=lambda r: form_of(r).get("content") == "record" and "data" in form_of(r),
        **import_,
    )


def _refusal(message: str) -> dict[str, Any]:
    return {"status_code": 403, "text": p.json_error(message), "headers": {"Content-Type": p.JSON}}


# REDCap's answers when the privilege is there (reference 1.1 and 1.2): the id 0 is invalid, and an
# import of no rows counts no record.
HAS_RANDOMIZE = {"text": p.RAND_INVALID_RID, "headers": {"Content-Type": p.JSON}}
HAS_IMPORT = {"text": '{"count": 0}', "headers": {"Content-Type": p.JSON}}


def test_test_connection_success_names_project_and_version(hook: RedcapHook, requests_mock: Any) -> None:
    _connectable(requests_mock)
    _probes(requests_mock, randomize=HAS_RANDOMIZE, import_=HAS_IMPORT)
    ok, message = hook.test_connection()
    assert ok is True
    assert "15.7.6" in message
    assert "1742" in message
    assert "ASTER-3" in message
    assert "Missing" not in message
    assert "Could not" not in message


def test_test_connection_probes_change_nothing(hook: RedcapHook, requests_mock: Any) -> None:
    _connectable(requests_mock)
    _probes(requests_mock, randomize=HAS_RANDOMIZE, import_=HAS_IMPORT)
    hook.test_connection()
    sent = [form_of(r) for r in requests_mock.request_history if form_of(r)["content"] == "record"]
    randomize = next(f for f in sent if f.get("action") == "randomize")
    # Id 0 is never valid: REDCap answers right after its privilege check (reference 1.1).
    assert randomize["randomization_id"] == "0"
    assert randomize["record"].startswith("__airflow_provider_redcap_probe_")
    imported = next(f for f in sent if "data" in f)
    assert json.loads(imported["data"]) == []
    assert (imported["returnContent"], imported["forceAutoNumber"]) == ("count", "false")
    assert len(sent) == 2


@pytest.mark.parametrize(
    ("randomize", "import_", "missing"),
    [
        (_refusal(p.NO_RANDOMIZE), HAS_IMPORT, [RANDOMIZE_SENTENCE]),
        (HAS_RANDOMIZE, _refusal(p.NO_IMPORT), [IMPORT_SENTENCE]),
        (_refusal(p.NO_RANDOMIZE), _refusal(p.NO_IMPORT), [RANDOMIZE_SENTENCE, IMPORT_SENTENCE]),
    ],
    ids=["no_randomize", "no_import", "neither"],
)
def test_test_connection_names_missing_privileges(
    hook: RedcapHook,
    requests_mock: Any,
    randomize: dict[str, Any],
    import_: dict[str, Any],
    missing: list[str],
) -> None:
    _connectable(requests_mock)
    _probes(requests_mock, randomize=randomize, import_=import_)
    ok, message = hook.test_connection()
    assert ok is True  # the token works and can export
    assert message.endswith(f" Missing privileges: {', '.join(missing)}.")
    assert message.startswith("Connected to REDCap 15.7.6: project 1742")


def test_test_connection_any_import_answer_but_403_shows_the_privilege(
    hook: RedcapHook, requests_mock: Any
) -> None:
    _connectable(requests_mock)
    bad_data = "The data being imported is not formatted correctly."
    _probes(
        requests_mock,
        randomize=HAS_RANDOMIZE,
        import_={"status_code": 400, "text": p.json_error(bad_data), "headers": {"Content-Type": p.JSON}},
    )
    ok, message = hook.test_connection()
    assert ok is True
    assert "Missing" not in message
    assert "Import" not in message


def test_test_connection_import_refused_for_another_reason(hook: RedcapHook, requests_mock: Any) -> None:
    _connectable(requests_mock)
    cleanup = "Data may not be imported because the project is in Analysis/Cleanup status."
    _probes(requests_mock, randomize=HAS_RANDOMIZE, import_=_refusal(cleanup))
    ok, message = hook.test_connection()
    assert ok is True
    assert "Missing privileges" not in message
    assert cleanup in message


def test_test_connection_probe_that_gets_no_answer_is_reported(hook: RedcapHook, requests_mock: Any) -> None:
    _connectable(requests_mock)
    _probes(
        requests_mock,
        randomize={"exc": requests.exceptions.ReadTimeout("Read timed out.")},
        import_={"status_code": 503, "text": "", "headers": {"Content-Type": p.JSON}},
    )
    ok, message = hook.test_connection()
    assert ok is True
    assert "Could not check the Randomize privilege" in message
    assert "Could not check the API Import privilege" in message
    assert "Missing privileges" not in message
    # Randomize is never repeated once it may have reached REDCap.
    randomize = [r for r in requests_mock.request_history if form_of(r).get("action") == "randomize"]
    assert len(randomize) == 1


def test_test_connection_on_a_server_without_randomize_api(hook: RedcapHook, requests_mock: Any) -> None:
    _mock(requests_mock, "version", text=p.OLD_VERSION, headers={"Content-Type": p.CSV})
    _mock(requests_mock, "project", **json_response(p.PROJECT_INFO))
    _probes(requests_mock, randomize=HAS_RANDOMIZE, import_=HAS_IMPORT)
    ok, message = hook.test_connection()
    assert ok is True
    assert "Could not check the Randomize privilege" in message
    assert "14.7.0" in message
    assert not [r for r in requests_mock.request_history if form_of(r).get("action") == "randomize"]


def test_test_connection_token_works_but_no_export(hook: RedcapHook, requests_mock: Any) -> None:
    _mock(requests_mock, "version", text=p.VERSION, headers={"Content-Type": p.CSV})
    _mock(
        requests_mock,
        "project",
        status_code=403,
        text=p.json_error(p.NO_EXPORT),
        headers={"Content-Type": p.JSON},
    )
    ok, message = hook.test_connection()
    assert ok is False
    assert "API Export" in message
    assert "token is valid" in message


def test_test_connection_no_export_on_version(hook: RedcapHook, requests_mock: Any) -> None:
    requests_mock.post(
        p.API_URL, status_code=403, text=p.json_error(p.NO_EXPORT), headers={"Content-Type": p.JSON}
    )
    ok, message = hook.test_connection()
    assert ok is False
    assert "lacks a privilege" in message
    assert "API Export" in message


def test_test_connection_bad_token(hook: RedcapHook, requests_mock: Any) -> None:
    requests_mock.post(
        p.API_URL, status_code=403, text=p.json_error(p.BAD_TOKEN), headers={"Content-Type": p.JSON}
    )
    ok, message = hook.test_connection()
    assert ok is False
    assert p.BAD_TOKEN in message
    assert p.TOKEN not in message


def test_test_connection_bad_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from hook_testing import set_connection

    set_connection(monkeypatch, host="http://redcap.example.org/api/")
    ok, message = RedcapHook().test_connection()
    assert ok is False
    assert "https" in message
