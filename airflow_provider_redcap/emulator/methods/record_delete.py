"""Delete Records (``content=record&action=delete``); frees the records' allocation rows, as REDCap does."""

from __future__ import annotations

from airflow_provider_redcap.emulator.context import Context
from airflow_provider_redcap.emulator.formats import ApiError, ApiResponse, ok


def delete_records(ctx: Context) -> ApiResponse:
    project, params = ctx.project, ctx.params
    records = params.list("records")
    if not records:
        raise ApiError(400, "You must specify at least one record to delete")
    arm = params.get("arm").strip()
    visible = ctx.tx.record_groups()
    missing = [
        r for r in records if r not in visible or (ctx.group_id is not None and visible[r] != ctx.group_id)
    ]
    if missing:
        raise ApiError(
            400,
            "One or more of the records provided cannot be deleted because they do not exist in "
            "the project. The following records do not exist: " + ", ".join(missing),
        )
    event_ids = None
    if project.longitudinal and arm:
        if not arm.isdigit() or int(arm) not in project.arms:
            raise ApiError(400, f"The arm number '{arm}' is invalid")
        event_ids = [e.event_id for e in project.events if e.arm_num == int(arm)]
    for record in dict.fromkeys(records):
        if event_ids is None:
            ctx.tx.free_allocations(record)
        else:
            # Only models whose target lives in the deleted arm give their rows back.
            for model in project.randomizations:
                if model.target_event_id in event_ids:
                    ctx.tx.free_allocations(record, model.rid)
        group_id = ctx.tx.record_group(record)
        ctx.tx.delete_record(record, event_ids)
        ctx.tx.log(
            ctx.user.username,
            "Delete record (API)",
            f"{project.pk} = '{record}'",
            record=record,
            group_id=group_id,
            logtype="record_delete",
        )
    count = len(dict.fromkeys(records))
    return ok(str(count), ctx.fmt)
