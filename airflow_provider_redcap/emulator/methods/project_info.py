"""Export Project Info (``content=project``): REDCap's keys in REDCap's order."""

from __future__ import annotations

import re
from typing import Any

from airflow_provider_redcap.emulator.context import Context
from airflow_provider_redcap.emulator.formats import ApiResponse, render_object

_KEYS = (
    "project_id",
    "project_title",
    "creation_time",
    "production_time",
    "in_production",
    "project_language",
    "purpose",
    "purpose_other",
    "project_notes",
    "custom_record_label",
    "secondary_unique_field",
    "is_longitudinal",
    "has_repeating_instruments_or_events",
    "surveys_enabled",
    "scheduling_enabled",
    "record_autonumbering_enabled",
    "randomization_enabled",
    "ddp_enabled",
    "project_irb_number",
    "project_grant_number",
    "project_pi_firstname",
    "project_pi_lastname",
    "display_today_now_button",
    "missing_data_codes",
    "external_modules",
    "bypass_branching_erase_field_prompt",
)
_DEFAULTS: dict[str, Any] = {
    "creation_time": "2025-01-06 09:00:00",
    "production_time": "",
    "project_language": "English",
    "purpose": 2,
    "purpose_other": "",
    "project_notes": "",
    "custom_record_label": "",
    "secondary_unique_field": "",
    "surveys_enabled": 0,
    "scheduling_enabled": 0,
    "record_autonumbering_enabled": 0,
    "ddp_enabled": 0,
    "project_irb_number": "",
    "project_grant_number": "",
    "project_pi_firstname": "",
    "project_pi_lastname": "",
    "display_today_now_button": 1,
    "missing_data_codes": "",
    "external_modules": "",
    "bypass_branching_erase_field_prompt": 0,
}


def project_attributes(ctx: Context) -> dict[str, Any]:
    info = ctx.project.info
    values = {**_DEFAULTS, **{k: info[k] for k in _KEYS if k in info}}
    values["in_production"] = ctx.status
    values["is_longitudinal"] = int(ctx.project.longitudinal)
    values["has_repeating_instruments_or_events"] = int(ctx.project.has_repeating)
    values["randomization_enabled"] = int(bool(ctx.project.randomizations))
    out: dict[str, Any] = {}
    for key in _KEYS:
        value = values.get(key, "")
        if isinstance(value, bool) or (isinstance(value, str) and re.fullmatch(r"-?[1-9]\d*|0", value)):
            value = int(value)
        out[key] = value
    return out


def export_project(ctx: Context) -> ApiResponse:
    return render_object(project_attributes(ctx), ctx.fmt, delimiter=ctx.csv_delimiter)
