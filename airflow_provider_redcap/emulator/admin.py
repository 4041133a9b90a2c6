"""The emulator's admin surface: Python calls and HTTP routes under ``/_emulator/``.

None of this exists in REDCap's API. It lets tests read the allocation table with who used what, reset
the state, inject faults and perform REDCap's admin-only "Remove Randomization".
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from airflow_provider_redcap.emulator.faults import Fault
from airflow_provider_redcap.emulator.records import all_columns, flat_rows, visible_records

if TYPE_CHECKING:
    from airflow_provider_redcap.emulator.server import RedcapEmulator


class Admin:
    """Admin handle of one :class:`RedcapEmulator`."""

    def __init__(self, emulator: RedcapEmulator) -> None:
        self._emu = emulator

    def allocations(self, randomization_id: int | None = None) -> list[dict[str, Any]]:
        """One dict per allocation row, in upload (``aid``) order."""
        project = self._emu.project
        out = []
        with self._emu.storage.transaction() as tx:
            rows = tx.allocations(randomization_id)
        for row in rows:
            model = project.randomization(row["rid"])
            names = [f for f, _ in model.strata] if model else []
            out.append(
                {
                    "aid": row["aid"],
                    "randomization_id": row["rid"],
                    "project_status": row["project_status"],
                    "target_field": row["target_field"],
                    "target_field_alt": row["target_field_alt"],
                    "strata": dict(zip(names, json.loads(row["strata"]), strict=False)),
                    "group_id": row["group_id"],
                    "is_used_by": row["is_used_by"],
                    "allocation_time": row["allocation_time"],
                }
            )
        return out

    def records(self, fields: list[str] | None = None) -> list[dict[str, Any]]:
        """Flat rows of all stored data, as an export by a user with every right and no DAG."""
        project = self._emu.project
        columns = all_columns(project)
        if fields:
            columns = [c for c in columns if c.name in fields or c.name == project.pk]
        with self._emu.storage.transaction() as tx:
            _, rows = flat_rows(
                project, tx, visible_records(tx, None), columns, export_dag=bool(project.dags)
            )
        return rows

    def log(self) -> list[dict[str, Any]]:
        with self._emu.storage.transaction() as tx:
            return [dict(r) for r in tx.log_rows()]

    def reset(self) -> None:
        """Back to the project folder's initial state (data, allocations, log, faults, bans)."""
        self._emu.reset()

    def set_project_status(self, status: int) -> None:
        """Move the project to development (0), production (1) or analysis/cleanup (2)."""
        if status not in (0, 1, 2):
            raise ValueError("status must be 0, 1 or 2")
        with self._emu.storage.transaction() as tx:
            tx.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('project_status', ?)", (str(status),)
            )

    def remove_randomization(self, randomization_id: int, record: str) -> None:
        """REDCap's admin-only action: free the record's row and erase its target value."""
        project = self._emu.project
        model = project.randomization(int(randomization_id))
        if model is None:
            raise ValueError(f"unknown randomization_id {randomization_id}")
        with self._emu.storage.transaction() as tx:
            freed = tx.free_allocations(record, model.rid)
            if not freed:
                raise ValueError(f"record {record!r} is not randomized in {randomization_id}")
            data = tx.record_data([record]).get(record, {})
            for key in data:
                if key[0] == model.target_event_id:
                    tx.set_value(record, key, model.target_field, None)
            tx.log(
                "[admin]",
                "Remove randomization",
                f"{project.pk} = '{record}'\nrandomization_id = {model.rid}",
                record=record,
                logtype="manage",
            )

    def add_fault(self, fault: Fault) -> None:
        self._emu.faults.add(fault)

    def clear_faults(self) -> None:
        self._emu.faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        return [f.to_dict() for f in self._emu.faults.active()]
