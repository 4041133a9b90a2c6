"""Transport, formats and error envelopes (reference §1.0, §1.14, §5.1 items 1-2)."""

from __future__ import annotations

import json

import pytest
import requests
from redcap_conformance import CSV_CT, JSON_CT, XML_CT, XML_DECL, Api, DemoFacts

pytestmark = pytest.mark.integration

NO_PERMISSION = "You do not have permissions to use the API"
NOT_IMPLEMENTED_XML = f"{XML_DECL}<hash><error>The requested method is not implemented.</error></hash>"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_only_post_is_implemented(rc: Api, method: str) -> None:
    resp = requests.request(method, rc.url, timeout=30)
    assert resp.status_code == 501
    assert resp.text == NOT_IMPLEMENTED_XML
    assert resp.headers["content-type"].lower() == XML_CT


def test_get_with_token_and_format_is_still_501(rc: Api) -> None:
    resp = requests.get(rc.url, params={"token": rc.token, "content": "version"}, timeout=30)
    assert resp.status_code == 501


@pytest.mark.parametrize(
    ("params", "body", "content_type"),
    [
        ({"format": "json"}, '{"error":"' + NO_PERMISSION + '"}', JSON_CT),
        ({"format": "csv"}, "ERROR: " + NO_PERMISSION, CSV_CT),
        ({"format": "xml"}, f"{XML_DECL}<hash><error>{NO_PERMISSION}</error></hash>", XML_CT),
        ({}, f"{XML_DECL}<hash><error>{NO_PERMISSION}</error></hash>", XML_CT),
        ({"format": "yaml"}, f"{XML_DECL}<hash><error>{NO_PERMISSION}</error></hash>", XML_CT),
        ({"format": "json", "returnFormat": "csv"}, "ERROR: " + NO_PERMISSION, CSV_CT),
        ({"format": "csv", "returnFormat": "json"}, '{"error":"' + NO_PERMISSION + '"}', JSON_CT),
        ({"format": "json", "returnFormat": ""}, '{"error":"' + NO_PERMISSION + '"}', JSON_CT),
        (
            {"format": "json", "returnFormat": "bogus"},
            f"{XML_DECL}<hash><error>{NO_PERMISSION}</error></hash>",
            XML_CT,
        ),
    ],
)
def test_error_envelope_follows_return_format_then_format(
    rc: Api, params: dict[str, str], body: str, content_type: str
) -> None:
    resp = rc.post({"content": "project", **params}, token="0" * 32)
    assert resp.status_code == 403
    assert resp.text == body
    assert resp.headers["content-type"].lower() == content_type


@pytest.mark.parametrize(
    ("fmt", "content_type"), [("json", JSON_CT), ("csv", CSV_CT), ("xml", XML_CT), (None, XML_CT)]
)
def test_success_content_type_follows_format(rc: Api, fmt: str | None, content_type: str) -> None:
    resp = rc.call("project", format=fmt)
    assert resp.status_code == 200
    assert resp.headers["content-type"].lower() == content_type


def test_missing_format_means_xml(rc: Api) -> None:
    resp = rc.call("project", format=None)
    assert resp.status_code == 200
    assert resp.text.startswith(XML_DECL)
    assert "<items>" in resp.text


def test_unknown_format_means_xml(rc: Api) -> None:
    resp = rc.call("project", format="yaml")
    assert resp.status_code == 200
    assert resp.headers["content-type"].lower() == XML_CT
    assert resp.text.startswith(XML_DECL)


def test_invalid_content(rc: Api) -> None:
    resp = rc.call("nonsense", returnFormat="json")
    assert resp.status_code == 400
    assert resp.json() == {"error": 'The value of the parameter "content" is not valid'}


def test_invalid_record_action(rc: Api) -> None:
    resp = rc.call("record", action="nonsense", returnFormat="json")
    assert resp.status_code == 400
    assert resp.json() == {"error": 'The value of the parameter "action" is not valid'}


def test_token_is_checked_before_content(rc: Api) -> None:
    resp = rc.call("nonsense", token="0" * 32)
    assert resp.status_code == 403
    assert resp.json() == {"error": NO_PERMISSION}


def _enrol_three(rc: Api) -> None:
    for rec in ("001001", "001002", "001003"):
        rc.enrol(rec, "boston", "0", "1")


@pytest.mark.parametrize(
    "records",
    [
        [("records[]", "001001"), ("records[]", "001003")],
        [("records[0]", "001001"), ("records[1]", "001003")],
        [("records", "001001,001003")],
        [("records", " 001001 , 001003 ")],
    ],
    ids=["brackets", "indexed", "comma", "comma-spaces"],
)
def test_array_parameters_in_all_three_forms(rc: Api, records: list[tuple[str, str]]) -> None:
    _enrol_three(rc)
    params = [("content", "record"), ("format", "json"), ("type", "flat"), *records]
    params += [("fields[0]", "record_id"), ("events[]", "screening_arm_1")]
    resp = rc.post(params)
    assert resp.status_code == 200, resp.text
    assert sorted(r["record_id"] for r in resp.json()) == ["001001", "001003"]


def test_fields_as_comma_string(rc: Api) -> None:
    _enrol_three(rc)
    rows = rc.export(fields="record_id,sex", events="baseline_arm_1")
    assert {tuple(sorted(r)) for r in rows} == {("record_id", "redcap_event_name", "sex")}


def test_json_error_body_is_valid_json_for_every_non_200(rc: Api, demo: DemoFacts) -> None:
    resp = rc.call("record", token=demo.tokens["monitor"], data="[]", type="flat")
    assert resp.status_code == 403
    assert json.loads(resp.text) == {"error": "You do not have API Import/Update privileges"}
