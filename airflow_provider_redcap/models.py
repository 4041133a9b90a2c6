"""Plain value objects shared by the hook, operators, sensor and trigger.

All of them convert to and from JSON-serialisable dicts, because they travel through XCom and
trigger kwargs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class StratumField:
    """One stratification field of a randomization model.

    :param field: the variable name.
    :param event: its unique event name in longitudinal projects; ``None`` in classic projects.
    """

    field: str
    event: str | None = None

    def __str__(self) -> str:
        return f"{self.field} ({self.event})" if self.event else self.field


@dataclass(frozen=True)
class RandomizationModel:
    """A randomization model as REDCap describes it in the project XML.

    REDCap strips the ``randomization_id`` from the project XML, so a model is known by its
    position (1-based, in randomization-id order) and by its target field and event.

    :param position: 1-based order of the model in the project.
    :param target_field: the field that receives the allocation.
    :param target_event: unique event name of the target (longitudinal projects), else ``None``.
    :param strata: stratification fields, in the model's order.
    :param group_by_dag: whether the record's data access group is an extra stratum.
    """

    position: int
    target_field: str
    target_event: str | None = None
    strata: tuple[StratumField, ...] = ()
    group_by_dag: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "target_field": self.target_field,
            "target_event": self.target_event,
            "strata": [{"field": s.field, "event": s.event} for s in self.strata],
            "group_by_dag": self.group_by_dag,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RandomizationModel:
        return cls(
            position=int(data.get("position", 1)),
            target_field=str(data["target_field"]),
            target_event=data.get("target_event") or None,
            strata=tuple(
                StratumField(str(s["field"]), s.get("event") or None) for s in data.get("strata", ())
            ),
            group_by_dag=bool(data.get("group_by_dag", False)),
        )


@dataclass(frozen=True)
class RandomizationResult:
    """What REDCap answered to one successful Randomize Record call.

    :param randomization_id: the model the record was randomized in.
    :param record: the record id.
    :param target_field: name of the field that received the allocation.
    :param value: the value REDCap saved in the target field: the group code for open models, the
        randomization number for concealed (blinded) models.
    :param alternate_value: REDCap's ``target_field_alt``: the randomization number for open models
        (``None`` when none was uploaded or ``return_alt`` was off), ``"*"`` for concealed models.
    :param concealed: whether the model is blinded (REDCap answered ``"*"`` as the alternate).
    """

    randomization_id: int
    record: str
    target_field: str
    value: str
    alternate_value: str | None = None
    concealed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ImportResult:
    """Outcome of :meth:`RedcapHook.import_records`.

    :param record_ids: ids of the records saved, in the order they were sent (new ids when
        auto-numbering).
    :param auto_ids: with ``force_auto_number``, supplied id -> new id REDCap assigned.
    """

    record_ids: tuple[str, ...]
    auto_ids: dict[str, str] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.record_ids)
