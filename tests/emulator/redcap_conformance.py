"""Helpers for the emulator's black-box conformance tests.

Everything the tests expect is computed from REDCap's documented behaviour and from the demo
project's own files (``project.json``, ``metadata.csv``, the allocation-table CSVs) — never from
the emulator's code or output. The emulator is driven only through HTTP and its public
``RedcapEmulator`` / ``admin`` API.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

JSON_CT = "application/json; charset=utf-8"
CSV_CT = "text/csv; charset=utf-8"
XML_CT = "text/xml; charset=utf-8"
CONTENT_TYPES = {"json": JSON_CT, "csv": CSV_CT, "xml": XML_CT}
XML_DECL = '<?xml version="1.0" encoding="UTF-8" ?>'

OPEN_RID = 48213
CONCEALED_RID = 48297


def demo_dir() -> Path:
    from airflow_provider_redcap.emulator import demo_project_dir

    return Path(demo_project_dir())


@dataclass
class AllocationRow:
    """One allocation-table row, mapped the way REDCap maps an upload (open vs concealed)."""

    position: int  # 0-based upload order within the whole file
    target: str
    alt: str | None
    strata: dict[str, str]
    group_id: str | None


@dataclass
class DemoFacts:
    """What the demo project folder says, read straight from its files."""

    path: Path
    project: dict[str, Any]
    metadata: list[dict[str, str]]
    events: list[dict[str, str]]
    tokens: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> DemoFacts:
        project = json.loads((path / "project.json").read_text())
        with (path / "metadata.csv").open(newline="") as fh:
            metadata = list(csv.DictReader(fh))
        events: list[dict[str, str]] = []
        if (path / "events.csv").exists():
            with (path / "events.csv").open(newline="") as fh:
                events = list(csv.DictReader(fh))
        tokens = {u["username"]: u["token"] for u in project["users"]}
        return cls(path=path, project=project, metadata=metadata, events=events, tokens=tokens)

    @property
    def dag_ids(self) -> dict[str, str]:
        return {d["unique_group_name"]: str(d["data_access_group_id"]) for d in self.project["dags"]}

    @property
    def event_ids(self) -> dict[str, str]:
        return {e["unique_event_name"]: e["event_id"] for e in self.events}

    def model(self, rid: int) -> dict[str, Any]:
        return next(m for m in self.project["randomizations"] if int(m["randomization_id"]) == rid)

    def is_concealed(self, rid: int) -> bool:
        target = self.model(rid)["target_field"]
        return next(m for m in self.metadata if m["field_name"] == target)["field_type"] == "text"

    def allocation_table(self, rid: int, status: str = "production") -> list[AllocationRow]:
        model = self.model(rid)
        concealed = self.is_concealed(rid)
        with (self.path / model["allocation_tables"][status]).open(newline="") as fh:
            raw = list(csv.DictReader(fh))
        rows = []
        for n, r in enumerate(raw):
            group = r.get("redcap_randomization_group") or None
            number = r.get("redcap_randomization_number") or None
            target, alt = (number, group) if concealed else (group, number)
            rows.append(
                AllocationRow(
                    position=n,
                    target=str(target),
                    alt=alt,
                    strata={s["field"]: r[s["field"]] for s in model["strata"]},
                    group_id=r.get("redcap_data_access_group") or None,
                )
            )
        return rows

    def stratum_rows(
        self, rid: int, sex: str, age_group: str, dag: str, status: str = "production"
    ) -> list[AllocationRow]:
        """Rows of one stratum + DAG in upload order: the order REDCap hands them out."""
        gid = self.dag_ids[dag]
        return [
            r
            for r in self.allocation_table(rid, status)
            if r.strata == {"sex": sex, "age_group": age_group} and r.group_id == gid
        ]


class Api:
    """A thin REDCap API client for tests: form-encoded POSTs, nothing interpreted."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.session = requests.Session()

    def post(
        self, params: Mapping[str, Any] | Sequence[tuple[str, Any]], *, token: str | None = None
    ) -> requests.Response:
        items = list(params.items()) if isinstance(params, Mapping) else list(params)
        if token != "":
            items.insert(0, ("token", token or self.token))
        return self.session.post(self.url, data=items, timeout=60)

    def call(
        self, content: str, *, token: str | None = None, format: str | None = "json", **params: Any
    ) -> requests.Response:
        items: list[tuple[str, Any]] = [("content", content)]
        if format is not None:
            items.append(("format", format))
        items.extend(params.items())
        return self.post(items, token=token)

    def import_rows(
        self, rows: Sequence[Mapping[str, Any]], *, token: str | None = None, **params: Any
    ) -> requests.Response:
        params.setdefault("type", "flat")
        params.setdefault("overwriteBehavior", "normal")
        params.setdefault("returnFormat", "json")
        return self.call("record", token=token, data=json.dumps(list(rows)), **params)

    def import_ok(self, rows: Sequence[Mapping[str, Any]], **params: Any) -> requests.Response:
        resp = self.import_rows(rows, **params)
        assert resp.status_code == 200, resp.text
        return resp

    def export(self, *, token: str | None = None, **params: Any) -> list[dict[str, Any]]:
        params.setdefault("type", "flat")
        resp = self.call("record", token=token, **params)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def randomize(
        self,
        record: str,
        rid: int | str | None,
        *,
        token: str | None = None,
        format: str = "json",
        return_alt: str | None = "true",
    ) -> requests.Response:
        params: dict[str, Any] = {"action": "randomize", "record": record}
        if rid is not None:
            params["randomization_id"] = rid
        if return_alt is not None:
            params["returnAlt"] = return_alt
        return self.call("record", token=token, format=format, **params)

    def enrol(
        self,
        record: str,
        dag: str | None,
        sex: str = "",
        age_group: str = "",
        *,
        token: str | None = None,
    ) -> None:
        """A participant as a site enters one: screening row and baseline (strata) row."""
        age = {"1": "30", "2": "50", "3": "70"}.get(age_group, "45")
        screening = {
            "record_id": record,
            "redcap_event_name": "screening_arm_1",
            "screen_date": "2026-10-01",
            "age": age,
            "eligible": "1",
        }
        baseline = {
            "record_id": record,
            "redcap_event_name": "baseline_arm_1",
            "sex": sex,
            "age_group": age_group,
        }
        if dag is not None:
            screening["redcap_data_access_group"] = dag
            baseline["redcap_data_access_group"] = dag
        resp = self.import_rows([screening, baseline], token=token)
        assert resp.status_code == 200, resp.text


def error_message(resp: requests.Response) -> str:
    """The message inside a JSON error envelope (status must not be 200)."""
    assert resp.status_code != 200
    assert resp.headers["content-type"].lower() == JSON_CT, resp.headers["content-type"]
    body = resp.json()
    assert list(body) == ["error"], body
    return body["error"]


def make_variant(tmp_path: Path, edit: Callable[[dict[str, Any], Path], None]) -> Path:
    """A copy of the demo project folder with ``project.json`` (and files) edited."""
    target = tmp_path / "project"
    shutil.copytree(demo_dir(), target)
    project = json.loads((target / "project.json").read_text())
    edit(project, target)
    (target / "project.json").write_text(json.dumps(project, indent=2))
    return target


# --- shared by the concurrency and durability storms ----------------------------------------

STRATA_CELLS = [(sex, age, dag) for dag in ("boston", "denver", "seattle") for sex in "01" for age in "123"]


def storm_participants(extra: int = 0) -> dict[str, tuple[str, str, str]]:
    """Record id -> (sex, age_group, dag): 3..11 (+extra) participants per stratum, so some strata
    are only partly used and some are exhausted."""
    participants: dict[str, tuple[str, str, str]] = {}
    for n, cell in enumerate(STRATA_CELLS):
        for k in range(3 + n % 9 + extra):
            participants[f"S{n:02d}-{k:02d}"] = cell
    return participants


def storm_import_rows(participants: Mapping[str, tuple[str, str, str]]) -> list[dict[str, str]]:
    rows = []
    for record, (sex, age, dag) in participants.items():
        common = {"record_id": record, "redcap_data_access_group": dag}
        rows.append({**common, "redcap_event_name": "screening_arm_1", "age": "50", "eligible": "1"})
        rows.append({**common, "redcap_event_name": "baseline_arm_1", "sex": sex, "age_group": age})
    return rows


def check_allocation_state(
    demo: DemoFacts,
    rid: int,
    allocations: Sequence[Mapping[str, Any]],
    stored: Mapping[str, str],
    participants: Mapping[str, tuple[str, str, str]],
) -> dict[str, str]:
    """Check the invariants that must hold after any storm, and return record -> used value.

    * the listed production rows are the file's rows, in upload order;
    * each row is used at most once and each record uses at most one row of the model;
    * every used row matches exactly one record's stored target value, and no record holds a
      target value without a row;
    * within each stratum the used rows are a prefix of the stratum's rows (upload order);
    * a record only ever uses a row of its own stratum and DAG.
    """
    rows = [a for a in allocations if int(a["randomization_id"]) == rid and int(a["project_status"]) == 1]
    table = demo.allocation_table(rid, "production")
    assert [(str(a["target_field"]), a["target_field_alt"] or None) for a in rows] == [
        (r.target, r.alt) for r in table
    ], "allocation rows are not the uploaded table in upload order"
    used = {}
    for a, r in zip(rows, table, strict=True):
        if a["is_used_by"]:
            record = str(a["is_used_by"])
            assert record not in used, f"{record} holds two rows of model {rid}"
            used[record] = r
    for record, row in used.items():
        assert record in participants, f"row used by unknown record {record}"
        sex, age, dag = participants[record]
        assert row.strata == {"sex": sex, "age_group": age}
        assert row.group_id == demo.dag_ids[dag]
        assert stored.get(record, "") == row.target, (
            f"{record}: stored {stored.get(record)!r}, row {row.target!r}"
        )
    holders = {rec for rec, value in stored.items() if value != ""}
    assert holders == set(used), f"records holding a value without a row: {sorted(holders - set(used))}"
    for sex, age, dag in STRATA_CELLS:
        flags = [
            bool(a["is_used_by"])
            for a, r in zip(rows, table, strict=True)
            if r.strata == {"sex": sex, "age_group": age} and r.group_id == demo.dag_ids[dag]
        ]
        assert flags == sorted(flags, reverse=True), (
            f"stratum {sex}/{age}/{dag} not used in upload order: {flags}"
        )
    return {record: row.target for record, row in used.items()}
