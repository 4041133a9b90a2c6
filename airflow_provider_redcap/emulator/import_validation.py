"""Import Records: parse the payload, validate it the way REDCap does, then apply it.

Validation runs to completion before anything is written, and the whole request runs in one
transaction, so an import is all-or-nothing. Whole-request problems (unknown fields, a missing
record id column, bad event names, duplicates) are reported alone; value problems are reported as
REDCap's ``"record","field","value","message"`` lines joined by newlines.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from defusedxml import ElementTree

from airflow_provider_redcap.emulator.formats import ApiError
from airflow_provider_redcap.emulator.project import Field, Project, User, checkbox_code_suffix
from airflow_provider_redcap.emulator.records import (
    COMPLETE_SUFFIX,
    DAG_COLUMN,
    Column,
    import_column_map,
    key_for,
)
from airflow_provider_redcap.emulator.storage import DataKey, Tx

PSEUDO = ("redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance", DAG_COLUMN)
_IGNORED = ("redcap_survey_identifier",)

TARGET_MESSAGE = (
    "This field ('{field}') cannot be modified because it has been set as this project's randomization "
    "field,  which can never be modified for any record. "
    "This field MUST be removed from the uploaded data file."
)
STRATA_MESSAGE = (
    "{label} '{record}' has already been randomized, thus this field ('{field}'), which is a randomization "
    "strata field, cannot be modified for this record. You MUST remove this field's value  for this record "
    "from the uploaded data file."
)
_DATE_NOTE = {
    "YMD": "Y-M-D",
    "MDY": "M/D/Y",
    "DMY": "D/M/Y",
}
_REGEX = {
    "integer": r"^[-+]?\d+$",
    "number": r"^[-+]?\d*\.?\d+([eE][-+]?\d+)?$",
    "time": r"^([01]?\d|2[0-3]):[0-5]\d$",
    "time_mm_ss": r"^[0-5]\d:[0-5]\d$",
    "email": r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
    "phone": r"^\(?\d{3}\)?[-. ]?\d{3}[-. ]?\d{4}$",
    "zipcode": r"^\d{5}(-\d{4})?$",
    "alpha_only": r"^[A-Za-z]+$",
    "postalcode_canada": r"^[A-Za-z]\d[A-Za-z] ?\d[A-Za-z]\d$",
    "postalcode_australia": r"^\d{4}$",
    "postalcode_germany": r"^\d{5}$",
    "postalcode_french": r"^((0?[1-9])|([1-8]\d)|(9[0-8]))\d{3}$",
    "mrn_10d": r"^\d{10}$",
    "mrn_generic": r"^[A-Za-z0-9_-]+$",
    "vmrn": r"^\d{4,9}$",
    "ssn": r"^\d{3}-\d\d-\d{4}$",
    "time_hh_mm_ss": r"^([01]\d|2[0-3]):[0-5]\d:[0-5]\d$",
    "phone_australia": r"^(\(0[2-8]\)|0[2-8])\s*\d{4}\s*\d{4}$",
}
_FORMAT_MESSAGE = (
    "The value you provided could not be validated because it does not follow the expected format. "
    "Please try again."
)


@dataclass
class PlannedRow:
    record: str
    key: DataKey
    values: list[tuple[Column, str | None, str]]  # column, checkbox code, value (already normalised)
    dag: str | None  # unique group name from the DAG column, "" to clear, None when absent
    new_instance: bool = False


@dataclass
class ImportPlan:
    rows: list[PlannedRow] = field(default_factory=list)
    records: list[str] = field(default_factory=list)  # distinct, in order of appearance
    renamed: dict[str, str] = field(default_factory=dict)  # original -> new (forceAutoNumber)


def field_line(record: str, name: str, value: str, message: str) -> str:
    def q(text: str) -> str:
        return '"' + re.sub(r"<[^>]*>", "", text).replace('"', '""') + '"'

    return ",".join(q(x) for x in (record, name, value, message))


# --- parsing -------------------------------------------------------------------------------------
def parse_payload(
    data: str, fmt: str, kind: str, delimiter: str, project: Project | None = None
) -> list[dict[str, str]]:
    """Rows of ``column -> value`` from the posted ``data``, flat or eav."""
    if fmt == "json":
        try:
            parsed = json.loads(data)
        except json.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, list) or not all(isinstance(r, dict) for r in parsed):
            raise ApiError(
                400,
                "The data being imported is not formatted correctly. "
                "PHP error from JSON decoder: Syntax error. The JSON must be in an array, as in [{ ... }].",
            )
        rows = [{str(k): _scalar(v) for k, v in r.items()} for r in parsed]
    elif fmt == "csv":
        reader = csv.reader(io.StringIO(data.lstrip("\ufeff")), delimiter=delimiter)
        lines = [line for line in reader if any(cell.strip() for cell in line)]
        if not lines:
            return []
        header = [h.strip() for h in lines[0]]
        rows = [{h: (line[i] if i < len(line) else "") for i, h in enumerate(header)} for line in lines[1:]]
    else:
        try:
            root = ElementTree.fromstring(data.encode("utf-8"))
        except Exception as exc:  # defusedxml raises several parse error types
            raise ApiError(400, f"The data being imported is not formatted correctly. Error: {exc}") from exc
        rows = [{child.tag: (child.text or "") for child in item} for item in root]
    rows = [{k: v.strip() for k, v in r.items()} for r in rows]
    return _from_eav(rows, project) if kind == "eav" else rows


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else ""  # PHP's string cast of true/false
    return str(value)


def _from_eav(rows: list[dict[str, str]], project: Project | None) -> list[dict[str, str]]:
    grouped: dict[tuple[str, ...], dict[str, str]] = {}
    for r in rows:
        ident = (
            r.get("record", ""),
            r.get("redcap_event_name", ""),
            r.get("redcap_repeat_instrument", ""),
            r.get("redcap_repeat_instance", ""),
        )
        flat = grouped.setdefault(ident, {"__record__": ident[0]})
        for name in ("redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance"):
            if name in r:
                flat[name] = r[name]
        name, value = r.get("field_name", ""), r.get("value", "")
        fld = project.fields.get(name) if project is not None else None
        if fld is not None and fld.is_checkbox and value in fld.choices:
            # EAV carries one row per checked code of a checkbox.
            name, value = f"{name}___{checkbox_code_suffix(value)}", "1"
        flat[name] = value
    return list(grouped.values())


# --- values --------------------------------------------------------------------------------------
def _normalise_date(value: str, date_format: str) -> str | None:
    parts = re.split(r"[-/]", value)
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    if date_format == "MDY":
        m, d, y = parts
    elif date_format == "DMY":
        d, m, y = parts
    else:
        y, m, d = parts
    if len(y) != 4:
        return None
    try:
        return date(int(y), int(m), int(d)).isoformat()
    except ValueError:
        return None


def check_value(fld: Field, value: str, date_format: str) -> tuple[str, str | None, str | None]:
    """(normalised value, error message or None, soft warning or None) for a non-blank text/choice value."""
    if fld.field_type in ("radio", "dropdown", "yesno", "truefalse"):
        if value not in fld.choices:
            return value, f"The value is not a valid category for {fld.name}", None
        return value, None, None
    if fld.field_type != "text" or not fld.validation:
        return value, None, None
    v = fld.validation
    comparable: Any = None
    if v.startswith(("date_", "datetime_")):
        date_part, _, time_part = value.partition(" ")
        normal = _normalise_date(date_part, date_format)
        time_ok = not v.startswith("datetime_") or re.fullmatch(
            r"([01]?\d|2[0-3]):[0-5]\d" + (r":[0-5]\d" if "seconds" in v else ""), time_part
        )
        if normal is None or not time_ok or (v.startswith("date_") and time_part):
            note = _DATE_NOTE.get(date_format, "Y-M-D")
            return (
                value,
                (
                    f"Invalid date format. (NOTE: Dates must be imported here only in {note} format, "
                    "regardless of the specific date format designated for this field.)"
                ),
                None,
            )
        value = f"{normal} {time_part}".strip()
        comparable = value
    elif v == "integer" or v.startswith("number"):
        pattern = _REGEX["integer"] if v == "integer" else _REGEX["number"]
        if v == "number_comma_decimal":
            pattern = r"^[-+]?\d*,?\d+([eE][-+]?\d+)?$"
        match = re.fullmatch(r"number_(\d)dp(_comma_decimal)?", v)
        if match:
            decimal = "," if match.group(2) else "\\."
            pattern = rf"^[-+]?\d+{decimal}\d{{{match.group(1)}}}$"
        if not re.match(pattern, value):
            if v == "integer":
                return value, f"The value of {fld.name} must be an integer.", None
            if v == "number":
                return value, f"The value of {fld.name} must be numeric.", None
            return value, _FORMAT_MESSAGE, None
        comparable = float(value.replace(",", "."))
    elif v in _REGEX and not re.match(_REGEX[v], value):
        return value, _FORMAT_MESSAGE, None
    if comparable is not None:
        for bound, below in ((fld.minimum, True), (fld.maximum, False)):
            if not bound:
                continue
            try:
                limit: Any = float(bound) if isinstance(comparable, float) else bound
            except ValueError:
                continue
            if (below and comparable < limit) or (not below and comparable > limit):
                if fld.hard_range:
                    word = "less than the field minimum" if below else "greater than the field maximum"
                    return value, f"{fld.name} should not be {word} ({bound})", None
                word = "less than the field minimum" if below else "greater than the field maximum"
                return value, None, f"{fld.name} is {word} ({bound})"
    return value, None, None


# --- validation ----------------------------------------------------------------------------------
def build_plan(
    project: Project,
    tx: Tx,
    user: User | None,
    group_id: int | None,
    rows: list[dict[str, str]],
    *,
    date_format: str,
    overwrite: bool,
    force_auto_number: bool,
    status: int,
    enforce_randomization: bool = True,
) -> ImportPlan:
    """Validate ``rows`` and return what to write; raises :class:`ApiError` (400) listing every problem."""
    pk = project.pk
    columns = import_column_map(project)
    header: list[str] = list(dict.fromkeys(k for r in rows for k in r))
    record_col = "__record__" if any("__record__" in r for r in rows) else pk
    if rows and record_col not in header:
        raise ApiError(400, f"The record id field ({pk}) is missing.")
    unknown = [
        h
        for h in header
        if h not in columns
        and h not in PSEUDO
        and h not in (pk, "__record__")
        and h not in _IGNORED
        and not h.endswith("_timestamp")
    ]
    if unknown:
        raise ApiError(
            400,
            "The following fields were not found in the project as real data fields: " + ", ".join(unknown),
        )
    if project.longitudinal and rows:
        if "redcap_event_name" not in header:
            raise ApiError(400, "The record event name is missing.")
        bad = list(
            dict.fromkeys(
                r.get("redcap_event_name", "")
                for r in rows
                if project.event_by_name(r.get("redcap_event_name", "")) is None
            )
        )
        if bad:
            raise ApiError(400, "The following values of redcap_event_name are invalid: " + ", ".join(bad))
    records_in_order = list(dict.fromkeys(r.get(record_col, "") for r in rows))
    if any(r == "" for r in records_in_order):
        raise ApiError(400, "The record name cannot be empty.")
    too_long = [r for r in records_in_order if len(r) > 100]
    if too_long:
        raise ApiError(
            400,
            "Record names must be 100 characters or less in length. The following record "
            "names are too long: " + ", ".join(too_long),
        )
    plan = ImportPlan(records=records_in_order)
    if force_auto_number:
        plan.renamed = _auto_numbers(tx, records_in_order, group_id)
    seen: dict[tuple[Any, ...], int] = {}
    dupes: list[str] = []
    errors: list[str] = []
    existing_groups = tx.record_groups()
    targets = {m.target_field for m in project.randomizations}
    for row in rows:
        original = row.get(record_col, "")
        record = plan.renamed.get(original, original)
        event = project.event_by_name(row["redcap_event_name"]) if project.longitudinal else project.events[0]
        assert event is not None
        instrument = row.get("redcap_repeat_instrument", "")
        instance_raw = row.get("redcap_repeat_instance", "")
        new_instance = instance_raw == "new"
        if instrument and not project.repeating_form(event.event_id, instrument):
            errors.append(
                field_line(
                    original,
                    "redcap_repeat_instrument",
                    instrument,
                    "The value is not a valid repeating instrument for this event",
                )
            )
            continue
        repeats = bool(instrument) or project.repeating_event(event.event_id)
        if not repeats or instance_raw in ("", "new"):
            instance = 1
        elif instance_raw.isdigit() and int(instance_raw) >= 1:
            instance = int(instance_raw)
        else:
            errors.append(
                field_line(
                    original, "redcap_repeat_instance", instance_raw, "The value must be a positive integer"
                )
            )
            continue
        key: DataKey = (event.event_id, instrument, instance)
        ident = (record, *key)
        seen[ident] = seen.get(ident, 0) + 1
        if seen[ident] == 2 and not new_instance:
            dupes.append(original)
        if group_id is not None and record in existing_groups and existing_groups[record] != group_id:
            errors.append(
                field_line(
                    original,
                    pk,
                    original,
                    f"The record '{original}' already exists in another "
                    "Data Access Group, so you may not modify it.",
                )
            )
        values: list[tuple[Column, str | None, str]] = []
        for name, raw in row.items():
            if name in PSEUDO or name in (pk, "__record__") or name not in columns:
                continue
            if enforce_randomization and name in targets:
                errors.append(field_line(original, name, raw, TARGET_MESSAGE.format(field=name)))
                continue
            col, code = columns[name]
            if raw == "":
                if overwrite:
                    values.append((col, code, ""))
                continue
            form_events = project.form_events.get(event.event_id, [])
            if col.form not in form_events:
                errors.append(
                    field_line(
                        original,
                        name,
                        raw,
                        "This field is located on a form that is not "
                        f"designated for the event '{event.unique_name}'.",
                    )
                )
                continue
            if instrument and col.form != instrument:
                errors.append(
                    field_line(
                        original,
                        name,
                        raw,
                        f"This field is not located on the repeating instrument '{instrument}'.",
                    )
                )
                continue
            if code is not None:
                if raw not in ("0", "1"):
                    errors.append(
                        field_line(
                            original,
                            name,
                            raw,
                            f"{name} is a checkbox field and thus can only "
                            "have a value of '1' (checked) or '0' (unchecked).",
                        )
                    )
                    continue
            elif col.field is None:
                if raw not in ("0", "1", "2"):
                    errors.append(
                        field_line(original, name, raw, f"The value is not a valid category for {name}")
                    )
                    continue
            else:
                raw, message, _warning = check_value(col.field, raw, date_format)
                if message:
                    errors.append(field_line(original, name, raw, message))
                    continue
            values.append((col, code, raw))
        dag: str | None = None
        if DAG_COLUMN in row:
            dag_value = row[DAG_COLUMN]
            if dag_value and project.dag_by_name(dag_value) is None:
                errors.append(
                    field_line(
                        original,
                        DAG_COLUMN,
                        dag_value,
                        "The value is not a valid unique Data Access Group name",
                    )
                )
            elif group_id is not None and dag_value and project.dag_by_name(dag_value).group_id != group_id:  # type: ignore[union-attr]
                errors.append(
                    field_line(
                        original,
                        DAG_COLUMN,
                        dag_value,
                        "You are not allowed to assign records to a Data Access Group other than your own",
                    )
                )
            elif dag_value or overwrite:
                dag = dag_value
        if enforce_randomization:
            errors += _strata_errors(project, tx, original, record, key, values, status)
        plan.rows.append(PlannedRow(record, key, values, dag, new_instance))
    if dupes:
        raise ApiError(
            400,
            "The records listed below occur more than once. Please remove any duplicates and "
            "try again: " + ", ".join(dict.fromkeys(dupes)),
        )
    if errors:
        raise ApiError(400, "\n".join(dict.fromkeys(errors)))
    plan.records = [plan.renamed.get(r, r) for r in records_in_order]
    return plan


def _strata_errors(
    project: Project,
    tx: Tx,
    original: str,
    record: str,
    key: DataKey,
    values: list[tuple[Column, str | None, str]],
    status: int,
) -> list[str]:
    rids = tx.randomized_rids(record, status) if tx.record_exists(record) else set()
    if not rids:
        return []
    errors = []
    label = project.fields[project.pk].label or "Record ID"
    for model in project.randomizations:
        if model.rid not in rids:
            continue
        for col, _code, value in values:
            if value == "" or (col.name, key[0]) not in model.strata:
                continue
            current = tx.get_value(record, key_for(project, key[0], col.form), col.name) or ""
            if current != value:
                errors.append(
                    field_line(
                        original,
                        col.name,
                        value,
                        STRATA_MESSAGE.format(label=label, record=record, field=col.name),
                    )
                )
    return errors


def next_record_number(tx: Tx, group_id: int | None) -> str:
    """REDCap's next record name: max numeric id + 1, or ``<dag id>-<n>`` for users in a DAG."""
    ids = tx.record_ids()
    if group_id is None:
        numbers = [int(r) for r in ids if r.isdigit()]
        return str(max(numbers, default=0) + 1)
    prefix = f"{group_id}-"
    numbers = [int(r[len(prefix) :]) for r in ids if r.startswith(prefix) and r[len(prefix) :].isdigit()]
    return f"{prefix}{max(numbers, default=0) + 1}"


def _auto_numbers(tx: Tx, originals: list[str], group_id: int | None) -> dict[str, str]:
    ids = tx.record_ids()
    renamed: dict[str, str] = {}
    if group_id is None:
        start = max((int(r) for r in ids if r.isdigit()), default=0)
        for i, original in enumerate(originals, start=1):
            renamed[original] = str(start + i)
        return renamed
    prefix = f"{group_id}-"
    start = max(
        (int(r[len(prefix) :]) for r in ids if r.startswith(prefix) and r[len(prefix) :].isdigit()), default=0
    )
    for i, original in enumerate(originals, start=1):
        renamed[original] = f"{prefix}{start + i}"
    return renamed


# --- applying ------------------------------------------------------------------------------------
def apply_plan(project: Project, tx: Tx, plan: ImportPlan, username: str, group_id: int | None) -> None:
    pk = project.pk
    created: set[str] = set()
    changes: dict[str, list[str]] = {}
    for row in plan.rows:
        if not tx.record_exists(row.record):
            dag = project.dag_by_name(row.dag) if row.dag else None
            tx.create_record(
                row.record, group_id if group_id is not None else (dag.group_id if dag else None)
            )
            created.add(row.record)
        elif row.dag is not None and group_id is None:
            dag = project.dag_by_name(row.dag) if row.dag else None
            tx.set_record_group(row.record, dag.group_id if dag else None)
        key = row.key
        if row.new_instance:
            existing = tx.record_data([row.record]).get(row.record, {})
            instances = [k[2] for k in existing if k[0] == key[0] and k[1] == key[1]]
            key = (key[0], key[1], max(instances, default=0) + 1)
        base = (key[0], "", key[2] if key[1] == "" else 1)
        if tx.get_value(row.record, base, pk) is None:
            tx.set_value(row.record, base, pk, row.record)
        touched_forms: set[str] = set()
        for col, code, value in row.values:
            if code is not None:
                tx.set_checkbox(row.record, key, col.name, code, value == "1")
            else:
                tx.set_value(row.record, key, col.name, value)
            if value != "" and col.field is not None:
                touched_forms.add(col.form)
            changes.setdefault(row.record, []).append(
                f"{col.name}{'(' + code + ')' if code else ''} = '{value}'"
            )
        for form in touched_forms:
            complete = f"{form}{COMPLETE_SUFFIX}"
            if tx.get_value(row.record, key, complete) is None:
                tx.set_value(row.record, key, complete, "0")
    for record in plan.records:
        new = record in created
        tx.log(
            username,
            "Create record (API)" if new else "Update record (API)",
            ", ".join(changes.get(record, [])),
            record=record,
            group_id=tx.record_group(record),
            logtype="record_add" if new else "record_edit",
        )
