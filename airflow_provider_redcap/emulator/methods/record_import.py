"""Import Records (``content=record`` with ``data``)."""

from __future__ import annotations

from airflow_provider_redcap.emulator.context import Context
from airflow_provider_redcap.emulator.formats import XML_DECL, ApiError, ApiResponse, ok, to_json
from airflow_provider_redcap.emulator.import_validation import apply_plan, build_plan, parse_payload

ANALYSIS_STATUS = "Data may not be imported because the project is in Analysis/Cleanup status."


def import_records(ctx: Context) -> ApiResponse:
    params = ctx.params
    if ctx.status == 2:
        raise ApiError(403, ANALYSIS_STATUS)
    fmt = ctx.fmt if ctx.fmt in ("json", "csv", "xml") else "xml"
    kind = params.choice("type", ("flat", "eav"), "flat")
    rows = parse_payload(params.get("data"), fmt, kind, ctx.csv_delimiter, ctx.project)
    force = params.flag("forceAutoNumber")
    plan = build_plan(
        ctx.project,
        ctx.tx,
        ctx.user,
        ctx.group_id,
        rows,
        date_format=params.choice("dateFormat", ("MDY", "DMY", "YMD"), "YMD"),
        overwrite=params.choice("overwriteBehavior", ("normal", "overwrite"), "normal") == "overwrite",
        force_auto_number=force,
        status=ctx.status,
    )
    apply_plan(ctx.project, ctx.tx, plan, ctx.user.username, ctx.group_id)
    # Real servers shape the success body by returnFormat (PyCap's integration tests show it).
    fmt = ctx.return_format
    if params.flag("backgroundProcess"):
        return ok(
            {"json": '{"success":true}', "csv": "success\ntrue"}.get(
                fmt, f"{XML_DECL}<success>true</success>"
            ),
            fmt,
        )
    content = params.choice("returnContent", ("count", "ids", "auto_ids", "nothing"), "count")
    if content == "auto_ids" and not force:
        content = "count"
    ids = plan.records
    if content == "nothing":
        return ok("", fmt)
    if content == "count":
        body = {"json": f'{{"count": {len(ids)}}}', "csv": str(len(ids))}.get(
            fmt, f"{XML_DECL}<count>{len(ids)}</count>"
        )
        return ok(body, fmt)
    if content == "auto_ids":
        pairs = [f"{new},{old}" for old, new in plan.renamed.items()]
        if fmt == "json":
            return ok(to_json(pairs), fmt)
        if fmt == "csv":
            return ok("\n".join(["id,original_id", *pairs]), fmt)
        return ok(f"{XML_DECL}<ids>{''.join(f'<id>{p}</id>' for p in pairs)}</ids>", fmt)
    if fmt == "json":
        return ok(to_json(ids), fmt)
    if fmt == "csv":
        return ok("\n".join(["id", *ids]), fmt)
    return ok(f"{XML_DECL}<ids>{''.join(f'<id>{i}</id>' for i in ids)}</ids>", fmt)
