"""A classic (non-longitudinal) stratified randomization project without DAG grouping.

Shaped like the public ``redcap-test-datasets`` case-20 randomization project (dropdown target and
strata, no DAGs); the fixture ``projects/fidelity_classic_rand`` is our own. Expected values come from
the reference (§1.1, §1.2, §1.5, §1.10, §1.13, §2) and the fixture's allocation table file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as ET
import pytest
import requests

pytestmark = pytest.mark.integration

FOLDER = Path(__file__).parent / "projects" / "fidelity_classic_rand"
RID = 30917
EVENT_ID = 61003  # project.json "event_id": the classic project's only event
TARGET_MESSAGE = (
    "This field ('arm') cannot be modified because it has been set as this project's randomization field,  "
    "which can never be modified for any record. This field MUST be removed from the uploaded data file."
)


def _dev_rows() -> list[dict[str, str]]:
    with (FOLDER / "alloc_dev.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def served() -> Iterator[Any]:
    from airflow_provider_redcap.emulator import RedcapEmulator

    with RedcapEmulator(FOLDER).serve(host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
def server(served: Any) -> Any:
    served.admin.reset()
    return served


def _post(server: Any, **params: Any) -> requests.Response:
    params.setdefault("format", "json")
    params["token"] = server.token
    return requests.post(server.url, data=params, timeout=30)


def _import(server: Any, rows: list[dict[str, str]]) -> requests.Response:
    return _post(server, content="record", data=json.dumps(rows))


def _randomize(server: Any, record: str, **extra: Any) -> requests.Response:
    return _post(server, content="record", action="randomize", record=record, randomization_id=RID, **extra)


def test_project_info_and_user_rights_show_randomization(server: Any) -> None:
    info = _post(server, content="project").json()
    assert info["randomization_enabled"] == 1
    assert info["is_longitudinal"] == 0
    user = _post(server, content="user").json()[0]
    keys = list(user)
    assert keys[keys.index("random_setup") : keys.index("random_setup") + 3] == [
        "random_setup",
        "random_dashboard",
        "random_perform",
    ]
    assert keys[-2:] == ["forms", "forms_export"]


def test_missing_stratum_names_the_only_event_id(server: Any) -> None:
    assert _import(server, [{"record_id": "1", "sex": "0"}]).status_code == 200
    resp = _randomize(server, "1")
    assert (resp.status_code, resp.text) == (
        200,
        f"Cannot randomize. Missing stratification data for fields: region (event {EVENT_ID})",
    )


def test_development_table_is_used_and_missing_number_is_json_null(server: Any) -> None:
    assert _import(server, [{"record_id": "2", "sex": "1", "region": "2"}]).status_code == 200
    resp = _randomize(server, "2", returnAlt="true")
    expected = next(r for r in _dev_rows() if (r["sex"], r["region"]) == ("1", "2"))
    assert resp.text == (
        f'{{"randomization_id":{RID},"record":"2","target_field":"{expected["redcap_randomization_group"]}",'
        '"target_field_name":"arm","target_field_alt":null}'
    )
    row = _post(server, content="record", records="2", fields="arm").json()
    assert row == [{"arm": expected["redcap_randomization_group"]}]


def test_record_without_dag_randomizes_when_the_model_ignores_dags(server: Any) -> None:
    assert _import(server, [{"record_id": "3", "sex": "0", "region": "1"}]).status_code == 200
    assert json.loads(_randomize(server, "3").text)["record"] == "3"


def test_target_column_is_refused_even_when_blank_and_unrandomized(server: Any) -> None:
    resp = _import(server, [{"record_id": "4", "sex": "0", "arm": ""}])
    assert resp.status_code == 400
    assert TARGET_MESSAGE in json.loads(resp.text)["error"]


def test_strata_change_after_randomization_is_refused_with_the_pk_label(server: Any) -> None:
    assert _import(server, [{"record_id": "5", "sex": "0", "region": "1"}]).status_code == 200
    assert _randomize(server, "5").status_code == 200
    resp = _import(server, [{"record_id": "5", "region": "3"}])
    assert resp.status_code == 400
    assert (
        "Participant '5' has already been randomized, thus this field ('region'), which is a "
        "randomization strata field, cannot be modified for this record. You MUST remove this field's "
        "value  for this record from the uploaded data file."
    ) in json.loads(resp.text)["error"]
    # a non-stratum field of the randomized record still imports
    assert _import(server, [{"record_id": "5", "score": "12"}]).status_code == 200


def test_project_xml_describes_the_model_without_its_id(server: Any) -> None:
    resp = _post(server, content="project_xml")
    assert resp.status_code == 200
    root = ET.fromstring(resp.content)
    models = [el for el in root.iter() if el.tag.endswith("}Randomization")]
    assert len(models) == 1
    attrs = models[0].attrib
    assert attrs["target_field"] == "arm"
    assert (attrs["source_field1"], attrs["source_field2"]) == ("sex", "region")
    assert attrs.get("group_by", "") == ""
    assert str(RID) not in resp.text
