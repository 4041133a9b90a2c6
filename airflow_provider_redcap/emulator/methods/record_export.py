"""Export Records (``content=record`` without ``data``): flat and eav."""

from __future__ import annotations

import re
from typing import Any

from airflow_provider_redcap.emulator import auth
from airflow_provider_redcap.emulator.context import Context
from airflow_provider_redcap.emulator.filter_logic import compile_filter
from airflow_provider_redcap.emulator.formats import ApiError, ApiResponse, render_rows
from airflow_provider_redcap.emulator.methods.metadata import invalid_values
from airflow_provider_redcap.emulator.project import checkbox_code_suffix
from airflow_provider_redcap.emulator.records import (
    DAG_COLUMN,
    Column,
    all_columns,
    flat_rows,
    visible_records,
)

NO_DATA_FIELDS = 'The variables provided in the parameter "fields" are not valid fields that contain data.'
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}(:\d{2})?)?$")


def selected_columns(ctx: Context) -> list[Column]:
    project = ctx.project
    columns = all_columns(project)
    names = {c.name for c in columns}
    fields, forms = ctx.params.list("fields"), ctx.params.list("forms")
    descriptive = {f.name for f in project.fields.values() if f.field_type == "descriptive"}
    bad = [f for f in fields if f not in names and f not in descriptive]
    if bad:
        raise invalid_values("fields", bad)
    if fields and not forms and all(f in descriptive for f in fields):
        raise ApiError(400, NO_DATA_FIELDS)
    bad = [f for f in forms if f not in project.forms]
    if bad:
        raise invalid_values("forms", bad)
    if not fields and not forms:
        return columns
    return [c for c in columns if c.name in fields or (c.form in forms)]


def _date_range_records(ctx: Context, records: list[str]) -> list[str]:
    begin, end = ctx.params.get("dateRangeBegin").strip(), ctx.params.get("dateRangeEnd").strip()
    if not begin and not end:
        return records
    for value in (begin, end):
        if value and not _DATETIME.match(value):
            raise ApiError(
                400,
                f'The value of the parameter "dateRange{"Begin" if value == begin else "End"}"'
                " is not a valid date/time. It must be in YYYY-MM-DD HH:MM:SS format.",
            )
    touched: set[str] = set()
    for row in ctx.tx.log_rows():
        if row["record"] is None or row["logtype"] not in ("record_add", "record_edit", "randomize"):
            continue
        if (not begin or row["ts"] >= begin) and (not end or row["ts"] <= end):
            touched.add(row["record"])
    return [r for r in records if r in touched]


def export_records(ctx: Context) -> ApiResponse:
    project, params = ctx.project, ctx.params
    if not ctx.user.has("data_export"):
        raise ApiError(403, auth.NO_DATA_EXPORT)
    columns = selected_columns(ctx)
    eav = params.choice("type", ("flat", "eav"), "flat") == "eav"
    if eav and all(c.name != project.pk for c in columns):
        columns = [c for c in all_columns(project) if c.name == project.pk] + columns
    event_ids: set[int] | None = None
    if project.longitudinal and params.list("events"):
        wanted = params.list("events")
        bad = [e for e in wanted if project.event_by_name(e) is None]
        if bad:
            raise invalid_values("events", bad)
        event_ids = {project.event_by_name(e).event_id for e in wanted}  # type: ignore[union-attr]
    # REDCap's record order, not the request's.
    records = visible_records(ctx.tx, ctx.group_id, params.list("records") or None)
    records = _date_range_records(ctx, records)
    logic = params.get("filterLogic").strip()
    row_filter = compile_filter(logic, project) if logic else None
    raw_or_label = params.choice("rawOrLabel", ("raw", "label"), "raw")
    export_dag = params.flag("exportDataAccessGroups") and ctx.group_id is None and bool(project.dags)
    header, rows = flat_rows(
        project,
        ctx.tx,
        records,
        columns,
        event_ids=event_ids,
        raw_or_label=raw_or_label,
        export_dag=export_dag,
        row_filter=row_filter,
        checkbox_label=params.flag("exportCheckboxLabel"),
        decimal=params.get("decimalCharacter") if params.get("decimalCharacter") in (",", ".") else "",
    )
    if params.choice("rawOrLabelHeaders", ("raw", "label"), "raw") == "label" and ctx.fmt == "csv":
        header = [_label_header(ctx, h) for h in header]
        rows = [dict(zip(header, r.values(), strict=True)) for r in rows]
    ctx.tx.log(
        ctx.user.username, "Export data (API)", f"Download exported data ({len(rows)} rows)", logtype="export"
    )
    if eav:
        return _eav(ctx, header, rows, columns)
    return render_rows(rows, ctx.fmt, header, delimiter=ctx.csv_delimiter)


def _label_header(ctx: Context, name: str) -> str:
    fld = ctx.project.fields.get(name)
    if fld is not None:
        return fld.label
    if "___" in name:
        base, _, code = name.partition("___")
        fld = ctx.project.fields.get(base)
        if fld is not None:
            label = next((v for k, v in fld.choices.items() if checkbox_code_suffix(k) == code), code)
            return f"{fld.label} (choice={label})"
    special = {
        "redcap_event_name": "Event Name",
        "redcap_repeat_instrument": "Repeat Instrument",
        "redcap_repeat_instance": "Repeat Instance",
        DAG_COLUMN: "Data Access Group",
    }
    if name in special:
        return special[name]
    return "Complete?" if name.endswith("_complete") else name


def _eav(ctx: Context, header: list[str], rows: list[dict[str, Any]], columns: list[Column]) -> ApiResponse:
    project = ctx.project
    pseudo = [
        c for c in ("redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance") if c in header
    ]
    if project.longitudinal and "redcap_event_name" not in pseudo:
        pseudo.insert(0, "redcap_event_name")
    out: list[dict[str, Any]] = []
    for row in rows:
        base = {"record": row.get(project.pk, "")} | {p: row.get(p, "") for p in pseudo}
        for col in columns:
            if col.field is not None and col.field.is_checkbox:
                for code, name in zip(col.field.choices, col.export_names(), strict=True):
                    if row.get(name) in ("1", "Checked"):
                        out.append({**base, "field_name": col.name, "value": code})
                continue
            value = row.get(col.name, "")
            if value not in ("", None):
                out.append({**base, "field_name": col.name, "value": value})
    eav_cols = ["record", *pseudo, "field_name", "value"]
    return render_rows(out, ctx.fmt, eav_cols, delimiter=ctx.csv_delimiter)
