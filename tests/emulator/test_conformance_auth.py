"""Tokens and the rights matrix (reference §1.0 token check, §1.9-1.12, §1.15, §5.1 items 3-4)."""

from __future__ import annotations

from typing import Any

import pytest
from redcap_conformance import Api, DemoFacts, error_message

pytestmark = pytest.mark.integration

NO_PERMISSION = "You do not have permissions to use the API"
NO_EXPORT = "You do not have API Export privileges"
NO_IMPORT = "You do not have API Import/Update privileges"
NO_RANDOMIZE = "You do not have Randomize privileges"
NO_DELETE = "You do not have Delete Record privileges"
NO_ACCESS_EXPORT = (
    'The API request cannot complete because currently you have "No Access" data export rights. '
    "Higher level data export rights are required for this operation."
)
NO_LOGGING = (
    'The API request cannot complete because currently you do not have "Logging" privileges, '
    "which are required for this operation."
)
DAG_RIGHTS = (
    "Insufficient user privileges: You must have 'API Export' privileges and 'Data Access Groups' "
    "privileges in the project."
)
USER_RIGHTS_PREFIX = (
    "Insufficient user privileges: You must have 'API Export' privileges and 'User Rights' privileges"
)


@pytest.mark.parametrize(
    "token",
    [
        "",  # sent empty
        "0123456789ABCDEF0123456789ABCDEF",  # well-formed, unknown
        "DEMO0DATA0MANAGER0TOKEN00000000-",  # not alphanumeric
        "DEMO0DATA0MANAGER0TOKEN000000001 ",  # trailing space is not alphanumeric
        "DEMO0DATA0MANAGER0TOKEN000000001'--",
    ],
)
def test_bad_token_is_403(rc: Api, token: str) -> None:
    resp = rc.post({"content": "version", "format": "json", "token": token}, token="")
    assert resp.status_code == 403
    assert error_message(resp) == NO_PERMISSION


def test_missing_token_is_403(rc: Api) -> None:
    resp = rc.post({"content": "version", "format": "json"}, token="")
    assert resp.status_code == 403
    assert error_message(resp) == NO_PERMISSION


def test_failed_token_is_logged(rc: Api, server: Any) -> None:
    rc.call("version", token="0123456789ABCDEF0123456789ABCDEF")
    entries = server.admin.log()
    assert any("Failed API request (invalid token)" in str(v) for e in entries for v in e.values()), entries


def test_expired_rights_are_403_with_the_date(rc: Api, demo: DemoFacts) -> None:
    resp = rc.call("project", token=demo.tokens["expired_user"])
    assert resp.status_code == 403
    message = error_message(resp)
    prefix = "You do not have API rights because your privileges have expired for this project as of "
    assert message.startswith(prefix), message
    assert message.endswith(".")
    # The date is shown in some human form; it must be the configured expiry (2025-06-30).
    assert any(s in message for s in ("2025-06-30", "06/30/2025", "30/06/2025", "06-30-2025")), message


def test_expired_user_cannot_randomize_either(rc: Api, demo: DemoFacts) -> None:
    rc.enrol("001001", "boston", "0", "1")
    resp = rc.randomize("001001", 48213, token=demo.tokens["expired_user"])
    assert resp.status_code == 403
    assert error_message(resp).startswith("You do not have API rights because your privileges have expired")


@pytest.mark.parametrize("content", ["metadata", "project", "event", "arm", "formEventMapping", "record"])
def test_monitor_can_export(rc: Api, demo: DemoFacts, content: str) -> None:
    resp = rc.call(content, token=demo.tokens["monitor"])
    assert resp.status_code == 200, resp.text


def test_import_needs_api_import(rc: Api, demo: DemoFacts) -> None:
    resp = rc.import_rows(
        [{"record_id": "9", "redcap_event_name": "screening_arm_1"}], token=demo.tokens["monitor"]
    )
    assert resp.status_code == 403
    assert error_message(resp) == NO_IMPORT
    assert rc.export(records="9") == []


@pytest.mark.parametrize("user", ["monitor", "no_randomize"])
def test_randomize_needs_random_perform(rc: Api, demo: DemoFacts, user: str) -> None:
    rc.enrol("001001", "boston", "0", "1")
    resp = rc.randomize("001001", 48213, token=demo.tokens[user])
    assert resp.status_code == 403
    assert error_message(resp) == NO_RANDOMIZE


def test_randomize_privilege_is_checked_before_the_randomization_id(rc: Api, demo: DemoFacts) -> None:
    resp = rc.randomize("nope", 1, token=demo.tokens["no_randomize"])
    assert resp.status_code == 403
    assert error_message(resp) == NO_RANDOMIZE


def test_delete_needs_record_delete(rc: Api, demo: DemoFacts) -> None:
    rc.enrol("001001", "boston", "0", "1")
    resp = rc.call("record", token=demo.tokens["monitor"], action="delete", **{"records[0]": "001001"})
    assert resp.status_code == 403
    assert error_message(resp) == NO_DELETE
    assert rc.export(records="001001", fields="record_id") != []


def test_dag_export_needs_dag_rights(rc: Api, demo: DemoFacts) -> None:
    resp = rc.call("dag", token=demo.tokens["monitor"])
    assert resp.status_code == 400
    assert error_message(resp) == DAG_RIGHTS


def test_dag_export_by_a_user_in_a_dag_is_403(rc: Api, demo: DemoFacts) -> None:
    resp = rc.call("dag", token=demo.tokens["site_boston"])
    assert resp.status_code == 403


def test_user_export_needs_user_rights(rc: Api, demo: DemoFacts) -> None:
    resp = rc.call("user", token=demo.tokens["monitor"])
    assert resp.status_code == 400
    assert error_message(resp).startswith(USER_RIGHTS_PREFIX)


def test_logging_needs_logging_privilege(rc: Api, demo: DemoFacts) -> None:
    resp = rc.call("log", token=demo.tokens["monitor"])
    assert resp.status_code == 403
    assert error_message(resp) == NO_LOGGING


def _restricted_users(project: dict[str, Any], _path: Any) -> None:
    base = {
        "api_export": 1,
        "api_import": 1,
        "random_perform": 0,
        "random_setup": 0,
        "random_dashboard": 0,
        "data_export": 1,
        "data_access_groups": 0,
        "user_rights": 0,
        "logging": 1,
        "record_delete": 0,
    }
    project["users"] += [
        {
            "username": "no_api_export",
            "token": "A" * 31 + "1",
            "rights": {**base, "api_export": 0},
        },
        {
            "username": "no_access_export",
            "token": "A" * 31 + "2",
            "rights": {**base, "data_export": 0},
        },
        {
            "username": "randomizer_only",
            "token": "A" * 31 + "3",
            "rights": {**base, "api_export": 0, "api_import": 0, "data_export": 0, "random_perform": 1},
        },
    ]


@pytest.fixture
def restricted(serve_variant: Any) -> Any:
    return serve_variant(_restricted_users)


@pytest.mark.parametrize("content", ["metadata", "project", "record", "event", "arm"])
def test_export_needs_api_export(restricted: Any, content: str) -> None:
    api = Api(restricted.url, restricted.tokens["no_api_export"])
    resp = api.call(content)
    assert resp.status_code == 403
    assert error_message(resp) == NO_EXPORT


@pytest.mark.parametrize(
    ("content", "params"),
    [("record", {"type": "flat"}), ("generateNextRecordName", {}), ("log", {})],
)
def test_no_access_export_rights(restricted: Any, content: str, params: dict[str, str]) -> None:
    api = Api(restricted.url, restricted.tokens["no_access_export"])
    resp = api.call(content, **params)
    assert resp.status_code == 403
    assert error_message(resp) == NO_ACCESS_EXPORT


def test_no_access_export_user_can_still_read_metadata(restricted: Any) -> None:
    api = Api(restricted.url, restricted.tokens["no_access_export"])
    assert api.call("metadata").status_code == 200


def test_randomize_needs_only_random_perform(restricted: Any) -> None:
    manager = Api(restricted.url, restricted.token)
    manager.enrol("001001", "boston", "0", "1")
    api = Api(restricted.url, restricted.tokens["randomizer_only"])
    resp = api.randomize("001001", 48213)
    assert resp.status_code == 200, resp.text
    assert resp.json()["record"] == "001001"


def test_dag_user_sees_only_its_dag(rc: Api, demo: DemoFacts) -> None:
    rc.enrol("001001", "boston", "0", "1")
    rc.enrol("002001", "denver", "1", "2")
    rc.enrol("009001", None, "1", "2")
    rows = rc.export(token=demo.tokens["site_boston"], fields="record_id")
    assert {r["record_id"] for r in rows} == {"001001"}
    # Unknown or other-DAG records asked for by name are silently absent.
    assert rc.export(token=demo.tokens["site_boston"], records="002001,009001") == []
