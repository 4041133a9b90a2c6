"""Randomize Record, in REDCap 15.7.6's order of checks and with its exact answers.

Refusals after the privilege check are HTTP 200 with a raw, unwrapped text body, even for
``format=json``; that is what REDCap really sends. The allocation is the lowest unused row (upload
order) of the model with the project's current status, the record's DAG (when grouping by DAG) and the
record's raw stratum values, taken in one UPDATE inside the request's transaction.
"""

from __future__ import annotations

import re
from typing import Any

from airflow_provider_redcap.emulator.context import Context
from airflow_provider_redcap.emulator.formats import CONTENT_TYPES, ApiResponse, render_object
from airflow_provider_redcap.emulator.records import COMPLETE_SUFFIX, key_for, stored_value

INVALID = "Invalid data supplied"
NOT_EXIST = "Cannot randomize. Record does not exist."
ALREADY = "Cannot randomize. Randomization already completed for record."
NO_DAG = "Cannot randomize. Record not assigned to a DAG"
MISSING = "Cannot randomize. Missing stratification data for fields: "
NONE_LEFT = "Cannot randomize. No allocations available."

_PHP_INT = re.compile(r"^\s*[+-]?\d+")
_PHP_NUMERIC = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")


def php_intval(value: str) -> int:
    match = _PHP_INT.match(value)
    return int(match.group(0)) if match else 0


def return_alt_requested(value: str) -> bool:
    """PHP's loose ``== 'true' || == 1``: exactly ``true``, or a numeric string equal to 1."""
    if value == "true":
        return True
    return bool(_PHP_NUMERIC.match(value)) and float(value) == 1.0


def _plain(message: str, fmt: str) -> ApiResponse:
    return ApiResponse(200, message, CONTENT_TYPES.get(fmt, CONTENT_TYPES["xml"]))


def randomize(ctx: Context) -> ApiResponse:
    project, tx, params = ctx.project, ctx.tx, ctx.params
    fmt = ctx.fmt
    rid = php_intval(params.get("randomization_id"))
    model = project.randomization(rid) if rid else None
    if model is None:
        return _plain(INVALID, fmt)
    record = params.get("record")
    target_event = project.event_by_id(model.target_event_id)
    arm_events = {e.event_id for e in project.events if e.arm_num == target_event.arm_num}
    if not record or not tx.record_exists(record) or not (tx.record_event_ids(record) & arm_events):
        return _plain(NOT_EXIST, fmt)
    if tx.used_allocation(model.rid, ctx.status, record) is not None:
        return _plain(ALREADY, fmt)
    # REDCap reads the strata through a data export limited to the user's own DAG.
    group_id = tx.record_group(record)
    visible = ctx.group_id is None or group_id == ctx.group_id
    data = tx.record_data([record]).get(record, {}) if visible else {}
    if model.group_by_dag and (not visible or group_id is None):
        return _plain(NO_DAG, fmt)
    values: list[str] = []
    missing: list[str] = []
    for field, event_id in model.strata:
        value = stored_value(project, data, field, event_id)
        if value == "":
            missing.append(f"{field} (event {event_id})")
        values.append(value)
    if missing:
        return _plain(MISSING + ",".join(missing), fmt)
    row = tx.take_allocation(model.rid, ctx.status, values, group_id if model.group_by_dag else None, record)
    if row is None:
        return _plain(NONE_LEFT, fmt)
    target = project.fields[model.target_field]
    key = key_for(project, model.target_event_id, target.form)
    base = (key[0], "", 1)
    if tx.get_value(record, base, project.pk) is None:
        tx.set_value(record, base, project.pk, record)
    tx.set_value(record, key, model.target_field, row["target_field"])
    complete = f"{target.form}{COMPLETE_SUFFIX}"
    if tx.get_value(record, key, complete) is None:
        tx.set_value(record, key, complete, "0")
    tx.log(
        ctx.user.username,
        "Randomize record (API)",
        f"{project.pk} = '{record}'\nrandomization_id = {model.rid}",
        record=record,
        event_id=model.target_event_id,
        group_id=group_id,
        logtype="randomize",
    )
    body: dict[str, Any] = {
        "randomization_id": model.rid,
        "record": record,
        "target_field": row["target_field"],
        "target_field_name": model.target_field,
    }
    if return_alt_requested(params.get("returnAlt")):
        body["target_field_alt"] = "*" if model.blinded else row["target_field_alt"]
    return render_object(
        body, fmt if fmt in ("json", "csv") else "xml", root="items", delimiter=ctx.csv_delimiter
    )
