"""Export Users (``content=user``): REDCap's keys, ``random_*`` only with randomization enabled."""

from __future__ import annotations

from typing import Any

from airflow_provider_redcap.emulator import auth
from airflow_provider_redcap.emulator.context import Context
from airflow_provider_redcap.emulator.formats import ApiResponse, render_rows

_RIGHTS = (
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
)


def export_users(ctx: Context) -> ApiResponse:
    auth.require(ctx.user, "user_rights", auth.NO_USER_RIGHTS, status=400)
    project = ctx.project
    rows: list[dict[str, Any]] = []
    for user in project.users:
        if ctx.user.data_access_group and user.data_access_group != ctx.user.data_access_group:
            continue
        dag = project.dag_by_name(user.data_access_group) if user.data_access_group else None
        row: dict[str, Any] = {
            "username": user.username,
            "email": user.info.get("email", ""),
            "firstname": user.info.get("firstname", ""),
            "lastname": user.info.get("lastname", ""),
            "expiration": user.expiration or "",
            "data_access_group": dag.unique_name if dag else "",
            "data_access_group_id": dag.group_id if dag else "",
        }
        row.update({r: int(user.rights.get(r, 0)) for r in _RIGHTS})
        if project.randomizations:
            row.update(
                {
                    r: int(user.rights.get(r, 0))
                    for r in ("random_setup", "random_dashboard", "random_perform")
                }
            )
        export = int(user.rights.get("data_export", 1))
        row["forms"] = dict.fromkeys(project.forms, 1)
        row["forms_export"] = dict.fromkeys(project.forms, export)
        rows.append(row)
    columns = list(rows[0]) if rows else []
    return render_rows(rows, ctx.fmt, columns, delimiter=ctx.csv_delimiter)
