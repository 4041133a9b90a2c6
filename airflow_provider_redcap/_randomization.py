"""Pure helpers shared by the randomize operator, the stratification sensor and its trigger.

Choosing a randomization model, describing the strata a model needs, and deciding from Export Records
rows which records hold all of them. REDCap counts a value as missing only when it is absent or ``""``
(``"0"`` is a value), and reads each stratum in its own event.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_redcap.models import RandomizationModel, StratumField

EVENT_COLUMN = "redcap_event_name"
DAG_COLUMN = "redcap_data_access_group"
NO_DAG = "data access group"
#: Log format (one ``%s``: the record ids) for records that no export returned.
NOT_FOUND_WARNING = (
    "Record(s) not found in REDCap: %s. They do not exist (yet), or lie in a data access group the "
    "token's user cannot see; still waiting for them."
)


class ModelSelectionError(ValueError):
    """The project's randomization models do not single out the model the caller means."""


class UnreadableStrataError(ValueError):
    """REDCap's export left out stratification fields: the token's user may not export them."""


def select_model(
    models: Sequence[RandomizationModel],
    *,
    target_field: str | None = None,
    target_event: str | None = None,
) -> RandomizationModel:
    """The model whose target is ``target_field`` (and ``target_event``), or the project's only model.

    REDCap's project XML lists the models without their ``randomization_id``, so the target is the
    only thing that tells them apart.

    :raises ModelSelectionError: no model matches, or several do.
    """
    candidates = [
        m
        for m in models
        if (target_field is None or m.target_field == target_field)
        and (target_event is None or m.target_event == target_event)
    ]
    if len(candidates) == 1:
        return candidates[0]
    described = ", ".join(_describe_model(m) for m in models) or "none"
    if not candidates:
        wanted = target_field or "?"
        if target_event:
            wanted += f" @ {target_event}"
        raise ModelSelectionError(
            f"no randomization model of the project targets {wanted}; the project's models: {described}"
        )
    raise ModelSelectionError(
        f"the project has {len(candidates)} matching randomization models ({described}); REDCap does "
        "not say which randomization_id belongs to which, so set target_field (and target_event)"
    )


def _describe_model(model: RandomizationModel) -> str:
    target = f"{model.target_field} @ {model.target_event}" if model.target_event else model.target_field
    return f"#{model.position} target {target}"


def coerce_records(records: Any) -> list[str]:
    """Record ids from a templated value: a list, a single id, or a list rendered to JSON text.

    Ids are kept as text exactly as given (``"001017"``); duplicates are dropped, order kept.
    """
    if records is None:
        return []
    if isinstance(records, (str, int)):
        text = str(records).strip()
        if text.startswith("["):
            try:
                records = json.loads(text)
            except json.JSONDecodeError:
                raise ValueError(f"records looks like a list but is not valid JSON: {text[:80]!r}") from None
        else:
            records = [text]
    if not isinstance(records, Iterable) or isinstance(records, Mapping):
        raise ValueError(f"records must be a record id or a list of them, not {type(records).__name__}")
    ids: list[str] = []
    for item in records:
        if isinstance(item, (list, tuple)) and len(item) == 1:
            item = item[0]  # expand() over [["001"], ["002"]] nests one level
        if not isinstance(item, (str, int)) or isinstance(item, bool):
            raise ValueError(f"a record id must be text, not {type(item).__name__}: {item!r}")
        text = str(item).strip()
        if not text:
            raise ValueError("a record id is blank")
        if text not in ids:
            ids.append(text)
    return ids


def coerce_strata(strata: Iterable[Any]) -> tuple[StratumField, ...]:
    """Explicit strata: ``"field"`` strings or ``{"field": ..., "event": ...}`` dicts."""
    if isinstance(strata, (str, Mapping)):
        strata = [strata]
    parsed: list[StratumField] = []
    for item in strata:
        if isinstance(item, StratumField):
            parsed.append(item)
        elif isinstance(item, str) and item.strip():
            parsed.append(StratumField(item.strip()))
        elif isinstance(item, Mapping) and str(item.get("field") or "").strip():
            parsed.append(StratumField(str(item["field"]).strip(), str(item.get("event") or "") or None))
        else:
            raise ValueError(f"a stratum must be a field name or a {{'field', 'event'}} dict, not {item!r}")
    return tuple(parsed)


@dataclass(frozen=True)
class StrataSpec:
    """What to read for a stratification check, as JSON-friendly values.

    :param record_id_field: the project's record id field.
    :param strata: the fields (and events) that must all hold a value.
    :param group_by_dag: whether the record must also be in a data access group.
    :param longitudinal: whether rows carry ``redcap_event_name``.
    """

    record_id_field: str
    strata: tuple[StratumField, ...]
    group_by_dag: bool = False
    longitudinal: bool = False

    @property
    def export_fields(self) -> list[str]:
        fields = [self.record_id_field]
        for stratum in self.strata:
            if stratum.field not in fields:
                fields.append(stratum.field)
        return fields

    def to_dict(self) -> dict[str, Any]:
        return {
            "record_id_field": self.record_id_field,
            "strata": [{"field": s.field, "event": s.event} for s in self.strata],
            "group_by_dag": self.group_by_dag,
            "longitudinal": self.longitudinal,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StrataSpec:
        return cls(
            record_id_field=str(data["record_id_field"]),
            strata=coerce_strata(data.get("strata") or ()),
            group_by_dag=bool(data.get("group_by_dag")),
            longitudinal=bool(data.get("longitudinal")),
        )


def evaluate_strata(
    rows: Iterable[Mapping[str, Any]], records: Sequence[str], spec: StrataSpec
) -> dict[str, Any]:
    """Per-record status from the export of the strata.

    :param rows: export rows of ``spec.export_fields`` in every event (no events filter); a record
        counts as not found only when no row names it, and each stratum is read in its own event.
    :return: ``{"complete": [record, ...], "waiting": {record: [missing, ...]}, "not_found": [record,
        ...]}`` in the order of ``records``; a missing item is ``"field (event)"`` or
        ``"data access group"``. Not found: the record does not exist, or the token's user cannot see
        it (another data access group).
    :raises UnreadableStrataError: a stratum column is absent (flat exports hold every requested
        column, blank or not, so REDCap removed it); waiting could never end.
    """
    rows = list(rows)
    absent = sorted({s.field for s in spec.strata if rows and not any(s.field in row for row in rows)})
    if absent:
        raise UnreadableStrataError(
            f"REDCap's export leaves out the stratification field(s) {', '.join(absent)}: the token's "
            "user may not export them (De-identified or no-access export rights for their form)."
        )
    found: dict[str, set[StratumField | str]] = {}
    for row in rows:
        record = str(row.get(spec.record_id_field, ""))
        have = found.setdefault(record, set())
        event = row.get(EVENT_COLUMN)
        for stratum in spec.strata:
            in_event = stratum.event is None or not spec.longitudinal or event == stratum.event
            if in_event and _has_value(row.get(stratum.field)):
                have.add(stratum)
        if _has_value(row.get(DAG_COLUMN)):
            have.add(DAG_COLUMN)
    # REDCap leaves the DAG column out when the token's user is in a DAG; their records are then in it.
    dag_visible = not rows or any(DAG_COLUMN in row for row in rows)
    complete: list[str] = []
    waiting: dict[str, list[str]] = {}
    not_found: list[str] = []
    for record in records:
        if record not in found:
            not_found.append(record)
            continue
        missing = [str(s) for s in spec.strata if s not in found[record]]
        if spec.group_by_dag and dag_visible and DAG_COLUMN not in found[record]:
            missing.append(NO_DAG)
        if missing:
            waiting[record] = missing
        else:
            complete.append(record)
    return {"complete": complete, "waiting": waiting, "not_found": not_found}


def describe_records(records: Sequence[str], limit: int = 50) -> str:
    """``"001003, 001004"``, shortened after ``limit`` ids."""
    shown = ", ".join(records[:limit])
    return shown + (f", ... and {len(records) - limit} more" if len(records) > limit else "")


def describe_waiting(waiting: Mapping[str, Sequence[str]], limit: int = 50) -> str:
    """``"001002 (sex (baseline_arm_1), data access group); 001003 (age_group (baseline_arm_1))"``."""
    items = [f"{record} ({', '.join(missing)})" for record, missing in waiting.items()]
    shown = "; ".join(items[:limit])
    return shown + (f"; ... and {len(items) - limit} more" if len(items) > limit else "")


def _has_value(value: Any) -> bool:
    return value is not None and str(value) != ""
