"""Record data as REDCap presents it: flat rows per record, event and repeat instance.

Stored values live in the EAV ``data`` table keyed by (event, repeat instrument, instance); checkbox
fields store one row per checked code. This module turns them into REDCap's flat export shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from airflow_provider_redcap.emulator.project import Field, Project, checkbox_code_suffix
from airflow_provider_redcap.emulator.storage import DataKey, Tx

COMPLETE_SUFFIX = "_complete"
COMPLETE_LABELS = {"0": "Incomplete", "1": "Unverified", "2": "Complete"}
PSEUDO_COLUMNS = ("redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance")
DAG_COLUMN = "redcap_data_access_group"


@lru_cache(maxsize=200_000)
def natural_key(record: str) -> tuple[Any, ...]:
    """REDCap's record order: numbers by value, then text with embedded numbers compared as numbers."""
    parts = re.split(r"(\d+)", record)
    return (
        0 if record.isdigit() else 1,
        *[(0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p],
    )


@dataclass(frozen=True)
class Column:
    """One selectable data field: a dictionary field or a form's ``<form>_complete`` status."""

    name: str
    form: str
    field: Field | None  # None for the form status field

    def export_names(self) -> list[str]:
        if self.field is not None and self.field.is_checkbox:
            return [f"{self.name}___{checkbox_code_suffix(c)}" for c in self.field.choices]
        return [self.name]


def all_columns(project: Project) -> list[Column]:
    """Every data field in dictionary order, each form's status field after its last field."""
    out: list[Column] = []
    for form in project.forms:
        out += [Column(f.name, form, f) for f in project.form_fields(form) if f.field_type != "descriptive"]
        out.append(Column(f"{form}{COMPLETE_SUFFIX}", form, None))
    return out


def column_map(project: Project) -> dict[str, Column]:
    return {c.name: c for c in all_columns(project)}


def import_column_map(project: Project) -> dict[str, tuple[Column, str | None]]:
    """Column name accepted in a flat import → (column, checkbox code or None)."""
    out: dict[str, tuple[Column, str | None]] = {}
    for col in all_columns(project):
        if col.field is not None and col.field.is_checkbox:
            for code in col.field.choices:
                out[f"{col.name}___{checkbox_code_suffix(code)}"] = (col, code)
        else:
            out[col.name] = (col, None)
    return out


def key_for(project: Project, event_id: int, form: str, instance: int = 1) -> DataKey:
    """Where a field of ``form`` is stored in ``event_id``."""
    if project.repeating_form(event_id, form):
        return (event_id, form, instance)
    return (event_id, "", instance if project.repeating_event(event_id) else 1)


def applies(project: Project, key: DataKey, form: str) -> bool:
    """Whether fields of ``form`` belong on the row stored under ``key``."""
    event_id, instrument, _ = key
    if form not in project.form_events.get(event_id, []):
        return False
    if project.repeating_form(event_id, form):
        return instrument == form
    return instrument == ""


def event_order(project: Project) -> dict[int, int]:
    return {e.event_id: i for i, e in enumerate(project.events)}


def sorted_keys(project: Project, keys: Iterable[DataKey]) -> list[DataKey]:
    order = event_order(project)
    forms = {f: i for i, f in enumerate(project.forms)}
    return sorted(keys, key=lambda k: (order.get(k[0], 0), forms.get(k[1], -1), k[2]))


def value_of(stored: dict[str, Any], col: Column, code: str | None = None) -> str:
    value = stored.get(col.name)
    if col.field is not None and col.field.is_checkbox:
        codes = value if isinstance(value, list) else ([value] if value else [])
        return "1" if code in codes else "0"
    return value if isinstance(value, str) else ""


def label_of(col: Column, value: str, code: str | None = None, checkbox_label: bool = False) -> str:
    if value == "":
        return value
    if col.field is None:
        return COMPLETE_LABELS.get(value, value)
    if col.field.is_checkbox:
        if checkbox_label:  # exportCheckboxLabel: the option's label when checked, blank otherwise
            return col.field.choices.get(code or "", "") if value == "1" else ""
        return "Checked" if value == "1" else "Unchecked"
    if col.field.is_categorical:
        return col.field.choices.get(value, value)
    return value


def _is_decimal_field(fld: Field) -> bool:
    return fld.field_type == "calc" or fld.validation.startswith("number")


def event_label(project: Project, event_id: int) -> str:
    event = project.event_by_id(event_id)
    if len(project.arms) < 2:  # REDCap names the arm only when there is more than one
        return event.name
    return f"{event.name} (Arm {event.arm_num}: {project.arms.get(event.arm_num, '')})"


def flat_rows(
    project: Project,
    tx: Tx,
    records: Sequence[str],
    columns: Sequence[Column],
    *,
    event_ids: set[int] | None = None,
    raw_or_label: str = "raw",
    export_dag: bool = False,
    row_filter: Any = None,
    checkbox_label: bool = False,
    decimal: str = "",
) -> tuple[list[str], list[dict[str, Any]]]:
    """Flat export rows for ``records`` (already ordered and access-checked) and their header.

    :param row_filter: optional callable ``(record, key, all_data) -> bool`` (filterLogic).
    :param checkbox_label: with labels, checked options export their choice label (exportCheckboxLabel).
    :param decimal: ``","`` or ``"."`` forces that decimal mark on number and calc values.
    """
    pk = project.pk
    with_pk = any(c.name == pk for c in columns)
    header: list[str] = []
    for col in columns:
        header += col.export_names()
        if col.name == pk:
            if project.longitudinal:
                header.append("redcap_event_name")
            if project.has_repeating:
                header += ["redcap_repeat_instrument", "redcap_repeat_instance"]
    if export_dag:
        # REDCap puts the DAG right after the record id and its pseudo-columns.
        insert_at = (
            header.index("redcap_repeat_instance") + 1
            if "redcap_repeat_instance" in header
            else (header.index("redcap_event_name") + 1 if "redcap_event_name" in header else int(with_pk))
        )
        header.insert(insert_at, DAG_COLUMN)
    data = tx.record_data(records)
    groups = tx.record_groups() if export_dag else {}
    rows: list[dict[str, Any]] = []
    fits_cache: dict[tuple[int, str, str], bool] = {}
    for record in records:
        stored_by_key = data.get(record, {})
        for key in sorted_keys(project, stored_by_key):
            if event_ids is not None and key[0] not in event_ids:
                continue
            stored = stored_by_key[key]
            has_value = with_pk and key[1] == ""
            row: dict[str, Any] = {}
            for col in columns:
                if col.name == pk:
                    row[pk] = record
                    if project.longitudinal:
                        row["redcap_event_name"] = (
                            event_label(project, key[0])
                            if raw_or_label == "label"
                            else project.event_by_id(key[0]).unique_name
                        )
                    if project.has_repeating:
                        repeats = key[1] != "" or project.repeating_event(key[0])
                        instrument = key[1]
                        if raw_or_label == "label" and instrument:
                            instrument = project.form_labels.get(instrument, instrument)
                        row["redcap_repeat_instrument"] = instrument
                        row["redcap_repeat_instance"] = key[2] if repeats else ""
                    continue
                fit_key = (key[0], key[1], col.form)
                fits = fits_cache.get(fit_key)
                if fits is None:
                    fits = fits_cache[fit_key] = applies(project, key, col.form)
                codes = list(col.field.choices) if col.field is not None and col.field.is_checkbox else [None]
                for name, code in zip(col.export_names(), codes, strict=True):
                    value = value_of(stored, col, code) if fits else ""
                    if value != "" and not (code is not None and value == "0"):
                        has_value = True
                    if decimal and value and col.field is not None and _is_decimal_field(col.field):
                        value = value.replace("," if decimal == "." else ".", decimal)
                    row[name] = (
                        label_of(col, value, code, checkbox_label) if raw_or_label == "label" else value
                    )
            if not has_value:
                continue
            if row_filter is not None and not row_filter(record, key, stored_by_key):
                continue
            if export_dag:
                dag = project.dag_by_id(groups.get(record))
                row[DAG_COLUMN] = (dag.label if raw_or_label == "label" else dag.unique_name) if dag else ""
            rows.append({h: row.get(h, "") for h in header})
    return header, rows


def visible_records(tx: Tx, group_id: int | None, wanted: Iterable[str] | None = None) -> list[str]:
    """Record ids the user may see (among ``wanted``, when given), in REDCap's order."""
    groups = tx.record_groups()
    if wanted is not None:
        groups = {r: groups[r] for r in set(wanted) if r in groups}
    ids = [r for r, g in groups.items() if group_id is None or g == group_id]
    return sorted(ids, key=natural_key)


def stored_value(project: Project, data: dict[DataKey, dict[str, Any]], field: str, event_id: int) -> str:
    """A field's value in one event of one record (instance 1), ``""`` when absent."""
    fld = project.fields.get(field)
    form = fld.form if fld is not None else field[: -len(COMPLETE_SUFFIX)]
    value = data.get(key_for(project, event_id, form), {}).get(field, "")
    if isinstance(value, list):
        return ",".join(value)
    return value
