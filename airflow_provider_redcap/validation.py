"""Client-side validation of records before they are imported into REDCap.

REDCap refuses a whole import request when any value is wrong, and reports only what it found in that
request. Checking the rows against the project's metadata first reports every problem of a file at once,
before anything is sent, with the row's record and event named. The checks follow what REDCap itself
refuses (see the import rules in the REDCap API reference): unknown columns, choice codes, checkbox
values, integer/number/date/time values, event names, form-event designation, repeating instruments,
duplicate rows, and the randomization target field (whose mere presence makes REDCap refuse the import).
"""

from __future__ import annotations

import datetime
import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_redcap.exceptions import (
    RedcapAuthError,
    RedcapImportProblem,
    RedcapImportValidationError,
    RedcapPermissionError,
)

if TYPE_CHECKING:
    from airflow_provider_redcap.hooks.redcap import RedcapHook

EVENT_COLUMN = "redcap_event_name"
REPEAT_INSTRUMENT_COLUMN = "redcap_repeat_instrument"
REPEAT_INSTANCE_COLUMN = "redcap_repeat_instance"
DAG_COLUMN = "redcap_data_access_group"
PSEUDO_COLUMNS = frozenset({EVENT_COLUMN, REPEAT_INSTRUMENT_COLUMN, REPEAT_INSTANCE_COLUMN, DAG_COLUMN})

#: How many problems the exception message lists; all of them stay on ``error.problems``.
MESSAGE_PROBLEM_LIMIT = 200

_CHOICE_TYPES = frozenset({"radio", "dropdown", "select", "yesno", "truefalse"})
_FIXED_CHOICES = {
    "yesno": {"1": "Yes", "0": "No"},
    "truefalse": {"1": "True", "0": "False"},
}
_COMPLETE_CHOICES = {"0": "Incomplete", "1": "Unverified", "2": "Complete"}
_NO_DATA_TYPES = frozenset({"descriptive"})
_INTEGER = re.compile(r"^[-+]?\d+$")
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_NUMBER_DP = re.compile(r"^number_(\d)dp$")
_TIME = re.compile(r"^([01]?\d|2[0-3]):[0-5]\d$")
_TIME_SECONDS = re.compile(r"^([01]?\d|2[0-3]):[0-5]\d:[0-5]\d$")
_DATE_PATTERNS = {
    "YMD": (re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$"), ("y", "m", "d"), "YYYY-MM-DD"),
    "MDY": (re.compile(r"^(\d{1,2})[/-](\d{1,2})[/-](\d{4})$"), ("m", "d", "y"), "MM/DD/YYYY"),
    "DMY": (re.compile(r"^(\d{1,2})[/-](\d{1,2})[/-](\d{4})$"), ("d", "m", "y"), "DD/MM/YYYY"),
}


@dataclass(frozen=True)
class FieldInfo:
    """What validation needs to know about one field of the data dictionary."""

    name: str
    form: str
    field_type: str
    validation: str = ""
    choices: Mapping[str, str] = field(default_factory=dict)
    #: ``(min, max)`` that REDCap enforces on import (``@FORCE-MINMAX``); soft ranges only warn.
    hard_range: tuple[str, str] | None = None


@dataclass(frozen=True)
class ImportSchema:
    """The parts of a project's setup that decide whether an import row is acceptable.

    :param record_id_field: the project's record id field (first field of the data dictionary).
    :param fields: data fields by name.
    :param forms: instrument names, in order.
    :param longitudinal: whether rows must name an event.
    :param events: unique event names (longitudinal projects).
    :param form_events: event -> forms designated in it; ``None`` skips the designation check.
    :param repeating: ``(event, form)`` pairs that repeat; ``event`` is ``None`` in classic projects and
        ``form`` is ``""`` for a repeating event.
    :param randomization_targets: target fields of the project's randomization models.
    :param dags: unique DAG names; ``None`` skips the DAG check.
    """

    record_id_field: str
    fields: Mapping[str, FieldInfo]
    forms: tuple[str, ...]
    longitudinal: bool = False
    events: frozenset[str] = frozenset()
    form_events: Mapping[str, frozenset[str]] | None = None
    repeating: frozenset[tuple[str | None, str]] = frozenset()
    randomization_targets: frozenset[str] = frozenset()
    dags: frozenset[str] | None = None

    @classmethod
    def from_metadata(
        cls,
        metadata: Sequence[Mapping[str, Any]],
        *,
        events: Iterable[Mapping[str, Any]] | None = None,
        form_event_mapping: Iterable[Mapping[str, Any]] | None = None,
        repeating_forms_events: Iterable[Mapping[str, Any]] = (),
        randomization_targets: Iterable[str] = (),
        dags: Iterable[Mapping[str, Any]] | None = None,
    ) -> ImportSchema:
        """Build a schema from the API's own export shapes (metadata, events, mappings, ...).

        :param events: Export Events rows; ``None`` means a classic (non-longitudinal) project.
        """
        if not metadata:
            raise ValueError("the project's metadata is empty")
        fields: dict[str, FieldInfo] = {}
        forms: list[str] = []
        for row in metadata:
            info = _field_info(row)
            fields[info.name] = info
            if info.form not in forms:
                forms.append(info.form)
        form_events: dict[str, frozenset[str]] | None = None
        if form_event_mapping is not None:
            grouped: dict[str, set[str]] = {}
            for row in form_event_mapping:
                grouped.setdefault(str(row["unique_event_name"]), set()).add(str(row["form"]))
            form_events = {event: frozenset(found) for event, found in grouped.items()}
        longitudinal = events is not None
        repeating = frozenset(
            (
                (str(row.get("event_name") or "") or None) if longitudinal else None,
                str(row.get("form_name") or ""),
            )
            for row in repeating_forms_events
        )
        return cls(
            record_id_field=str(metadata[0]["field_name"]),
            fields=fields,
            forms=tuple(forms),
            longitudinal=longitudinal,
            events=frozenset(str(e["unique_event_name"]) for e in events or ()),
            form_events=form_events,
            repeating=repeating,
            randomization_targets=frozenset(randomization_targets),
            dags=None if dags is None else frozenset(str(d["unique_group_name"]) for d in dags),
        )

    @classmethod
    def from_hook(cls, hook: RedcapHook, *, check_dags: bool = False) -> ImportSchema:
        """Read the schema from REDCap (metadata, and events/mappings/repeating setup/models as needed).

        :param check_dags: also read the DAG names (needs the DAG privilege).
        """
        info = hook.get_project_info()
        longitudinal = bool(int(info.get("is_longitudinal") or 0))
        events = hook.get_events() if longitudinal else None
        mapping = hook.get_form_event_mapping() if longitudinal else None
        repeating = (
            hook.get_repeating_forms_events()
            if int(info.get("has_repeating_instruments_or_events") or 0)
            else []
        )
        targets = (
            [m.target_field for m in hook.get_randomization_models()]
            if int(info.get("randomization_enabled") or 0)
            else []
        )
        return cls.from_metadata(
            hook.get_metadata(),
            events=events,
            form_event_mapping=mapping,
            repeating_forms_events=repeating,
            randomization_targets=targets,
            dags=_dags_if_readable(hook) if check_dags else None,
        )

    def column_field(self, column: str) -> FieldInfo | None:
        """The field a data column belongs to (``f___code`` -> checkbox ``f``), or ``None``."""
        found = self.fields.get(column)
        if found is not None:
            return None if found.field_type in ("checkbox", *_NO_DATA_TYPES) else found
        base, sep, code = column.rpartition("___")
        if sep:
            checkbox = self.fields.get(base)
            if (
                checkbox is not None
                and checkbox.field_type == "checkbox"
                and code in {checkbox_column_code(c) for c in checkbox.choices}
            ):
                return checkbox
        return None

    def complete_form(self, column: str) -> str | None:
        """The form of a ``<form>_complete`` column, or ``None``."""
        if column.endswith("_complete") and column[: -len("_complete")] in self.forms:
            return column[: -len("_complete")]
        return None


def _dags_if_readable(hook: RedcapHook) -> list[dict[str, Any]] | None:
    """The project's DAGs, or ``None`` when the token's user may not list them (then REDCap checks)."""
    try:
        return hook.get_dags()
    except (RedcapPermissionError, RedcapAuthError) as err:
        hook.log.warning("Data access group names are not checked before the import: %s", err)
        return None


def checkbox_column_code(code: str) -> str:
    """The code as it appears in a checkbox column name (REDCap lower-cases it, ``-``/``.`` -> ``_``)."""
    return code.lower().replace("-", "_").replace(".", "_")


def parse_choices(text: str) -> dict[str, str]:
    """``"1, Female | 2, Male"`` -> ``{"1": "Female", "2": "Male"}`` (labels may contain commas)."""
    choices: dict[str, str] = {}
    for part in (text or "").split("|"):
        code, _, label = part.partition(",")
        if code.strip():
            choices[code.strip()] = label.strip()
    return choices


def _field_info(row: Mapping[str, Any]) -> FieldInfo:
    field_type = str(row.get("field_type") or "")
    if field_type in _FIXED_CHOICES:
        choices: Mapping[str, str] = _FIXED_CHOICES[field_type]
    elif field_type in _CHOICE_TYPES or field_type == "checkbox":
        choices = parse_choices(str(row.get("select_choices_or_calculations") or ""))
    else:
        choices = {}
    minimum = str(row.get("text_validation_min") or "").strip()
    maximum = str(row.get("text_validation_max") or "").strip()
    forced = "@FORCE-MINMAX" in str(row.get("field_annotation") or "").upper()
    return FieldInfo(
        name=str(row["field_name"]),
        form=str(row.get("form_name") or ""),
        field_type=field_type,
        validation=str(row.get("text_validation_type_or_show_slider_number") or ""),
        choices=choices,
        hard_range=(minimum, maximum) if forced and (minimum or maximum) else None,
    )


def as_text(value: Any) -> str:
    """An import value as REDCap receives it: text, ``None`` -> ``""``, booleans -> ``"1"``/``"0"``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise TypeError(f"values must be text or numbers, not {type(value).__name__}: {value!r}")


def normalize_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Rows with every value as text; raises ``ValueError`` naming the row for a non-scalar value."""
    normalized: list[dict[str, str]] = []
    for index, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise ValueError(f"row {index} is a {type(row).__name__}, not a mapping of field -> value")
        try:
            normalized.append({str(k): as_text(v) for k, v in row.items()})
        except TypeError as err:
            raise ValueError(f"row {index}: {err}") from None
    return normalized


def validate_records(
    rows: Sequence[Mapping[str, str]],
    schema: ImportSchema,
    *,
    date_format: str = "YMD",
    map_labels: bool = False,
) -> list[dict[str, str]]:
    """Check rows against the schema; return them (with labels mapped to codes when asked).

    :param rows: flat import rows with text values (see :func:`normalize_rows`).
    :param date_format: the import's ``dateFormat``: ``YMD``, ``MDY`` or ``DMY``.
    :param map_labels: replace a choice label by its code instead of refusing it.
    :raises RedcapImportValidationError: with every problem found.
    """
    checked, problems = find_problems(rows, schema, date_format=date_format, map_labels=map_labels)
    if problems:
        raise RedcapImportValidationError(describe_problems(problems, len(rows)), problems=problems)
    return checked


def describe_problems(problems: Sequence[RedcapImportProblem], row_count: int) -> str:
    """A message listing the problems (at most :data:`MESSAGE_PROBLEM_LIMIT` of them)."""
    lines = [f"{len(problems)} problem(s) in {row_count} row(s); nothing was sent to REDCap:"]
    lines += [f"  - {p}" for p in problems[:MESSAGE_PROBLEM_LIMIT]]
    if len(problems) > MESSAGE_PROBLEM_LIMIT:
        lines.append(f"  ... and {len(problems) - MESSAGE_PROBLEM_LIMIT} more")
    return "\n".join(lines)


def find_problems(
    rows: Sequence[Mapping[str, str]],
    schema: ImportSchema,
    *,
    date_format: str = "YMD",
    map_labels: bool = False,
) -> tuple[list[dict[str, str]], list[RedcapImportProblem]]:
    """Like :func:`validate_records` but returns ``(rows, problems)`` instead of raising."""
    date_format = date_format.upper()
    if date_format not in _DATE_PATTERNS:
        raise ValueError(f"date_format must be one of YMD, MDY, DMY, not {date_format!r}")
    problems: list[RedcapImportProblem] = []
    checked: list[dict[str, str]] = []
    seen: dict[tuple[str, str, str, str], int] = {}
    for index, source in enumerate(rows, start=1):
        row = dict(source)
        record = row.get(schema.record_id_field, "")
        event = row.get(EVENT_COLUMN, "") or None

        report = functools.partial(_append_problem, problems, record, event)

        if schema.record_id_field not in row:
            report(
                schema.record_id_field, "", f"row {index} has no record id column {schema.record_id_field!r}"
            )
        elif not record.strip():
            report(schema.record_id_field, record, f"row {index}: the record id is blank")
        elif invisible := invisible_characters(record):
            # REDCap would store them as part of the id: a record that looks like another but is not.
            report(
                schema.record_id_field,
                record,
                f"row {index}: the record id contains invisible character(s) {invisible}; remove them",
            )
        _check_event(row, schema, report)
        _check_repeat(row, schema, report)
        for column in row:
            _check_column(column, row, schema, report, date_format=date_format, map_labels=map_labels)
        key = (
            record,
            event or "",
            row.get(REPEAT_INSTRUMENT_COLUMN, ""),
            row.get(REPEAT_INSTANCE_COLUMN, ""),
        )
        if record and key in seen:
            report(
                schema.record_id_field, record, f"row {index} repeats row {seen[key]} (same record and event)"
            )
        seen.setdefault(key, index)
        checked.append(row)
    return checked, problems


def _check_event(row: dict[str, str], schema: ImportSchema, report: Any) -> None:
    event = row.get(EVENT_COLUMN, "")
    if not schema.longitudinal:
        if event:
            report(EVENT_COLUMN, event, "the project is not longitudinal; leave redcap_event_name out")
        return
    if not event:
        report(EVENT_COLUMN, event, "the project is longitudinal: every row needs a redcap_event_name")
    elif event not in schema.events:
        report(EVENT_COLUMN, event, f"unknown event; the project's events are {_listing(schema.events)}")


def _check_repeat(row: dict[str, str], schema: ImportSchema, report: Any) -> None:
    instrument = row.get(REPEAT_INSTRUMENT_COLUMN, "")
    instance = row.get(REPEAT_INSTANCE_COLUMN, "")
    event = (row.get(EVENT_COLUMN, "") or None) if schema.longitudinal else None
    where = f" in event {event!r}" if event else ""
    if instrument:
        if instrument not in schema.forms:
            report(REPEAT_INSTRUMENT_COLUMN, instrument, "unknown instrument")
        elif (event, instrument) not in schema.repeating:
            report(REPEAT_INSTRUMENT_COLUMN, instrument, f"the instrument does not repeat{where}")
        if not instance:
            report(
                REPEAT_INSTANCE_COLUMN, instance, "a repeating instrument row needs redcap_repeat_instance"
            )
    elif instance and (event, "") not in schema.repeating:
        report(
            REPEAT_INSTANCE_COLUMN,
            instance,
            f"the event does not repeat{where}; set redcap_repeat_instrument",
        )
    if instance and instance != "new" and not (instance.isdigit() and int(instance) > 0):
        report(REPEAT_INSTANCE_COLUMN, instance, "the instance must be a positive whole number or 'new'")


def _check_column(
    column: str,
    row: dict[str, str],
    schema: ImportSchema,
    report: Any,
    *,
    date_format: str,
    map_labels: bool,
) -> None:
    value = row[column]
    if column == schema.record_id_field or column in (
        EVENT_COLUMN,
        REPEAT_INSTRUMENT_COLUMN,
        REPEAT_INSTANCE_COLUMN,
    ):
        return
    if column == DAG_COLUMN:
        if value and schema.dags is not None and value not in schema.dags:
            report(column, value, f"unknown data access group; the project's are {_listing(schema.dags)}")
        return
    if column in schema.randomization_targets:
        report(
            column,
            value,
            "this is a randomization target field: REDCap refuses the whole import while the column is "
            "present (even blank); remove the column and use the randomize operator",
        )
        return
    complete_form = schema.complete_form(column)
    info = schema.column_field(column)
    if complete_form is None and info is None:
        known = schema.fields.get(column)
        if known is not None and known.field_type == "checkbox":
            codes = ", ".join(f"{column}___{checkbox_column_code(c)}" for c in known.choices)
            report(column, value, f"checkbox fields are imported one column per choice: {codes}")
        elif known is not None:
            report(column, value, f"{known.field_type} fields hold no data and cannot be imported")
        else:
            report(column, value, _unknown_column(column, schema))
        return
    form = complete_form if complete_form is not None else info.form  # type: ignore[union-attr]
    if value and schema.longitudinal and schema.form_events is not None:
        event = row.get(EVENT_COLUMN, "")
        if event in schema.events and form not in schema.form_events.get(event, frozenset()):
            report(column, value, f"form {form!r} is not designated for event {event!r}")
    if not value:
        return
    if complete_form is not None:
        row[column] = _check_choice(column, value, _COMPLETE_CHOICES, report, map_labels=map_labels)
    elif info.field_type == "checkbox":  # type: ignore[union-attr]
        row[column] = _check_checkbox(column, value, info, report, map_labels=map_labels)  # type: ignore[arg-type]
    elif info.choices:  # type: ignore[union-attr]
        row[column] = _check_choice(column, value, info.choices, report, map_labels=map_labels)  # type: ignore[union-attr]
    else:
        _check_text(column, value, info, report, date_format=date_format)  # type: ignore[arg-type]


def _check_choice(
    column: str, value: str, choices: Mapping[str, str], report: Any, *, map_labels: bool
) -> str:
    if value in choices:
        return value
    stripped = value.strip()
    if stripped in choices:
        return stripped
    matches = [code for code, label in choices.items() if label == stripped] or [
        code for code, label in choices.items() if label.casefold() == stripped.casefold()
    ]
    listing = "; ".join(f"{code} = {label}" for code, label in choices.items())
    if len(matches) == 1 and map_labels:
        return matches[0]
    if len(matches) == 1:
        report(column, value, f"this is a label; its code is {matches[0]!r} (or set map_labels=True)")
    elif len(matches) > 1:
        report(column, value, f"this label belongs to several codes ({', '.join(matches)}); use a code")
    else:
        report(column, value, f"not a valid choice code; the choices are {listing}")
    return value


def _check_checkbox(column: str, value: str, info: FieldInfo, report: Any, *, map_labels: bool) -> str:
    if value in ("0", "1"):
        return value
    if map_labels:
        code = column.rpartition("___")[2]
        labels = {checkbox_column_code(c): label for c, label in info.choices.items()}
        folded = value.strip().casefold()
        if folded in ("checked", labels.get(code, "").casefold()):
            return "1"
        if folded == "unchecked":
            return "0"
    report(column, value, f"{info.name} is a checkbox field: a choice column holds '1' (checked) or '0'")
    return value


def _check_text(column: str, value: str, info: FieldInfo, report: Any, *, date_format: str) -> None:
    validation = info.validation
    if info.field_type == "slider" or validation == "integer":
        if not _INTEGER.match(value):
            report(column, value, "must be an integer")
        else:
            _check_range(column, value, info, report)
    elif validation == "number":
        if not _NUMBER.match(value):
            report(column, value, "must be a number (with '.' as the decimal separator)")
        else:
            _check_range(column, value, info, report)
    elif match := _NUMBER_DP.match(validation):
        if not re.match(rf"^[-+]?\d+\.\d{{{match.group(1)}}}$", value):
            report(column, value, f"must be a number with {match.group(1)} decimal place(s)")
    elif validation.startswith(("date_", "datetime_")):
        _check_date(column, value, validation, report, date_format=date_format)
    elif validation == "time" and not _TIME.match(value):
        report(column, value, "must be a time as HH:MM")


def _check_range(column: str, value: str, info: FieldInfo, report: Any) -> None:
    if info.hard_range is None:
        return
    minimum, maximum = info.hard_range
    number = float(value)
    if minimum and _NUMBER.match(minimum) and number < float(minimum):
        report(column, value, f"below the field minimum ({minimum}), which the project enforces")
    if maximum and _NUMBER.match(maximum) and number > float(maximum):
        report(column, value, f"above the field maximum ({maximum}), which the project enforces")


def _check_date(column: str, value: str, validation: str, report: Any, *, date_format: str) -> None:
    pattern, order, shape = _DATE_PATTERNS[date_format]
    date_part, _, time_part = value.partition(" ")
    if validation.startswith("datetime_seconds_"):
        expected, time_pattern = f"{shape} HH:MM:SS", _TIME_SECONDS
    elif validation.startswith("datetime_"):
        expected, time_pattern = f"{shape} HH:MM", _TIME
    else:
        expected, time_pattern = shape, None
    hint = f"must be a date as {expected} (date_format={date_format!r})"
    match = pattern.match(date_part)
    if (
        match is None
        or (time_pattern is None) != (time_part == "")
        or (time_pattern is not None and not time_pattern.match(time_part))
    ):
        report(column, value, hint)
        return
    parts = dict(zip(order, (int(g) for g in match.groups()), strict=True))
    try:
        datetime.date(parts["y"], parts["m"], parts["d"])
    except ValueError as err:
        report(column, value, f"{hint}: {err}")


def invisible_characters(text: str) -> str:
    """``"U+FEFF (ZERO WIDTH NO-BREAK SPACE)"`` for each distinct control/format character, else ``""``."""
    found = dict.fromkeys(c for c in text if unicodedata.category(c) in ("Cc", "Cf"))
    return ", ".join(f"U+{ord(c):04X} ({unicodedata.name(c, 'control character')})" for c in found)


def _unknown_column(column: str, schema: ImportSchema) -> str:
    base, sep, code = column.rpartition("___")
    checkbox = schema.fields.get(base) if sep else None
    if checkbox is not None and checkbox.field_type == "checkbox":
        return f"checkbox field {base!r} has no choice {code!r} (choices: {', '.join(checkbox.choices)})"
    if invisible := invisible_characters(column):
        return f"not a field of this project: the column name contains invisible character(s) {invisible}"
    return "not a field of this project"


def _append_problem(
    problems: list[RedcapImportProblem], record: str, event: str | None, column: str, value: str, message: str
) -> None:
    problems.append(RedcapImportProblem(record, column, event, value, message))


def _listing(names: Iterable[str]) -> str:
    return ", ".join(sorted(names)) or "(none)"
