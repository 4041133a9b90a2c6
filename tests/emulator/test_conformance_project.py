"""Project-level exports: metadata, project info, version, field names, events, arms, mappings,
DAGs, users, project XML (reference §1.4-1.10, §1.13, §5.1 items 10-11)."""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from redcap_conformance import CSV_CT, XML_CT, XML_DECL, Api, DemoFacts, error_message

pytestmark = pytest.mark.integration

METADATA_COLUMNS = [
    "field_name",
    "form_name",
    "section_header",
    "field_type",
    "field_label",
    "select_choices_or_calculations",
    "field_note",
    "text_validation_type_or_show_slider_number",
    "text_validation_min",
    "text_validation_max",
    "identifier",
    "branching_logic",
    "required_field",
    "custom_alignment",
    "question_number",
    "matrix_group_name",
    "matrix_ranking",
    "field_annotation",
]
PROJECT_INFO_KEYS = [
    "project_id",
    "project_title",
    "creation_time",
    "production_time",
    "in_production",
    "project_language",
    "purpose",
    "purpose_other",
    "project_notes",
    "custom_record_label",
    "secondary_unique_field",
    "is_longitudinal",
    "has_repeating_instruments_or_events",
    "surveys_enabled",
    "scheduling_enabled",
    "record_autonumbering_enabled",
    "randomization_enabled",
    "ddp_enabled",
    "project_irb_number",
    "project_grant_number",
    "project_pi_firstname",
    "project_pi_lastname",
    "display_today_now_button",
    "missing_data_codes",
    "external_modules",
    "bypass_branching_erase_field_prompt",
]
USER_LEADING_KEYS = [
    "username",
    "email",
    "firstname",
    "lastname",
    "expiration",
    "data_access_group",
    "data_access_group_id",
]


# --- metadata -------------------------------------------------------------------------------


def test_metadata_json_columns_order_and_values(rc: Api, demo: DemoFacts) -> None:
    resp = rc.call("metadata")
    assert resp.status_code == 200
    rows = resp.json()
    assert [list(r) for r in rows] == [METADATA_COLUMNS] * len(demo.metadata)
    assert rows == demo.metadata  # the demo file is already in API export form


def test_metadata_has_no_form_complete_fields(rc: Api) -> None:
    names = [r["field_name"] for r in rc.call("metadata").json()]
    assert not [n for n in names if n.endswith("_complete")]


def test_metadata_csv_header(rc: Api, demo: DemoFacts) -> None:
    resp = rc.call("metadata", format="csv")
    assert resp.status_code == 200
    assert resp.headers["content-type"].lower() == CSV_CT
    reader = csv.reader(io.StringIO(resp.text))
    assert next(reader) == METADATA_COLUMNS
    assert [row[0] for row in reader] == [m["field_name"] for m in demo.metadata]


def test_metadata_filtered_by_fields_and_forms(rc: Api) -> None:
    rows = rc.call("metadata", **{"fields[0]": "sex", "fields[1]": "age_group"}).json()
    assert [r["field_name"] for r in rows] == ["sex", "age_group"]
    rows = rc.call("metadata", **{"forms[0]": "randomization"}).json()
    assert [r["field_name"] for r in rows if r["form_name"] == "randomization"] == [
        "rand_arm",
        "kit_number",
        "rand_date",
    ]
    assert {r["form_name"] for r in rows} <= {"randomization", "screening"}


# --- project info, version ------------------------------------------------------------------


def test_project_info_keys_in_order_and_values(rc: Api, demo: DemoFacts) -> None:
    info = rc.call("project").json()
    assert list(info) == PROJECT_INFO_KEYS
    assert info["project_id"] == demo.project["project_id"]
    assert info["project_title"] == demo.project["project_title"]
    assert info["in_production"] == 1
    assert info["is_longitudinal"] == 1
    assert info["has_repeating_instruments_or_events"] == 0
    assert info["record_autonumbering_enabled"] == 0
    assert info["randomization_enabled"] == 1
    assert info["scheduling_enabled"] == 0


def test_project_info_xml_and_csv(rc: Api) -> None:
    xml = rc.call("project", format="xml")
    assert xml.headers["content-type"].lower() == XML_CT
    root = ET.fromstring(xml.text.encode())
    assert root.tag == "items"
    assert [child.tag for child in root] == PROJECT_INFO_KEYS
    assert root.findtext("project_id") == "1742"
    assert "<![CDATA[" in xml.text
    rows = list(csv.reader(io.StringIO(rc.call("project", format="csv").text)))
    assert rows[0] == PROJECT_INFO_KEYS
    assert len(rows) == 2


@pytest.mark.parametrize("fmt", ["json", "csv", "xml", None])
def test_version_is_text_csv(rc: Api, demo: DemoFacts, fmt: str | None) -> None:
    resp = rc.call("version", format=fmt)
    assert resp.status_code == 200
    assert resp.text == demo.project["redcap_version"]
    assert resp.headers["content-type"].lower() == CSV_CT


# --- field names ----------------------------------------------------------------------------


def _expected_field_names(demo: DemoFacts) -> list[dict[str, str]]:
    """Export names in dictionary order; each form's ``<form>_complete`` follows its last field
    (a real server lists it: PyCap's doctest, recorded against REDCap, shows ``form_1_complete``)."""
    rows = []

    def plain(name: str) -> dict[str, str]:
        return {"original_field_name": name, "choice_value": "", "export_field_name": name}

    for n, m in enumerate(demo.metadata):
        if m["field_type"] in ("calc", "file", "descriptive"):
            pass
        elif m["field_type"] == "checkbox":
            for choice in m["select_choices_or_calculations"].split("|"):
                code = choice.split(",", 1)[0].strip()
                rows.append(
                    {
                        "original_field_name": m["field_name"],
                        "choice_value": code,
                        "export_field_name": f"{m['field_name']}___{code}",
                    }
                )
        else:
            rows.append(plain(m["field_name"]))
        following = demo.metadata[n + 1]["form_name"] if n + 1 < len(demo.metadata) else None
        if following != m["form_name"]:
            rows.append(plain(f"{m['form_name']}_complete"))
    return rows


def test_export_field_names(rc: Api, demo: DemoFacts) -> None:
    rows = rc.call("exportFieldNames").json()
    assert list(rows[0]) == ["original_field_name", "choice_value", "export_field_name"]
    assert rows == _expected_field_names(demo)


def test_export_field_names_one_field(rc: Api) -> None:
    assert rc.call("exportFieldNames", field="conditions").json() == [
        {"original_field_name": "conditions", "choice_value": c, "export_field_name": f"conditions___{c}"}
        for c in ("1", "2", "3")
    ]


def test_export_field_names_invalid_field(rc: Api) -> None:
    resp = rc.call("exportFieldNames", field="nope")
    assert resp.status_code == 400
    assert "Invalid field" in error_message(resp)


# --- events, arms, mappings -----------------------------------------------------------------


def _as_text(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{k: "" if v is None else str(v) for k, v in r.items()} for r in rows]


def _csv_file(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_events(rc: Api, demo: DemoFacts) -> None:
    rows = rc.call("event").json()
    assert [list(r) for r in rows] == [
        ["event_name", "arm_num", "unique_event_name", "custom_event_label", "event_id"]
    ] * 4
    assert _as_text(rows) == demo.events


def test_events_csv(rc: Api, demo: DemoFacts) -> None:
    resp = rc.call("event", format="csv")
    assert resp.headers["content-type"].lower() == CSV_CT
    assert list(csv.DictReader(io.StringIO(resp.text))) == demo.events
    assert resp.text.splitlines()[0] == "event_name,arm_num,unique_event_name,custom_event_label,event_id"


def test_events_filtered_by_arm(rc: Api, demo: DemoFacts) -> None:
    assert _as_text(rc.call("event", **{"arms[0]": "1"}).json()) == demo.events


def test_arms(rc: Api, demo: DemoFacts) -> None:
    rows = rc.call("arm").json()
    assert [list(r) for r in rows] == [["arm_num", "name"]]
    assert _as_text(rows) == _csv_file(demo.path / "arms.csv")


def test_form_event_mapping(rc: Api, demo: DemoFacts) -> None:
    rows = rc.call("formEventMapping").json()
    assert _as_text(rows) == _csv_file(demo.path / "form_event_mapping.csv")
    assert [list(r) for r in rows] == [["arm_num", "unique_event_name", "form"]] * len(rows)
    xml = rc.call("formEventMapping", format="xml").text
    assert ET.fromstring(xml.encode()).tag == "items"


def _classic(project: dict[str, Any], path: Path) -> None:
    for name in ("arms.csv", "events.csv", "form_event_mapping.csv"):
        (path / name).unlink()
    for model in project["randomizations"]:
        for table in model["allocation_tables"].values():
            (path / table).unlink(missing_ok=True)
    project["randomizations"] = []


@pytest.fixture
def classic(serve_variant: Any) -> Any:
    return serve_variant(_classic)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("event", "You cannot export events for classic projects"),
        ("arm", "You cannot export arms for classic projects"),
        ("formEventMapping", "You cannot export form/event mappings for classic projects"),
    ],
)
def test_classic_project_refuses_longitudinal_exports(classic: Any, content: str, message: str) -> None:
    api = Api(classic.url, classic.token)
    resp = api.call(content)
    assert resp.status_code == 400
    assert resp.json() == {"error": message}
    csv_resp = api.call(content, format="csv")
    assert csv_resp.text == f"ERROR: {message}"


def test_classic_project_info_and_users_without_randomization(classic: Any) -> None:
    api = Api(classic.url, classic.token)
    info = api.call("project").json()
    assert info["is_longitudinal"] == 0
    assert info["randomization_enabled"] == 0
    users = api.call("user").json()
    assert not [k for k in users[0] if k.startswith("random_")]


def test_classic_project_randomize_is_invalid_data(classic: Any) -> None:
    api = Api(classic.url, classic.token)
    api.import_ok([{"record_id": "1", "sex": "0", "age_group": "1"}])
    resp = api.randomize("1", 48213)
    assert resp.status_code == 200
    assert resp.text == "Invalid data supplied"


# --- DAGs and users -------------------------------------------------------------------------


def test_dags(rc: Api, demo: DemoFacts) -> None:
    rows = rc.call("dag").json()
    assert [list(r) for r in rows] == [
        ["data_access_group_name", "unique_group_name", "data_access_group_id"]
    ] * 3
    assert _as_text(rows) == [
        {
            "data_access_group_name": d["data_access_group_name"],
            "unique_group_name": d["unique_group_name"],
            "data_access_group_id": str(d["data_access_group_id"]),
        }
        for d in demo.project["dags"]
    ]
    csv_text = rc.call("dag", format="csv").text
    assert csv_text.splitlines()[0] == "data_access_group_name,unique_group_name,data_access_group_id"


def test_users(rc: Api, demo: DemoFacts) -> None:
    users = rc.call("user").json()
    assert [u["username"] for u in users] == [u["username"] for u in demo.project["users"]]
    for user in users:
        keys = list(user)
        assert keys[:7] == USER_LEADING_KEYS
        assert keys[-2:] == ["forms", "forms_export"]
        for right in ("random_setup", "random_dashboard", "random_perform"):
            assert right in keys
        assert keys.index("random_perform") < keys.index("forms")
    by_name = {u["username"]: u for u in users}
    assert by_name["site_boston"]["data_access_group"] == "boston"
    assert str(by_name["site_boston"]["data_access_group_id"]) == "2201"
    assert by_name["data_manager"]["data_access_group"] == ""
    assert by_name["expired_user"]["expiration"] == "2025-06-30"
    assert str(by_name["no_randomize"]["random_perform"]) == "0"
    assert str(by_name["data_manager"]["random_perform"]) == "1"
    assert str(by_name["monitor"]["api_import"]) == "0"
    assert all(isinstance(u["forms"], dict) and isinstance(u["forms_export"], dict) for u in users)


# --- project XML ----------------------------------------------------------------------------


def test_project_xml_has_randomization_models_without_ids(rc: Api, demo: DemoFacts) -> None:
    resp = rc.call("project_xml", format="xml")
    assert resp.status_code == 200
    text = resp.text
    assert text.startswith("<?xml")
    ET.fromstring(text.encode())  # well-formed
    group = re.search(r"<redcap:RandomizationGroup>(.*?)</redcap:RandomizationGroup>", text, re.S)
    assert group, "no RandomizationGroup"
    models = re.findall(r"<redcap:Randomization\s([^>]*?)/?>", group.group(1))
    assert len(models) == 2
    attrs = [dict(re.findall(r'(\w+)="([^"]*)"', m)) for m in models]
    for attr, model in zip(
        attrs, sorted(demo.project["randomizations"], key=lambda m: m["randomization_id"]), strict=True
    ):
        assert attr["target_field"] == model["target_field"]
        assert attr["target_event"] == model["target_event"]
        assert attr["source_field1"] == "sex"
        assert attr["source_event1"] == "baseline_arm_1"
        assert attr["source_field2"] == "age_group"
        assert attr["source_event2"] == "baseline_arm_1"
        assert attr["group_by"] == "DAG"
        assert "rid" not in attr
    assert "48213" not in text
    assert "48297" not in text


def test_xml_declaration_is_redcaps(rc: Api) -> None:
    assert rc.call("project", format="xml").text.startswith(XML_DECL)
