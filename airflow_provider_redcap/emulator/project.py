"""Load and validate a project folder: the emulator's static description of one REDCap project.

The folder holds ``project.json`` (settings, DAGs, users, randomization models), ``metadata.csv``
(the data dictionary), optional ``arms.csv``/``events.csv``/``form_event_mapping.csv`` for
longitudinal projects, ``repeating_forms_events.csv``, ``records.csv`` (seed data) and the
allocation tables the randomization models name. Anything REDCap would refuse is refused here, with
a :class:`ProjectError` naming the file, so that a broken fixture fails at start-up, not mid-test.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_REDCAP_VERSION = "15.7.6"

METADATA_COLUMNS = (
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
)

# REDCap's data dictionary upload headers, in the same order as METADATA_COLUMNS.
_UPLOAD_HEADERS = (
    "Variable / Field Name",
    "Form Name",
    "Section Header",
    "Field Type",
    "Field Label",
    "Choices, Calculations, OR Slider Labels",
    "Field Note",
    "Text Validation Type OR Show Slider Number",
    "Text Validation Min",
    "Text Validation Max",
    "Identifier?",
    "Branching Logic (Show field only if...)",
    "Required Field?",
    "Custom Alignment",
    "Question Number (surveys only)",
    "Matrix Group Name",
    "Matrix Ranking?",
    "Field Annotation",
)

_FIELD_TYPE_ALIASES = {"select": "dropdown", "textarea": "notes"}
_VALIDATION_ALIASES = {
    "int": "integer",
    "float": "number",
    "date": "date_ymd",
    "datetime": "datetime_ymd",
    "datetime_seconds": "datetime_seconds_ymd",
}
CATEGORICAL_TYPES = frozenset({"radio", "dropdown", "yesno", "truefalse", "checkbox"})
NON_DATA_TYPES = frozenset({"descriptive"})
RIGHT_NAMES = (
    "design",
    "alerts",
    "user_rights",
    "data_access_groups",
    "reports",
    "stats_and_charts",
    "manage_survey_participants",
    "calendar",
    "data_import_tool",
    "data_comparison_tool",
    "logging",
    "email_logging",
    "file_repository",
    "data_quality_create",
    "data_quality_execute",
    "api_export",
    "api_import",
    "api_modules",
    "record_create",
    "record_rename",
    "record_delete",
    "lock_records_all_forms",
    "lock_records",
    "lock_records_customization",
    "random_setup",
    "random_dashboard",
    "random_perform",
)
# Rights a user has unless project.json says otherwise: "Full Data Set" export, create records.
_DEFAULT_RIGHTS = {"data_export": 1, "record_create": 1, "data_import_tool": 1}


class ProjectError(ValueError):
    """The project folder is not something REDCap would accept."""


@dataclass(frozen=True)
class Field:
    """One row of the data dictionary (API export names; values normalised the way REDCap exports)."""

    name: str
    form: str
    field_type: str
    label: str
    validation: str
    choices: dict[str, str]
    minimum: str
    maximum: str
    annotation: str
    row: dict[str, str]

    @property
    def is_checkbox(self) -> bool:
        return self.field_type == "checkbox"

    @property
    def is_categorical(self) -> bool:
        return self.field_type in CATEGORICAL_TYPES

    @property
    def hard_range(self) -> bool:
        return "@FORCE-MINMAX" in self.annotation.upper()


@dataclass(frozen=True)
class Event:
    event_id: int
    unique_name: str
    name: str
    arm_num: int
    custom_label: str
    day_offset: str = ""
    offset_min: str = ""
    offset_max: str = ""


@dataclass(frozen=True)
class Dag:
    group_id: int
    unique_name: str
    label: str


@dataclass(frozen=True)
class User:
    username: str
    token: str
    rights: dict[str, int]
    data_access_group: str | None
    expiration: str | None
    info: dict[str, str]
    suspended: bool = False

    def has(self, right: str) -> bool:
        return int(self.rights.get(right, 0) or 0) >= 1

    def __repr__(self) -> str:  # keeps the token out of test output and logs
        return f"User(username={self.username!r}, data_access_group={self.data_access_group!r})"


@dataclass(frozen=True)
class AllocationRow:
    project_status: int
    target_field: str | None
    target_field_alt: str | None
    strata: tuple[str, ...]
    group_id: int | None


@dataclass(frozen=True)
class Randomization:
    rid: int
    target_field: str
    target_event_id: int
    strata: tuple[tuple[str, int], ...]
    group_by_dag: bool
    blinded: bool
    allocations: tuple[AllocationRow, ...]
    trigger_option: int = 0


@dataclass
class Project:
    """Everything static about one emulated project."""

    folder: Path
    info: dict[str, Any]
    fields: dict[str, Field]
    forms: list[str]
    form_labels: dict[str, str]
    longitudinal: bool
    arms: dict[int, str]
    events: list[Event]
    form_events: dict[int, list[str]]
    repeating: list[dict[str, str]]
    dags: list[Dag]
    users: list[User]
    randomizations: list[Randomization]
    seed_csv: str | None
    redcap_version: str = DEFAULT_REDCAP_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """A digest of the folder's files, so stored state is only reused for the same project."""
        digest = hashlib.sha256()
        for path in sorted(self.folder.iterdir()):
            if path.is_file() and path.suffix in (".json", ".csv"):
                digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()

    @property
    def project_id(self) -> int:
        return int(self.info["project_id"])

    @property
    def pk(self) -> str:
        return next(iter(self.fields))

    @property
    def status(self) -> int:
        return int(self.info.get("in_production", 0))

    def event_by_name(self, unique_name: str) -> Event | None:
        return next((e for e in self.events if e.unique_name == unique_name), None)

    def event_by_id(self, event_id: int) -> Event:
        return next(e for e in self.events if e.event_id == event_id)

    def dag_by_name(self, unique_name: str) -> Dag | None:
        return next((d for d in self.dags if d.unique_name == unique_name), None)

    def dag_by_id(self, group_id: int | None) -> Dag | None:
        return next((d for d in self.dags if d.group_id == group_id), None)

    def randomization(self, rid: int) -> Randomization | None:
        return next((r for r in self.randomizations if r.rid == rid), None)

    def form_fields(self, form: str) -> list[Field]:
        return [f for f in self.fields.values() if f.form == form]

    def repeating_form(self, event_id: int, form: str) -> bool:
        event = self.event_by_id(event_id)
        return any(
            r["event_name"] == event.unique_name and r.get("form_name", "") == form for r in self.repeating
        )

    def repeating_event(self, event_id: int) -> bool:
        event = self.event_by_id(event_id)
        return any(r["event_name"] == event.unique_name and not r.get("form_name") for r in self.repeating)

    @property
    def has_repeating(self) -> bool:
        return bool(self.repeating)

    def export_field_names(self, fld: Field) -> list[str]:
        """Column names a field has in flat exports and imports."""
        if fld.is_checkbox:
            return [f"{fld.name}___{checkbox_code_suffix(code)}" for code in fld.choices]
        return [fld.name]


def checkbox_code_suffix(code: str) -> str:
    """REDCap's export form of a checkbox code: lower-cased, ``-`` and ``.`` become ``_``."""
    return code.lower().replace("-", "_").replace(".", "_")


def parse_choices(field_type: str, raw: str) -> dict[str, str]:
    if field_type == "yesno":
        return {"1": "Yes", "0": "No"}
    if field_type == "truefalse":
        return {"1": "True", "0": "False"}
    if field_type not in CATEGORICAL_TYPES or not raw.strip():
        return {}
    choices: dict[str, str] = {}
    for part in raw.split("|"):
        code, _, label = part.strip().partition(",")
        choices[code.strip()] = label.strip()
    return choices


def unique_event_name(label: str, arm_num: int, taken: set[str]) -> str:
    """REDCap's unique event name: the cleaned label, ``_arm_<n>``, letters appended on clashes."""
    base = re.sub(r"[^0-9a-z_ ]", "", label, flags=re.IGNORECASE).replace(" ", "_")[:18].lower().strip("_")
    if not base:
        base = hashlib.md5(label.encode()).hexdigest()[:10]
    name = f"{base}_arm_{arm_num}"
    suffix = ord("a")
    while name in taken:
        name = f"{base}{chr(suffix)}_arm_{arm_num}"
        suffix += 1
    return name


def _read_csv(path: Path) -> list[dict[str, str]]:
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        return []
    return [{(k or "").strip(): (v or "") for k, v in row.items()} for row in reader]


def _header_key(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


_HEADER_MAP = {_header_key(h): c for h, c in zip(_UPLOAD_HEADERS, METADATA_COLUMNS, strict=True)}
_HEADER_MAP.update({_header_key(c): c for c in METADATA_COLUMNS})


def load_metadata(path: Path) -> list[dict[str, str]]:
    """Read a data dictionary in REDCap's upload or API export column names into API export rows."""
    rows = _read_csv(path)
    if not rows:
        raise ProjectError(f"{path.name}: the data dictionary is empty")
    unknown = [h for h in rows[0] if _header_key(h) not in _HEADER_MAP]
    if unknown:
        raise ProjectError(f"{path.name}: unknown data dictionary columns: {', '.join(unknown)}")
    out = []
    for row in rows:
        norm = dict.fromkeys(METADATA_COLUMNS, "")
        for header, value in row.items():
            norm[_HEADER_MAP[_header_key(header)]] = value.strip() if header else value
        norm["field_type"] = _FIELD_TYPE_ALIASES.get(norm["field_type"].lower(), norm["field_type"].lower())
        validation = norm["text_validation_type_or_show_slider_number"]
        norm["text_validation_type_or_show_slider_number"] = _VALIDATION_ALIASES.get(validation, validation)
        if norm["field_type"] == "slider" and not norm["custom_alignment"]:
            norm["custom_alignment"] = "RV"  # REDCap's default slider alignment, written out on export
        for flag in ("identifier", "required_field", "matrix_ranking"):
            norm[flag] = "y" if norm[flag].lower() in ("y", "yes", "1") else ""
        out.append(norm)
    return out


def _build_fields(rows: list[dict[str, str]], where: str) -> tuple[dict[str, Field], list[str]]:
    fields: dict[str, Field] = {}
    forms: list[str] = []
    for row in rows:
        name, form = row["field_name"], row["form_name"]
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ProjectError(f"{where}: invalid variable name {name!r}")
        if not form:
            raise ProjectError(f"{where}: field {name!r} has no form name")
        if name in fields:
            raise ProjectError(f"{where}: duplicate variable name {name!r}")
        if form not in forms:
            forms.append(form)
        elif forms[-1] != form:
            raise ProjectError(f"{where}: the fields of form {form!r} are not contiguous")
        ftype = row["field_type"]
        if ftype == "sql":
            # REDCap exports SQL fields as dropdowns; their choices come from a query we cannot run.
            row["field_type"] = "dropdown"
        choices = parse_choices(ftype, row["select_choices_or_calculations"])
        if ftype in ("radio", "dropdown", "checkbox") and not choices:
            raise ProjectError(f"{where}: field {name!r} of type {ftype} has no choices")
        fields[name] = Field(
            name=name,
            form=form,
            field_type=ftype,
            label=row["field_label"],
            validation=row["text_validation_type_or_show_slider_number"] if ftype == "text" else "",
            choices=choices,
            minimum=row["text_validation_min"],
            maximum=row["text_validation_max"],
            annotation=row["field_annotation"],
            row=row,
        )
    return fields, forms


def _load_events(
    folder: Path, info: dict[str, Any], forms: list[str]
) -> tuple[bool, dict[int, str], list[Event], dict[int, list[str]]]:
    events_path = folder / "events.csv"
    if not events_path.exists():
        event_id = int(info.get("event_id", 40000 + int(info["project_id"])))
        event = Event(event_id, "event_1_arm_1", "Event 1", 1, "")
        return False, {1: "Arm 1"}, [event], {event_id: list(forms)}
    arms: dict[int, str] = {}
    if (folder / "arms.csv").exists():
        for row in _read_csv(folder / "arms.csv"):
            arms[int(row["arm_num"])] = row.get("name") or row.get("arm_name") or f"Arm {row['arm_num']}"
    events: list[Event] = []
    taken: set[str] = set()
    next_id = int(info.get("first_event_id", 40000 + int(info["project_id"])))
    for row in _read_csv(events_path):
        arm = int(row.get("arm_num") or 1)
        arms.setdefault(arm, f"Arm {arm}")
        name = row.get("event_name") or row.get("unique_event_name", "")
        unique = row.get("unique_event_name") or unique_event_name(name, arm, taken)
        if unique in taken:
            raise ProjectError(f"events.csv: duplicate unique event name {unique!r}")
        taken.add(unique)
        event_id = int(row["event_id"]) if row.get("event_id") else next_id
        next_id = max(next_id, event_id) + 1
        events.append(
            Event(
                event_id=event_id,
                unique_name=unique,
                name=name,
                arm_num=arm,
                custom_label=row.get("custom_event_label", ""),
                day_offset=row.get("day_offset", ""),
                offset_min=row.get("offset_min", ""),
                offset_max=row.get("offset_max", ""),
            )
        )
    if not events:
        raise ProjectError("events.csv: no events")
    by_name = {e.unique_name: e for e in events}
    mapping: dict[int, list[str]] = {e.event_id: [] for e in events}
    mapping_path = folder / "form_event_mapping.csv"
    if not mapping_path.exists():
        raise ProjectError("form_event_mapping.csv is required for a longitudinal project")
    for row in _read_csv(mapping_path):
        mapped = by_name.get(row.get("unique_event_name", ""))
        form = row.get("form") or row.get("form_name", "")
        if mapped is None:
            raise ProjectError(f"form_event_mapping.csv: unknown event {row.get('unique_event_name')!r}")
        if form not in forms:
            raise ProjectError(f"form_event_mapping.csv: unknown form {form!r}")
        if form not in mapping[mapped.event_id]:
            mapping[mapped.event_id].append(form)
    # Keep each event's forms in the data dictionary's order, as REDCap does.
    for event_id, event_forms in mapping.items():
        mapping[event_id] = [f for f in forms if f in event_forms]
    return True, dict(sorted(arms.items())), events, mapping


def _load_dags(info: dict[str, Any]) -> list[Dag]:
    dags = []
    for raw in info.get("dags", []):
        unique = raw.get("unique_group_name") or raw.get("unique_name") or raw.get("name")
        label = raw.get("data_access_group_name") or raw.get("label") or unique
        group_id = raw.get("data_access_group_id") or raw.get("group_id") or raw.get("id")
        if not unique or group_id is None:
            raise ProjectError(f"project.json: a DAG needs a unique name and a numeric id: {raw!r}")
        dags.append(Dag(int(group_id), str(unique), str(label)))
    return dags


def _load_users(info: dict[str, Any], dags: list[Dag]) -> list[User]:
    users = []
    seen_tokens: set[str] = set()
    for raw in info.get("users", []):
        username = raw.get("username")
        token = str(raw.get("token") or raw.get("api_token") or "")
        if not username or not re.fullmatch(r"[A-Za-z0-9]{32}", token):
            raise ProjectError(f"project.json: user {username!r} needs a 32-character alphanumeric token")
        if token in seen_tokens:
            raise ProjectError(f"project.json: user {username!r} reuses another user's token")
        seen_tokens.add(token)
        rights = dict(_DEFAULT_RIGHTS)
        nested = raw.get("rights", {})
        if isinstance(nested, list):
            nested = dict.fromkeys(nested, 1)
        for key, value in {**raw, **nested}.items():
            if key in RIGHT_NAMES or key in ("data_export",) or key.startswith(("random_", "api_")):
                rights[key] = int(value)
        dag = raw.get("data_access_group") or None
        if dag is not None and not any(d.unique_name == dag for d in dags):
            raise ProjectError(f"project.json: user {username!r} is in unknown DAG {dag!r}")
        info_keys = {k: str(raw.get(k, "")) for k in ("email", "firstname", "lastname")}
        users.append(
            User(
                str(username),
                token,
                rights,
                dag,
                raw.get("expiration") or None,
                info_keys,
                bool(raw.get("suspended", False)),
            )
        )
    if not users:
        raise ProjectError("project.json: at least one user is needed")
    return users


def load_allocation_table(
    path: Path, project_status: int, target: Field, strata: list[Field], group_by_dag: bool, dags: list[Dag]
) -> list[AllocationRow]:
    """Read one allocation table and check it the way REDCap checks an uploaded one."""
    where = path.name
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise ProjectError(f"{where}: Uploaded file was empty.")
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader)]
    blinded = target.field_type == "text"
    main = "redcap_randomization_number" if blinded else "redcap_randomization_group"
    other = "redcap_randomization_group" if blinded else "redcap_randomization_number"
    expected = [main] + [s.name for s in strata] + (["redcap_data_access_group"] if group_by_dag else [])
    cols = [main if h == target.name else h for h in header]
    if main not in cols or sorted(c for c in cols if c != other) != sorted(expected):
        raise ProjectError(
            f"{where}: The header variables in the first row of your CSV file are not correct. "
            f'The first row should be the following: "{",".join(expected)}"'
        )
    rows: list[AllocationRow] = []
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        row = dict(zip(cols, (v.strip() for v in values), strict=False))
        for col in expected:
            if row.get(col, "") == "":
                raise ProjectError(f'{where}: Empty values detected in column "{col}"')
        if not blinded and row[main] not in target.choices:
            raise ProjectError(
                f'{where}: "{row[main]}" is not a valid categorical option for the field "{target.name}"'
            )
        for s in strata:
            if row[s.name] not in s.choices:
                raise ProjectError(
                    f'{where}: "{row[s.name]}" is not a valid categorical option for the field "{s.name}"'
                )
        group_id = None
        if group_by_dag:
            dag_value = row["redcap_data_access_group"]
            if not dag_value.isdigit() or not any(d.group_id == int(dag_value) for d in dags):
                raise ProjectError(
                    f'{where}: "{dag_value}" is not a valid data access group id '
                    'for "redcap_data_access_group"'
                )
            group_id = int(dag_value)
        alt = row.get(other) or None
        rows.append(
            AllocationRow(project_status, row[main], alt, tuple(row[s.name] for s in strata), group_id)
        )
    if not rows:
        raise ProjectError(f"{where}: Uploaded file was empty.")
    return rows


def _table_paths(raw: dict[str, Any]) -> dict[int, str]:
    tables = raw.get("allocation_tables") or raw.get("allocations") or raw.get("allocation_table") or {}
    if isinstance(tables, str):
        tables = {"development": tables, "production": tables}
    out: dict[int, str] = {}
    for key, status in (("development", 0), ("production", 1), ("dev", 0), ("prod", 1), ("0", 0), ("1", 1)):
        value = tables.get(key) or raw.get(key) or raw.get(f"allocation_{key}")
        if value and status not in out:
            out[status] = value
    return out


def _load_randomizations(
    folder: Path,
    info: dict[str, Any],
    fields: dict[str, Field],
    events: list[Event],
    dags: list[Dag],
    longitudinal: bool,
) -> list[Randomization]:
    models = []
    by_name = {e.unique_name: e for e in events}
    seen_targets: set[tuple[str, int]] = set()

    def event_id_of(name: str | None, what: str) -> int:
        if not longitudinal or not name:
            if longitudinal:
                raise ProjectError(f"project.json: {what} needs an event in a longitudinal project")
            return events[0].event_id
        if name not in by_name:
            raise ProjectError(f"project.json: {what}: unknown event {name!r}")
        return by_name[name].event_id

    for raw in info.get("randomizations", []):
        rid = int(raw["randomization_id"])
        target = fields.get(raw.get("target_field", ""))
        if target is None:
            raise ProjectError(f"project.json: randomization {rid}: unknown target field")
        if not (
            target.field_type in ("radio", "dropdown", "yesno", "truefalse")
            or (target.field_type == "text" and not target.validation)
        ):
            raise ProjectError(f"project.json: randomization {rid}: {target.name} cannot be a target field")
        target_event = event_id_of(raw.get("target_event"), f"randomization {rid} target")
        if (target.name, target_event) in seen_targets:
            raise ProjectError(f"project.json: randomization {rid}: target field/event already used")
        seen_targets.add((target.name, target_event))
        strata_fields: list[Field] = []
        strata: list[tuple[str, int]] = []
        for s in raw.get("strata", []):
            name = s["field"] if isinstance(s, dict) else str(s)
            event = s.get("event") if isinstance(s, dict) else None
            fld = fields.get(name)
            if fld is None or fld.field_type not in ("radio", "dropdown", "yesno", "truefalse"):
                raise ProjectError(f"project.json: randomization {rid}: {name!r} cannot be a stratum")
            strata_fields.append(fld)
            strata.append((name, event_id_of(event, f"randomization {rid} stratum {name}")))
        if len(strata) > 15:
            raise ProjectError(f"project.json: randomization {rid}: at most 15 strata")
        group_by_dag = bool(raw.get("group_by_dag") or str(raw.get("group_by", "")).upper() == "DAG")
        allocations: list[AllocationRow] = []
        by_status: dict[int, list[tuple[Any, ...]]] = {}
        for status, rel in sorted(_table_paths(raw).items()):
            rows = load_allocation_table(folder / rel, status, target, strata_fields, group_by_dag, dags)
            by_status[status] = [(r.target_field, r.target_field_alt, r.strata, r.group_id) for r in rows]
            allocations += rows
        if len(by_status) == 2 and by_status[0] == by_status[1]:
            raise ProjectError(
                f"project.json: randomization {rid}: the development and production allocation tables are "
                "identical; REDCap requires them to differ"
            )
        models.append(
            Randomization(
                rid=rid,
                target_field=target.name,
                target_event_id=target_event,
                strata=tuple(strata),
                group_by_dag=group_by_dag,
                blinded=target.field_type == "text",
                allocations=tuple(allocations),
                trigger_option=int(raw.get("trigger_option", 0)),
            )
        )
    return sorted(models, key=lambda m: m.rid)


def load_project(folder: str | Path) -> Project:
    """Read and validate a project folder.

    :param folder: the directory holding ``project.json`` and ``metadata.csv``.
    """
    folder = Path(folder)
    try:
        info = json.loads((folder / "project.json").read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ProjectError(f"{folder}: no project.json") from exc
    except json.JSONDecodeError as exc:
        raise ProjectError(f"project.json: {exc}") from exc
    if "project_id" not in info:
        raise ProjectError("project.json: project_id is required")
    info.setdefault("project_title", f"Project {info['project_id']}")
    info.setdefault("in_production", 0)
    if int(info["in_production"]) not in (0, 1, 2):
        raise ProjectError("project.json: in_production must be 0, 1 or 2")
    rows = load_metadata(folder / "metadata.csv")
    fields, forms = _build_fields(rows, "metadata.csv")
    form_labels = {f: f.replace("_", " ").title() for f in forms}
    form_labels.update(info.get("form_labels", {}))
    longitudinal, arms, events, form_events = _load_events(folder, info, forms)
    repeating: list[dict[str, str]] = []
    if (folder / "repeating_forms_events.csv").exists():
        for row in _read_csv(folder / "repeating_forms_events.csv"):
            event_name = row.get("event_name") or events[0].unique_name
            if not any(e.unique_name == event_name for e in events):
                raise ProjectError(f"repeating_forms_events.csv: unknown event {event_name!r}")
            repeating.append(
                {
                    "event_name": event_name,
                    "form_name": row.get("form_name", ""),
                    "custom_form_label": row.get("custom_form_label", ""),
                }
            )
    dags = _load_dags(info)
    users = _load_users(info, dags)
    randomizations = _load_randomizations(folder, info, fields, events, dags, longitudinal)
    seed = folder / "records.csv"
    return Project(
        folder=folder,
        info=info,
        fields=fields,
        forms=forms,
        form_labels=form_labels,
        longitudinal=longitudinal,
        arms=arms,
        events=events,
        form_events=form_events,
        repeating=repeating,
        dags=dags,
        users=users,
        randomizations=randomizations,
        seed_csv=seed.read_text(encoding="utf-8-sig") if seed.exists() else None,
        redcap_version=str(info.get("redcap_version") or DEFAULT_REDCAP_VERSION),
    )
