"""Export REDCap Version: plain text, always sent as text/csv whatever ``format`` says."""

from __future__ import annotations

from airflow_provider_redcap.emulator.context import Context
from airflow_provider_redcap.emulator.formats import CONTENT_TYPES, ApiResponse


def export_version(ctx: Context) -> ApiResponse:
    return ApiResponse(200, ctx.project.redcap_version, CONTENT_TYPES["csv"])
