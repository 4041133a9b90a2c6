"""Export Events, Arms, Instrument-Event Mappings and Repeating Instruments and Events."""

from __future__ import annotations

from airflow_provider_redcap.emulator.context import Context
from airflow_provider_redcap.emulator.formats import ApiError, ApiResponse, render_rows


def _arms_filter(ctx: Context) -> set[int] | None:
    arms = ctx.params.list("arms")
    return {int(a) for a in arms if a.lstrip("-").isdigit()} if arms else None


def export_events(ctx: Context) -> ApiResponse:
    project = ctx.project
    if not project.longitudinal:
        raise ApiError(400, "You cannot export events for classic projects")
    arms = _arms_filter(ctx)
    scheduling = bool(int(project.info.get("scheduling_enabled", 0)))
    columns = ["event_name", "arm_num"]
    if scheduling:
        columns += ["day_offset", "offset_min", "offset_max"]
    columns += ["unique_event_name", "custom_event_label", "event_id"]
    rows = []
    for e in project.events:
        if arms is not None and e.arm_num not in arms:
            continue
        row = {
            "event_name": e.name,
            "arm_num": e.arm_num,
            "day_offset": e.day_offset or 0,
            "offset_min": e.offset_min or 0,
            "offset_max": e.offset_max or 0,
            "unique_event_name": e.unique_name,
            "custom_event_label": e.custom_label,
            "event_id": e.event_id,
        }
        rows.append({c: row[c] for c in columns})
    return render_rows(rows, ctx.fmt, columns, delimiter=ctx.csv_delimiter)


def export_arms(ctx: Context) -> ApiResponse:
    if not ctx.project.longitudinal:
        raise ApiError(400, "You cannot export arms for classic projects")
    arms = _arms_filter(ctx)
    rows = [{"arm_num": n, "name": name} for n, name in ctx.project.arms.items() if arms is None or n in arms]
    return render_rows(rows, ctx.fmt, ["arm_num", "name"], delimiter=ctx.csv_delimiter)


def export_form_event_mapping(ctx: Context) -> ApiResponse:
    project = ctx.project
    if not project.longitudinal:
        raise ApiError(400, "You cannot export form/event mappings for classic projects")
    arms = _arms_filter(ctx)
    rows = [
        {"arm_num": e.arm_num, "unique_event_name": e.unique_name, "form": form}
        for e in project.events
        if arms is None or e.arm_num in arms
        for form in project.form_events.get(e.event_id, [])
    ]
    return render_rows(
        rows, ctx.fmt, ["arm_num", "unique_event_name", "form"], root="items", delimiter=ctx.csv_delimiter
    )


def export_repeating(ctx: Context) -> ApiResponse:
    project = ctx.project
    if not project.has_repeating:
        raise ApiError(
            400,
            "You cannot export repeating instruments and events because the project does "
            "not contain any repeating instruments and events",
        )
    columns = (
        ["event_name", "form_name", "custom_form_label"]
        if project.longitudinal
        else ["form_name", "custom_form_label"]
    )
    rows = [{c: r[c] for c in columns} for r in project.repeating]
    return render_rows(rows, ctx.fmt, columns, delimiter=ctx.csv_delimiter)
