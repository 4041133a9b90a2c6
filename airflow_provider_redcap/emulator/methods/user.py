"""Export Users (``content=user``): REDCap's keys, ``random_*`` only with randomization enabled."""

from __future__ import annotations

from typing import Any

from airflow_provider_redcap.emulator import auth
from airflow_provider_redcap.emulator.context import Context
from airflow_provider_redcap.emulator.formats import ApiResponse, render_rows
from airflow_provider_redcap.emulator.project import RIGHT_NAMES

_RANDOMIZATION_RIGHTS = ("random_setup", "random_dashboard", "random_perform")
# REDCap lists the random_* rights last, and only when randomization is enabled.
_RIGHTS = tuple(r for r in RIGHT_NAMES if r not in _RANDOMIZATION_RIGHTS)


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
            row.update({r: int(user.rights.get(r, 0)) for r in _RANDOMIZATION_RIGHTS})
        export = int(user.rights.get("data_export", 1))
        row["forms"] = dict.fromkeys(project.forms, 1)
        row["forms_export"] = dict.fromkeys(project.forms, export)
        rows.append(row)
    columns = list(rows[0]) if rows else []
    return render_rows(rows, ctx.fmt, columns, delimiter=ctx.csv_delimiter)
