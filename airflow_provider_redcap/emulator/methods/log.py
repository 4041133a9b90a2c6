"""Export Logging (``content=log``)."""

from __future__ import annotations

from airflow_provider_redcap.emulator import auth
from airflow_provider_redcap.emulator.context import Context
from airflow_provider_redcap.emulator.formats import ApiError, ApiResponse, render_rows

_LOGTYPES = {
    "export": {"export"},
    "manage": {"manage"},
    "user": {"user"},
    "record": {"record_add", "record_edit", "record_delete", "randomize"},
    "record_add": {"record_add"},
    "record_edit": {"record_edit", "randomize"},
    "record_delete": {"record_delete"},
    "lock_record": {"lock_record"},
    "page_view": {"page_view"},
}


def export_logging(ctx: Context) -> ApiResponse:
    if not ctx.user.has("data_export"):
        raise ApiError(403, auth.NO_DATA_EXPORT)
    auth.require(ctx.user, "logging", auth.NO_LOGGING)
    params = ctx.params
    logtype = _LOGTYPES.get(params.get("logtype").strip())
    user, record, dag = params.get("user").strip(), params.get("record").strip(), params.get("dag").strip()
    begin, end = params.get("beginTime").strip(), params.get("endTime").strip()
    rows = []
    for row in reversed(ctx.tx.log_rows()):  # REDCap lists the newest entries first
        ts = row["ts"][:16]
        if logtype is not None and row["logtype"] not in logtype:
            continue
        if user and row["username"] != user:
            continue
        if record and row["record"] != record:
            continue
        if dag and str(row["group_id"] or "") != dag:
            continue
        if ctx.group_id is not None and row["group_id"] != ctx.group_id:
            continue
        if (begin and ts < begin) or (end and ts > end):
            continue
        rows.append(
            {
                "timestamp": ts,
                "username": row["username"],
                "action": row["action"],
                "details": row["details"],
                "record": row["record"] or "",
            }
        )
    return render_rows(
        rows, ctx.fmt, ["timestamp", "username", "action", "details", "record"], delimiter=ctx.csv_delimiter
    )
