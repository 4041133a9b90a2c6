"""Export Metadata, Export Field Names and Export Instruments."""

from __future__ import annotations

from airflow_provider_redcap.emulator.context import Context
from airflow_provider_redcap.emulator.formats import ApiError, ApiResponse, render_rows
from airflow_provider_redcap.emulator.project import METADATA_COLUMNS, checkbox_code_suffix
from airflow_provider_redcap.emulator.records import COMPLETE_SUFFIX


def invalid_values(param: str, values: list[str]) -> ApiError:
    quoted = ", ".join(f"'{v}'" for v in values)
    return ApiError(400, f'The following values in the parameter "{param}" are not valid: {quoted}')


def export_metadata(ctx: Context) -> ApiResponse:
    project = ctx.project
    fields, forms = ctx.params.list("fields"), ctx.params.list("forms")
    bad = [f for f in fields if f not in project.fields]
    if bad:
        raise invalid_values("fields", bad)
    bad = [f for f in forms if f not in project.forms]
    if bad:
        raise invalid_values("forms", bad)
    rows = [
        dict(f.row)
        for f in project.fields.values()
        if (not fields and not forms) or f.name in fields or f.form in forms
    ]
    return render_rows(rows, ctx.fmt, METADATA_COLUMNS, delimiter=ctx.csv_delimiter)


def export_field_names(ctx: Context) -> ApiResponse:
    project = ctx.project
    wanted = ctx.params.get("field").strip()
    if wanted and wanted not in project.fields:
        raise ApiError(400, "Invalid field")
    rows: list[dict[str, str]] = []
    for form in project.forms:
        for fld in project.form_fields(form):
            if fld.field_type in ("calc", "file", "descriptive"):
                continue
            if fld.is_checkbox:
                rows += [
                    {
                        "original_field_name": fld.name,
                        "choice_value": code,
                        "export_field_name": f"{fld.name}___{checkbox_code_suffix(code)}",
                    }
                    for code in fld.choices
                ]
            else:
                rows.append(
                    {"original_field_name": fld.name, "choice_value": "", "export_field_name": fld.name}
                )
        complete = f"{form}{COMPLETE_SUFFIX}"
        rows.append({"original_field_name": complete, "choice_value": "", "export_field_name": complete})
    if wanted:
        rows = [r for r in rows if r["original_field_name"] == wanted]
    columns = ["original_field_name", "choice_value", "export_field_name"]
    return render_rows(rows, ctx.fmt, columns, delimiter=ctx.csv_delimiter)


def export_instruments(ctx: Context) -> ApiResponse:
    rows = [{"instrument_name": f, "instrument_label": ctx.project.form_labels[f]} for f in ctx.project.forms]
    return render_rows(rows, ctx.fmt, ["instrument_name", "instrument_label"], delimiter=ctx.csv_delimiter)
