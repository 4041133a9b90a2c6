"""SQLite state of an emulated project: record data (EAV, like REDCap), record DAGs, allocations, log.

Every API request runs in one ``BEGIN IMMEDIATE`` transaction behind a process-wide lock, so a request
either commits entirely or leaves nothing behind, and two randomize calls can never pick the same
allocation row. WAL mode keeps committed transactions across a killed process.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_provider_redcap.emulator.project import Project

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    record TEXT PRIMARY KEY, group_id INTEGER, seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS data (
    record TEXT NOT NULL, event_id INTEGER NOT NULL, instrument TEXT NOT NULL DEFAULT '',
    instance INTEGER NOT NULL DEFAULT 1, field_name TEXT NOT NULL, value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS data_by_record ON data (record, event_id, instrument, instance, field_name);
CREATE TABLE IF NOT EXISTS allocation (
    aid INTEGER PRIMARY KEY, rid INTEGER NOT NULL, project_status INTEGER NOT NULL,
    target_field TEXT, target_field_alt TEXT, strata TEXT NOT NULL, group_id INTEGER,
    is_used_by TEXT, allocation_time TEXT, allocation_time_utc TEXT
);
CREATE INDEX IF NOT EXISTS allocation_free
    ON allocation (rid, project_status, strata, group_id, is_used_by, aid);
CREATE TABLE IF NOT EXISTS log (
    log_id INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL, ts_utc TEXT NOT NULL,
    username TEXT NOT NULL, action TEXT NOT NULL, details TEXT NOT NULL, record TEXT,
    event_id INTEGER, group_id INTEGER, logtype TEXT NOT NULL
);
"""

DataKey = tuple[int, str, int]  # (event_id, repeat instrument or '', instance)


def now_local() -> datetime:
    return datetime.now().replace(microsecond=0)


def strata_key(values: Iterable[str]) -> str:
    return json.dumps(list(values), separators=(",", ":"))


class Tx:
    """The open transaction of one request; every read and write of a request goes through it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    # --- records -------------------------------------------------------------------------------
    def record_ids(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT record FROM records ORDER BY seq")]

    def record_groups(self) -> dict[str, int | None]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT record, group_id FROM records ORDER BY seq")}

    def record_exists(self, record: str) -> bool:
        return self.conn.execute("SELECT 1 FROM records WHERE record = ?", (record,)).fetchone() is not None

    def record_group(self, record: str) -> int | None:
        row = self.conn.execute("SELECT group_id FROM records WHERE record = ?", (record,)).fetchone()
        return row[0] if row else None

    def record_event_ids(self, record: str) -> set[int]:
        rows = self.conn.execute("SELECT DISTINCT event_id FROM data WHERE record = ?", (record,))
        return {r[0] for r in rows}

    def create_record(self, record: str, group_id: int | None) -> None:
        seq = self.conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM records").fetchone()[0]
        self.conn.execute(
            "INSERT INTO records (record, group_id, seq) VALUES (?, ?, ?)", (record, group_id, seq)
        )

    def set_record_group(self, record: str, group_id: int | None) -> None:
        self.conn.execute("UPDATE records SET group_id = ? WHERE record = ?", (group_id, record))

    def delete_record(self, record: str, event_ids: Iterable[int] | None = None) -> None:
        if event_ids is None:
            self.conn.execute("DELETE FROM data WHERE record = ?", (record,))
            self.conn.execute("DELETE FROM records WHERE record = ?", (record,))
            return
        for event_id in event_ids:
            self.conn.execute("DELETE FROM data WHERE record = ? AND event_id = ?", (record, event_id))
        if not self.record_event_ids(record):
            self.conn.execute("DELETE FROM records WHERE record = ?", (record,))

    # --- data ----------------------------------------------------------------------------------
    def record_data(self, records: Iterable[str] | None = None) -> dict[str, dict[DataKey, dict[str, Any]]]:
        """Stored values by record and (event, instrument, instance); checkbox values are code lists."""
        sql = "SELECT record, event_id, instrument, instance, field_name, value FROM data"
        params: list[str] = []
        if records is not None:
            params = list(records)
            if not params:
                return {}
            sql += f" WHERE record IN ({','.join('?' * len(params))})"
        out: dict[str, dict[DataKey, dict[str, Any]]] = {}
        for record, event_id, instrument, instance, name, value in self.conn.execute(
            sql + " ORDER BY rowid", params
        ):
            row = out.setdefault(record, {}).setdefault((event_id, instrument, instance), {})
            if name in row:
                existing = row[name]
                row[name] = [*existing, value] if isinstance(existing, list) else [existing, value]
            else:
                row[name] = value
        return out

    def get_value(self, record: str, key: DataKey, name: str) -> str | None:
        row = self.conn.execute(
            "SELECT value FROM data WHERE record = ? AND event_id = ? AND instrument = ? AND instance = ?"
            " AND field_name = ?",
            (record, *key, name),
        ).fetchone()
        return row[0] if row else None

    def set_value(self, record: str, key: DataKey, name: str, value: str | None) -> None:
        self.conn.execute(
            "DELETE FROM data WHERE record = ? AND event_id = ? AND instrument = ? AND instance = ?"
            " AND field_name = ?",
            (record, *key, name),
        )
        if value not in (None, ""):
            self.conn.execute(
                "INSERT INTO data (record, event_id, instrument, instance, field_name, value)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (record, *key, name, value),
            )

    def set_checkbox(self, record: str, key: DataKey, name: str, code: str, checked: bool) -> None:
        self.conn.execute(
            "DELETE FROM data WHERE record = ? AND event_id = ? AND instrument = ? AND instance = ?"
            " AND field_name = ? AND value = ?",
            (record, *key, name, code),
        )
        if checked:
            self.conn.execute(
                "INSERT INTO data (record, event_id, instrument, instance, field_name, value)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (record, *key, name, code),
            )

    def rename_record_data(self, old: str, new: str) -> None:
        self.conn.execute("UPDATE data SET record = ? WHERE record = ?", (new, old))

    # --- allocations ---------------------------------------------------------------------------
    def allocations(self, rid: int | None = None) -> list[sqlite3.Row]:
        sql = "SELECT * FROM allocation"
        params: tuple[Any, ...] = ()
        if rid is not None:
            sql += " WHERE rid = ?"
            params = (rid,)
        return list(self.conn.execute(sql + " ORDER BY aid", params))

    def used_allocation(self, rid: int, status: int, record: str) -> sqlite3.Row | None:
        return self.conn.execute(
            "SELECT * FROM allocation WHERE rid = ? AND project_status = ? AND is_used_by = ?",
            (rid, status, record),
        ).fetchone()

    def randomized_rids(self, record: str, status: int) -> set[int]:
        rows = self.conn.execute(
            "SELECT rid FROM allocation WHERE is_used_by = ? AND project_status = ?", (record, status)
        )
        return {r[0] for r in rows}

    def take_allocation(
        self, rid: int, status: int, strata: Iterable[str], group_id: int | None, record: str
    ) -> sqlite3.Row | None:
        """Mark the lowest free matching row as used by ``record`` in one statement; ``None`` if none."""
        local, utc = now_local(), datetime.now(timezone.utc).replace(microsecond=0)
        return self.conn.execute(
            "UPDATE allocation SET is_used_by = ?, allocation_time = ?, allocation_time_utc = ?"
            " WHERE aid = (SELECT MIN(aid) FROM allocation WHERE rid = ? AND project_status = ?"
            " AND strata = ? AND group_id IS ? AND is_used_by IS NULL) RETURNING *",
            (
                record,
                local.strftime("%Y-%m-%d %H:%M:%S"),
                utc.strftime("%Y-%m-%d %H:%M:%S"),
                rid,
                status,
                strata_key(strata),
                group_id,
            ),
        ).fetchone()

    def free_allocations(self, record: str, rid: int | None = None) -> list[sqlite3.Row]:
        sql = "UPDATE allocation SET is_used_by = NULL, allocation_time = NULL, allocation_time_utc = NULL"
        sql += " WHERE is_used_by = ?"
        params: tuple[Any, ...] = (record,)
        if rid is not None:
            sql += " AND rid = ?"
            params += (rid,)
        return list(self.conn.execute(sql + " RETURNING *", params))

    # --- log -----------------------------------------------------------------------------------
    def log(
        self,
        username: str,
        action: str,
        details: str,
        *,
        record: str | None = None,
        event_id: int | None = None,
        group_id: int | None = None,
        logtype: str = "manage",
    ) -> None:
        local, utc = now_local(), datetime.now(timezone.utc).replace(microsecond=0)
        self.conn.execute(
            "INSERT INTO log (ts, ts_utc, username, action, details, record, event_id, group_id, logtype)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                local.strftime("%Y-%m-%d %H:%M:%S"),
                utc.strftime("%Y-%m-%d %H:%M:%S"),
                username,
                action,
                details,
                record,
                event_id,
                group_id,
                logtype,
            ),
        )

    def log_rows(self) -> list[sqlite3.Row]:
        return list(self.conn.execute("SELECT * FROM log ORDER BY log_id"))


class Storage:
    """The SQLite database file of one emulator.

    :param path: the database file; created when missing, reused (with its state) when present.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=30.0
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One request's transaction: committed when the block ends, rolled back on any exception."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def initialized_for(self, project: Project) -> bool:
        return (
            self.get_meta("schema") == SCHEMA_VERSION
            and self.get_meta("project_id") == str(project.project_id)
            and self.get_meta("fingerprint") == project.fingerprint
        )

    def wipe(self, tx: Tx, project: Project) -> None:
        """Empty every table and load the project's allocation tables in upload order."""
        for table in ("records", "data", "allocation", "log", "meta"):
            tx.conn.execute(f"DELETE FROM {table}")
        tx.conn.execute("DELETE FROM sqlite_sequence WHERE name = 'log'")
        aid = 0
        for model in project.randomizations:
            for row in model.allocations:
                aid += 1
                tx.conn.execute(
                    "INSERT INTO allocation (aid, rid, project_status, target_field, target_field_alt,"
                    " strata, group_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        aid,
                        model.rid,
                        row.project_status,
                        row.target_field,
                        row.target_field_alt,
                        strata_key(row.strata),
                        row.group_id,
                    ),
                )
        tx.conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [
                ("schema", SCHEMA_VERSION),
                ("project_id", str(project.project_id)),
                ("project_status", str(project.status)),
                ("fingerprint", project.fingerprint),
            ],
        )
