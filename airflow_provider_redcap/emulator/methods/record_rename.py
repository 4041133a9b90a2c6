"""Rename Record (``content=record&action=rename``)."""

from __future__ import annotations

from airflow_provider_redcap.emulator.context import Context
from airflow_provider_redcap.emulator.formats import ApiError, ApiResponse, ok


def rename_record(ctx: Context) -> ApiResponse:
    record, new = ctx.params.get("record").strip(), ctx.params.get("new_record_name").strip()
    groups = ctx.tx.record_groups()
    if not record or record not in groups or (ctx.group_id is not None and groups[record] != ctx.group_id):
        raise ApiError(400, f"The record '{record}' does not exist")
    if not new or new in groups:
        raise ApiError(400, f"The record name '{new}' already exists")
    tx = ctx.tx
    tx.rename_record_data(record, new)
    tx.conn.execute(
        "UPDATE data SET value = ? WHERE record = ? AND field_name = ?", (new, new, ctx.project.pk)
    )
    tx.conn.execute("UPDATE records SET record = ? WHERE record = ?", (new, record))
    tx.conn.execute("UPDATE allocation SET is_used_by = ? WHERE is_used_by = ?", (new, record))
    tx.log(
        ctx.user.username,
        "Update record (API)",
        f"Record ID renamed from '{record}' to '{new}'",
        record=new,
        group_id=groups[record],
        logtype="record_edit",
    )
    return ok("1", ctx.fmt)
