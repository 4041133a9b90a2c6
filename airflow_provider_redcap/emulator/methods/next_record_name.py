"""Generate Next Record Name: max numeric id + 1, or ``<dag id>-<n>`` for users in a DAG."""

from __future__ import annotations

from airflow_provider_redcap.emulator import auth
from airflow_provider_redcap.emulator.context import Context
from airflow_provider_redcap.emulator.formats import ApiError, ApiResponse, ok
from airflow_provider_redcap.emulator.import_validation import next_record_number


def generate_next_record_name(ctx: Context) -> ApiResponse:
    if not ctx.user.has("data_export"):
        raise ApiError(403, auth.NO_DATA_EXPORT)
    return ok(next_record_number(ctx.tx, ctx.group_id), ctx.fmt)
