"""A small in-memory REDCap behind requests-mock (and httpx), for operator/sensor/trigger unit tests.

It serves the demo project's data dictionary, events and form-event mapping from the packaged demo
folder and answers the way the REDCap reference describes (randomize refusals as HTTP 200 plain
text, ``"0"`` as a value, target written in the target event). Allocation is deliberately simple:
each model hands out its ``allocations`` in order, whatever the stratum; tests that need REDCap's real
allocation rules use the emulator (integration tests).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import requests

import airflow_provider_redcap

DEMO_DIR = Path(airflow_provider_redcap.__file__).parent / "emulator" / "projects" / "demo_trial"
URL = "https://redcap.example.org/redcap/api/"
TOKEN = "0123456789ABCDEF0123456789ABCDEF"
CONNECTION_JSON = json.dumps(
    {
        "conn_type": "redcap",
        "host": URL,
        "password": TOKEN,
        "extra": {"max_retries": 1, "retry_wait": 0, "requests_per_minute": 500},
    }
)
OPEN_RID = 48213
CONCEALED_RID = 48297
PK = "record_id"
STRATA = (("sex", "baseline_arm_1"), ("age_group", "baseline_arm_1"))
_ARRAY_KEY = re.compile(r"^(?P<name>[^\[]+)\[\d*\]$")


def read_csv(name: str) -> list[dict[str, str]]:
    with (DEMO_DIR / name).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@dataclass
class Model:
    rid: int
    target_field: str
    target_event: str
    concealed: bool
    allocations: list[tuple[str, str | None]]
    strata: tuple[tuple[str, str], ...] = STRATA
    group_by_dag: bool = True


@dataclass
class FakeRedcap:
    """State plus a request handler; ``calls`` records every request's parsed form (without token)."""

    metadata: list[dict[str, str]] = field(default_factory=lambda: read_csv("metadata.csv"))
    events: list[dict[str, Any]] = field(default_factory=lambda: read_csv("events.csv"))
    mapping: list[dict[str, str]] = field(default_factory=lambda: read_csv("form_event_mapping.csv"))
    models: dict[int, Model] = field(default_factory=dict)
    rows: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    dags: dict[str, str] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    #: record -> scripted faults for its next randomize calls: "drop_after_commit",
    #: "error_before_commit", "drop_before_commit", "commit_then_refuse", "timeout_still_running"
    faults: dict[str, list[str]] = field(default_factory=dict)
    #: record -> (rid, value) of a randomize call the client gave up on while REDCap still works on it
    running: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: content -> number of upcoming requests of that content to fail with HTTP 503
    outages: dict[str, int] = field(default_factory=dict)
    #: contents answered with 403 (no API rights)
    forbidden: set[str] = field(default_factory=set)
    #: fields REDCap leaves out of exports for this user (De-identified or no-access export rights)
    unexportable: set[str] = field(default_factory=set)
    #: 1-based numbers of import requests REDCap refuses (HTTP 400, a field error line)
    refused_imports: set[int] = field(default_factory=set)
    committed: list[tuple[int, str, str]] = field(default_factory=list)
    next_auto_id: int = 900

    def __post_init__(self) -> None:
        if not self.models:
            self.models = {
                OPEN_RID: Model(
                    OPEN_RID,
                    "rand_arm",
                    "randomization_arm_1",
                    False,
                    [("2", "R-0001"), ("1", "R-0002"), ("3", "R-0003")],
                ),
                CONCEALED_RID: Model(
                    CONCEALED_RID,
                    "kit_number",
                    "randomization_arm_1",
                    True,
                    [("K-1062", "1"), ("K-1033", "2")],
                ),
            }

    # -- set-up helpers -----------------------------------------------------------------------------

    def add(self, record: str, event: str, **values: str) -> None:
        row = self.rows.setdefault((record, event), {PK: record, "redcap_event_name": event})
        row.update(values)

    def add_participant(
        self, record: str, *, sex: str = "0", age_group: str = "2", dag: str | None = "boston"
    ) -> None:
        self.add(record, "screening_arm_1", age="40")
        self.add(record, "baseline_arm_1", sex=sex, age_group=age_group)
        if dag:
            self.dags[record] = dag

    def calls_of(self, content: str, action: str | None = None) -> list[dict[str, Any]]:
        return [c for c in self.calls if c.get("content") == content and c.get("action") == action]

    def install(self, requests_mock: Any) -> FakeRedcap:
        requests_mock.post(URL, text=self.handle)
        return self

    # -- the handler -----------------------------------------------------------------------------------

    def handle(self, request: Any, context: Any) -> str:
        status, body, content_type = self.respond(request.text)
        context.status_code = status
        context.headers["Content-Type"] = content_type
        return body

    def respond(self, body: str) -> tuple[int, str, str]:
        form: dict[str, Any] = {}
        for key, value in parse_qsl(body, keep_blank_values=True):
            match = _ARRAY_KEY.match(key)
            if match:
                form.setdefault(match.group("name"), []).append(value)
            else:
                form[key] = value
        assert form.pop("token") == TOKEN
        self.calls.append(form)
        content = form.get("content")
        if self.outages.get(content, 0) > 0:
            self.outages[content] -= 1
            return 503, json.dumps({"error": "Service Unavailable"}), "application/json"
        if content in self.forbidden:
            return (
                403,
                json.dumps({"error": "You do not have permissions to use the API"}),
                "application/json",
            )
        handler: Callable[[dict[str, Any]], Any] = {
            "project": self._project,
            "version": lambda f: "15.7.6",
            "metadata": self._metadata,
            "event": lambda f: self.events,
            "formEventMapping": lambda f: self.mapping,
            "repeatingFormsEvents": lambda f: [],
            "dag": lambda f: [
                {"data_access_group_name": d.title(), "unique_group_name": d, "data_access_group_id": i}
                for i, d in ((2201, "boston"), (2202, "denver"), (2203, "seattle"))
            ],
            "project_xml": self._project_xml,
            "record": self._record,
        }[content]
        result = handler(form)
        if isinstance(result, tuple):
            return result
        if isinstance(result, str):
            return (
                200,
                result,
                "text/csv; charset=utf-8" if content == "version" else "text/xml; charset=utf-8",
            )
        return 200, json.dumps(result), "application/json; charset=utf-8"

    def _project(self, form: dict[str, Any]) -> dict[str, Any]:
        return {
            "project_id": 1742,
            "project_title": "ASTER-3",
            "in_production": 1,
            "is_longitudinal": 1,
            "has_repeating_instruments_or_events": 0,
            "randomization_enabled": 1,
            "record_autonumbering_enabled": 0,
        }

    def _metadata(self, form: dict[str, Any]) -> list[dict[str, str]]:
        wanted = form.get("fields")
        return [m for m in self.metadata if not wanted or m["field_name"] in wanted]

    def _project_xml(self, form: dict[str, Any]) -> str:
        items = []
        for model in self.models.values():
            strata = "".join(
                f' source_field{n}="{f}" source_event{n}="{e}"'
                for n, (f, e) in enumerate(model.strata, start=1)
            )
            group = ' group_by="DAG"' if model.group_by_dag else ""
            items.append(
                f'<redcap:Randomization target_field="{model.target_field}" '
                f'target_event="{model.target_event}"{strata}{group} stratified="1"/>'
            )
        return (
            '<?xml version="1.0" encoding="UTF-8" ?>\n<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" '
            'xmlns:redcap="https://projectredcap.org"><Study OID="Project.1742"><GlobalVariables>'
            f"<redcap:RandomizationGroup>{''.join(items)}</redcap:RandomizationGroup>"
            "</GlobalVariables></Study></ODM>"
        )

    def _record(self, form: dict[str, Any]) -> Any:
        if form.get("action") == "randomize":
            return self._randomize(form)
        if "data" in form:
            return self._import(form)
        return self._export(form)

    def _export(self, form: dict[str, Any]) -> Any:
        records = form.get("records")
        fields = form.get("fields")
        events = form.get("events")
        known = {m["field_name"] for m in self.metadata}
        bad = [f for f in fields or () if f not in known]
        if bad:
            names = ", ".join(f"'{b}'" for b in bad)
            return (
                400,
                json.dumps(
                    {"error": f'The following values in the parameter "fields" are not valid: {names}'}
                ),
                "application/json",
            )
        event_order = [e["unique_event_name"] for e in self.events]
        out = []
        keys = sorted(self.rows, key=lambda k: (k[0], event_order.index(k[1])))
        for record, event in keys:
            if records is not None and record not in records:
                continue
            if events is not None and event not in events:
                continue
            stored = self.rows[(record, event)]
            names = fields or [m["field_name"] for m in self.metadata]
            names = [n for n in names if n not in self.unexportable]
            row = {PK: record} if PK in names else {}
            row["redcap_event_name"] = event
            for name in names:
                if name != PK:
                    row[name] = stored.get(name, "")
            if str(form.get("exportDataAccessGroups")).lower() in ("true", "1"):
                row["redcap_data_access_group"] = self.dags.get(record, "")
            out.append(row)
        return out

    def _import(self, form: dict[str, Any]) -> Any:
        data = json.loads(form["data"])
        if (
            len([c for c in self.calls if c.get("content") == "record" and "data" in c])
            in self.refused_imports
        ):
            first = data[0][PK]
            line = f'"{first}","age","abc","The value of age must be an integer."'
            return 400, json.dumps({"error": line}), "application/json"
        auto = str(form.get("forceAutoNumber")).lower() in ("true", "1")
        ids: list[str] = []
        pairs: list[str] = []
        renamed: dict[str, str] = {}
        for row in data:
            original = row[PK]
            record = original
            if auto:
                if original not in renamed:
                    self.next_auto_id += 1
                    renamed[original] = str(self.next_auto_id)
                    pairs.append(f"{renamed[original]},{original}")
                record = renamed[original]
            values = {
                k: v for k, v in row.items() if k not in (PK, "redcap_event_name", "redcap_data_access_group")
            }
            if form.get("overwriteBehavior") != "overwrite":
                values = {k: v for k, v in values.items() if v != ""}
            self.add(record, row["redcap_event_name"], **values)
            if row.get("redcap_data_access_group"):
                self.dags[record] = row["redcap_data_access_group"]
            if record not in ids:
                ids.append(record)
        return pairs if auto else ids

    def _randomize(self, form: dict[str, Any]) -> Any:
        record = form["record"]
        rid = int(form["randomization_id"])
        fault = self.faults.get(record, [None]).pop(0) if self.faults.get(record) else None
        if fault == "drop_before_commit":
            raise requests.exceptions.ConnectionError("Connection aborted: RemoteDisconnected")
        if fault == "error_before_commit":
            return 502, "<html><body>Bad Gateway</body></html>", "text/html"
        model = self.models.get(rid)
        if model is None:
            return "Invalid data supplied"
        if not any(r == record for r, _ in self.rows):
            return "Cannot randomize. Record does not exist."
        target_row = self.rows.get((record, model.target_event), {})
        if target_row.get(model.target_field, "") != "":
            return "Cannot randomize. Randomization already completed for record."
        if model.group_by_dag and not self.dags.get(record):
            return "Cannot randomize. Record not assigned to a DAG"
        event_ids = {e["unique_event_name"]: e["event_id"] for e in self.events}
        missing = [
            f"{f} (event {event_ids[e]})"
            for f, e in model.strata
            if self.rows.get((record, e), {}).get(f, "") == ""
        ]
        if missing:
            return "Cannot randomize. Missing stratification data for fields: " + ",".join(missing)
        if not model.allocations:
            return "Cannot randomize. No allocations available."
        value, alt = model.allocations.pop(0)
        if fault == "timeout_still_running":
            # The client times out; REDCap has passed its checks and writes later, after the next call's.
            self.running[record] = (rid, value)
            raise requests.exceptions.ReadTimeout("Read timed out. (read timeout=30)")
        self.add(record, model.target_event, **{model.target_field: value})
        self.committed.append((rid, record, value))
        if record in self.running:
            late_rid, late_value = self.running.pop(record)
            self.add(record, model.target_event, **{model.target_field: late_value})
            self.committed.append((late_rid, record, late_value))
        if fault == "commit_then_refuse":  # another run randomized it between our read and our call
            return "Cannot randomize. Randomization already completed for record."
        if fault == "drop_after_commit":
            raise requests.exceptions.ConnectionError("Connection aborted: RemoteDisconnected")
        answer: dict[str, Any] = {
            "randomization_id": rid,
            "record": record,
            "target_field": value,
            "target_field_name": model.target_field,
        }
        if form.get("returnAlt") in ("true", "1"):
            answer["target_field_alt"] = "*" if model.concealed else alt
        return answer
