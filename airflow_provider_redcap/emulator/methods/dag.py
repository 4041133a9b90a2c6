"""Export DAGs (``content=dag``)."""

from __future__ import annotations

from airflow_provider_redcap.emulator import auth
from airflow_provider_redcap.emulator.context import Context
from airflow_provider_redcap.emulator.formats import ApiError, ApiResponse, render_rows

_COLUMNS = ["data_access_group_name", "unique_group_name", "data_access_group_id"]


def export_dags(ctx: Context) -> ApiResponse:
    if ctx.user.data_access_group:
        raise ApiError(403, auth.IN_DAG)
    auth.require(ctx.user, "data_access_groups", auth.NO_DAG_RIGHTS, status=400)
    rows = [
        {
            "data_access_group_name": d.label,
            "unique_group_name": d.unique_name,
            "data_access_group_id": d.group_id,
        }
        for d in ctx.project.dags
    ]
    return render_rows(rows, ctx.fmt, _COLUMNS, delimiter=ctx.csv_delimiter)
