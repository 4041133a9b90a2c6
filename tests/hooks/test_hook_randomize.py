"""randomize_record: REDCap's 200 plain-text refusals, success shapes and the 14.7.0 version gate."""

from __future__ import annotations

from typing import Any

import pytest
from common import payloads as p
from hook_testing import content_is, form_of, forms

from airflow_provider_redcap.exceptions import (
    RedcapAlreadyRandomizedError,
    RedcapInvalidRandomizationIdError,
    RedcapMissingStratificationError,
    RedcapNoAllocationsError,
    RedcapPermissionError,
    RedcapRandomizationError,
    RedcapRandomizationUnsupportedError,
    RedcapRecordNotFoundError,
    RedcapRecordNotInDagError,
    RedcapResponseError,
    RedcapServerError,
)
from airflow_provider_redcap.hooks.redcap import RedcapHook
from airflow_provider_redcap.models import RandomizationResult

RANDOMIZE = content_is("record", action="randomize")


def _answer(requests_mock: Any, body: str, status: int = 200, content_type: str = p.JSON) -> None:
    requests_mock.post(
        p.API_URL,
        additional_matcher=RANDOMIZE,
        status_code=status,
        text=body,
        headers={"Content-Type": content_type},
    )


@pytest.mark.usefixtures("version_ok")
def test_open_allocation_success(hook: RedcapHook, requests_mock: Any) -> None:
    _answer(requests_mock, p.RAND_OPEN_SUCCESS)
    result = hook.randomize_record("1001", 48213)
    assert result == RandomizationResult(
        randomization_id=48213,
        record="1001",
        target_field="rand_arm",
        value="2",
        alternate_value="R-1005",
        concealed=False,
    )
    form = form_of(requests_mock.last_request)
    assert form["content"] == "record"
    assert form["action"] == "randomize"
    assert form["record"] == "1001"
    assert form["randomization_id"] == "48213"
    assert form["returnAlt"] == "true"  # REDCap ignores "True"
    assert (form["format"], form["returnFormat"]) == ("json", "json")


@pytest.mark.usefixtures("version_ok")
def test_concealed_allocation_success(hook: RedcapHook, requests_mock: Any) -> None:
    _answer(requests_mock, p.RAND_CONCEALED_SUCCESS)
    result = hook.randomize_record("1001", 48297)
    assert (result.target_field, result.value, result.alternate_value, result.concealed) == (
        "kit_number",
        "KIT-0042",
        "*",
        True,
    )


@pytest.mark.usefixtures("version_ok")
def test_null_alternate_value(hook: RedcapHook, requests_mock: Any) -> None:
    _answer(requests_mock, p.RAND_OPEN_SUCCESS_NO_ALT_VALUE)
    result = hook.randomize_record("1001", 48213)
    assert (result.value, result.alternate_value, result.concealed) == ("3", None, False)


@pytest.mark.usefixtures("version_ok")
def test_documented_shape_without_field_name_and_without_return_alt(
    hook: RedcapHook, requests_mock: Any
) -> None:
    _answer(requests_mock, p.RAND_DOCS_SHAPE)
    result = hook.randomize_record("1001", 48213, return_alt=False)
    assert "returnAlt" not in form_of(requests_mock.last_request)
    assert (result.target_field, result.value, result.alternate_value) == ("", "1", None)


@pytest.mark.usefixtures("version_ok")
@pytest.mark.parametrize(
    ("body", "error"),
    [
        (p.RAND_RECORD_MISSING, RedcapRecordNotFoundError),
        (p.RAND_ALREADY, RedcapAlreadyRandomizedError),
        (p.RAND_NO_DAG, RedcapRecordNotInDagError),
        (p.RAND_MISSING_STRATA, RedcapMissingStratificationError),
        (p.RAND_NO_ALLOCATIONS, RedcapNoAllocationsError),
        (p.RAND_INVALID_RID, RedcapInvalidRandomizationIdError),
    ],
)
def test_plain_text_200_refusals(hook: RedcapHook, requests_mock: Any, body: str, error: type) -> None:
    # REDCap sends these unwrapped, with HTTP 200 and the application/json content type.
    _answer(requests_mock, body)
    with pytest.raises(error) as info:
        hook.randomize_record("1001", 48213)
    exc = info.value
    assert type(exc) is error
    assert (exc.record, exc.randomization_id, exc.status_code, exc.redcap_message) == (
        "1001",
        48213,
        200,
        body,
    )
    assert len([f for f in forms(requests_mock) if f.get("action") == "randomize"]) == 1


@pytest.mark.usefixtures("version_ok")
def test_missing_strata_are_parsed(hook: RedcapHook, requests_mock: Any) -> None:
    _answer(requests_mock, p.RAND_MISSING_STRATA)
    with pytest.raises(RedcapMissingStratificationError) as info:
        hook.randomize_record("1001", 48213)
    assert info.value.missing == [("sex", 41), ("agecat", 41)]


@pytest.mark.usefixtures("version_ok")
def test_external_module_message_is_a_generic_refusal(hook: RedcapHook, requests_mock: Any) -> None:
    _answer(requests_mock, p.RAND_EM_MESSAGE)
    with pytest.raises(RedcapRandomizationError) as info:
        hook.randomize_record("1001", 48213)
    assert type(info.value) is RedcapRandomizationError
    assert "Eligibility not confirmed" in str(info.value)


@pytest.mark.usefixtures("version_ok")
def test_internal_error_is_a_wrapped_400(hook: RedcapHook, requests_mock: Any) -> None:
    _answer(requests_mock, p.json_error(p.RAND_INTERNAL), status=400)
    with pytest.raises(RedcapRandomizationError) as info:
        hook.randomize_record("1001", 48213)
    assert info.value.status_code == 400
    assert info.value.redcap_message == p.RAND_INTERNAL


@pytest.mark.usefixtures("version_ok")
def test_no_randomize_privilege(hook: RedcapHook, requests_mock: Any) -> None:
    _answer(requests_mock, p.json_error(p.NO_RANDOMIZE), status=403)
    with pytest.raises(RedcapPermissionError, match="Randomize privileges"):
        hook.randomize_record("1001", 48213)


@pytest.mark.usefixtures("version_ok")
def test_html_page_on_randomize(hook: RedcapHook, requests_mock: Any) -> None:
    _answer(requests_mock, p.SSO_LOGIN_PAGE, content_type=p.HTML)
    with pytest.raises(RedcapResponseError, match="HTML page"):
        hook.randomize_record("1001", 48213)


@pytest.mark.usefixtures("version_ok")
def test_success_without_value_is_not_data(hook: RedcapHook, requests_mock: Any) -> None:
    _answer(requests_mock, '{"randomization_id":48213,"record":"1001","target_field":""}')
    with pytest.raises(RedcapResponseError, match="no target_field value"):
        hook.randomize_record("1001", 48213)


def test_version_is_checked_once_per_hook(hook: RedcapHook, requests_mock: Any, version_ok: None) -> None:
    _answer(requests_mock, p.RAND_OPEN_SUCCESS)
    hook.randomize_record("1001", 48213)
    hook.randomize_record("1001", 48213)
    contents = [f["content"] for f in forms(requests_mock)]
    assert contents == ["version", "record", "record"]


def test_servers_older_than_14_7_0_are_refused(hook: RedcapHook, requests_mock: Any) -> None:
    requests_mock.post(p.API_URL, text=p.OLD_VERSION, headers={"Content-Type": p.CSV})
    with pytest.raises(RedcapRandomizationUnsupportedError, match=r"14\.7\.0") as info:
        hook.randomize_record("1001", 48213)
    assert (info.value.record, info.value.randomization_id) == ("1001", 48213)
    assert requests_mock.call_count == 1


def test_invalid_action_answer_means_unsupported(hook: RedcapHook, requests_mock: Any) -> None:
    hook._randomize_supported = True  # e.g. a proxy that misreports the version
    _answer(requests_mock, p.json_error(p.ACTION_INVALID), status=400)
    with pytest.raises(RedcapRandomizationUnsupportedError):
        hook.randomize_record("1001", 48213)


@pytest.mark.parametrize(
    ("record", "rid"), [("", 48213), ("  ", 1), ("1001", 0), ("1001", True), ("1001", "48213")]
)
def test_bad_arguments_fail_before_any_request(
    hook: RedcapHook, requests_mock: Any, record: str, rid: Any
) -> None:
    with pytest.raises(ValueError, match="must be"):
        hook.randomize_record(record, rid)
    assert requests_mock.call_count == 0


# -- check_randomization_id: a Randomize call for a record that cannot exist ------------------------


@pytest.mark.usefixtures("version_ok")
@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        # REDCap's order (reference 1.1): Randomize privilege, then the id, then the record.
        (200, p.RAND_INVALID_RID, False),
        (200, p.RAND_RECORD_MISSING, True),
        (403, p.json_error(p.NO_RANDOMIZE), None),
    ],
    ids=["invalid_id", "record_missing", "no_randomize_privilege"],
)
def test_check_randomization_id(
    hook: RedcapHook, requests_mock: Any, status: int, body: str, expected: bool | None
) -> None:
    _answer(requests_mock, body, status=status)
    assert hook.check_randomization_id(48213) is expected
    sent = [f for f in forms(requests_mock) if f["content"] == "record"]
    assert len(sent) == 1
    assert sent[0]["action"] == "randomize"
    assert sent[0]["randomization_id"] == "48213"
    assert "returnAlt" not in sent[0]


@pytest.mark.usefixtures("version_ok")
def test_check_randomization_id_sends_a_fresh_record_id_no_project_can_hold(
    hook: RedcapHook, requests_mock: Any
) -> None:
    _answer(requests_mock, p.RAND_RECORD_MISSING)
    hook.check_randomization_id(48213)
    hook.check_randomization_id(48213)
    records = [f["record"] for f in forms(requests_mock) if f["content"] == "record"]
    prefix = "__airflow_provider_redcap_probe_"
    assert all(r.startswith(prefix) and len(r) == len(prefix) + 32 for r in records)
    assert records[0] != records[1]
    # REDCap record names are at most 100 characters (reference 1.2).
    assert all(len(r) <= 100 for r in records)


@pytest.mark.usefixtures("version_ok")
def test_check_randomization_id_zero_tests_the_privilege_alone(hook: RedcapHook, requests_mock: Any) -> None:
    _answer(requests_mock, p.RAND_INVALID_RID)
    assert hook.check_randomization_id(0) is False
    assert form_of(requests_mock.last_request)["randomization_id"] == "0"


@pytest.mark.usefixtures("version_ok")
@pytest.mark.parametrize(
    ("status", "body", "content_type", "error"),
    [
        (200, p.RAND_MISSING_STRATA, p.JSON, RedcapMissingStratificationError),
        (200, p.SSO_LOGIN_PAGE, p.HTML, RedcapResponseError),
        (200, p.RAND_OPEN_SUCCESS, p.JSON, RedcapResponseError),
        (
            500,
            p.json_error("The server encountered an error processing your request."),
            p.JSON,
            RedcapServerError,
        ),
    ],
    ids=["refusal_after_the_record_check", "html_page", "allocated", "server_error"],
)
def test_check_randomization_id_raises_any_other_answer(
    hook: RedcapHook, requests_mock: Any, status: int, body: str, content_type: str, error: type
) -> None:
    _answer(requests_mock, body, status=status, content_type=content_type)
    with pytest.raises(error):
        hook.check_randomization_id(48213)
    # A randomize call is never repeated once it may have reached REDCap.
    assert len([f for f in forms(requests_mock) if f["content"] == "record"]) == 1


def test_check_randomization_id_on_an_old_server_sends_no_randomize(
    hook: RedcapHook, requests_mock: Any
) -> None:
    requests_mock.post(p.API_URL, text=p.OLD_VERSION, headers={"Content-Type": p.CSV})
    with pytest.raises(RedcapRandomizationUnsupportedError):
        hook.check_randomization_id(48213)
    assert [f["content"] for f in forms(requests_mock)] == ["version"]


@pytest.mark.parametrize("rid", [-1, True, "48213", None])
def test_check_randomization_id_bad_argument(hook: RedcapHook, requests_mock: Any, rid: Any) -> None:
    with pytest.raises(ValueError, match="whole number"):
        hook.check_randomization_id(rid)
    assert requests_mock.call_count == 0
