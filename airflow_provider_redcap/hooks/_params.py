"""Encode REDCap API parameters as a flat form body. Pure; shared by the sync and async hooks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

#: Above this many requested records an export is split even without ``batch_size``: every id is a
#: separate POST variable and PHP's ``max_input_vars`` (often 1000) would refuse the request.
DEFAULT_EXPORT_BATCH = 500


def encode_value(value: Any) -> str:
    """One scalar as REDCap expects it: booleans as lowercase ``true``/``false``, dates ISO."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M" if value.second == 0 else "%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def encode_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Flatten parameters into form fields.

    ``None`` values are left out. Lists and tuples become PHP indexed arrays
    (``fields[0]=a&fields[1]=b``), which every REDCap version accepts; an empty list is left out.
    """
    form: dict[str, str] = {}
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, list | tuple | set | frozenset):
            items = sorted(value) if isinstance(value, set | frozenset) else value
            for index, item in enumerate(items):
                form[f"{name}[{index}]"] = encode_value(item)
        else:
            form[name] = encode_value(value)
    return form


def build_form(
    token: str,
    content: str,
    *,
    action: str | None = None,
    format: str = "json",
    return_format: str = "json",
    params: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The complete form body of one API call: token, content, action, format, returnFormat, params.

    Keys in ``params`` use REDCap's spelling (``rawOrLabel``, ``returnContent``...) and may override
    ``returnFormat``.
    """
    base: dict[str, Any] = {
        "token": token,
        "content": content,
        "action": action,
        "format": format,
        "returnFormat": return_format,
    }
    base.update(params or {})
    return encode_params(base)
