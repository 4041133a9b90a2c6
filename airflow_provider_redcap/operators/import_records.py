"""Import records into REDCap from XCom data or a CSV/JSON file, validated before anything is sent."""

from __future__ import annotations

import ast
import csv
import io
import json
import logging
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.exceptions import AirflowException
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_redcap.exceptions import (
    RedcapError,
    RedcapImportError,
    RedcapImportValidationError,
    RedcapValidationError,
)
from airflow_provider_redcap.hooks.redcap import RedcapHook
from airflow_provider_redcap.validation import ImportSchema, normalize_rows, validate_records

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

#: XCom key of the ``{supplied id: new id}`` mapping pushed with ``force_auto_number``.
AUTO_IDS_XCOM_KEY = "auto_ids"


class RedcapImportRecordsOperator(BaseOperator):
    """Import flat records into a REDCap project.

    The rows come from ``records`` (e.g. an upstream task's XCom) or from a CSV/JSON file at ``path``.
    Before anything is sent, every row is checked against the project's metadata and all problems are
    reported together (see :mod:`airflow_provider_redcap.validation`). Rows are then sent in batches of
    ``batch_size`` records; all rows of one record always travel in the same batch.

    CSV files are read with every column as text, so record ids such as ``001017`` keep their zeros.

    :param records: flat rows (``field -> value``); mutually exclusive with ``path``.
    :param path: a ``.csv`` or ``.json`` file (a JSON list of objects).
    :param file_format: ``"csv"`` or ``"json"``; by default taken from the file name's extension.
    :param encoding: text encoding of ``path``; the default ``utf-8-sig`` reads UTF-8 with or without BOM.
    :param overwrite: blank values erase stored values (REDCap's ``overwriteBehavior=overwrite``).
        Without it blanks are ignored.
    :param force_auto_number: let REDCap assign new record ids; the supplied ids only group rows.
    :param date_format: how dates are written in the rows: ``YMD``, ``MDY`` or ``DMY``.
    :param batch_size: records per request.
    :param validate: check the rows against the project's metadata before sending.
    :param map_labels: accept choice labels (``"Female"``) and replace them by their codes (``"0"``).
    :param redcap_conn_id: the REDCap connection.
    :return: the record ids imported, in order (REDCap's new ids with ``force_auto_number``). With
        ``force_auto_number`` the ``{supplied id: new id}`` mapping is also pushed to XCom under the
        key ``auto_ids``.
    """

    template_fields: Sequence[str] = ("records", "path", "redcap_conn_id")
    template_fields_renderers = {"records": "json"}
    ui_color = "#c9e4f5"

    def __init__(
        self,
        *,
        records: list[dict[str, Any]] | str | None = None,
        path: str | None = None,
        file_format: str | None = None,
        encoding: str = "utf-8-sig",
        overwrite: bool = False,
        force_auto_number: bool = False,
        date_format: str = "YMD",
        batch_size: int = 100,
        validate: bool = True,
        map_labels: bool = False,
        redcap_conn_id: str = RedcapHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (records is None) == (path is None):
            raise ValueError("give exactly one of records= or path=")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if date_format.upper() not in ("YMD", "MDY", "DMY"):
            raise ValueError(f"date_format must be YMD, MDY or DMY, not {date_format!r}")
        self.records = records
        self.path = path
        self.file_format = file_format
        self.encoding = encoding
        self.overwrite = overwrite
        self.force_auto_number = force_auto_number
        self.date_format = date_format
        self.batch_size = batch_size
        self.validate = validate
        self.map_labels = map_labels
        self.redcap_conn_id = redcap_conn_id

    @cached_property
    def hook(self) -> RedcapHook:
        return RedcapHook(redcap_conn_id=self.redcap_conn_id)

    def execute(self, context: Context) -> list[str]:
        try:
            rows = normalize_rows(self._load_rows())
        except (ValueError, OSError) as err:
            raise AirflowFailException(str(err)) from err
        if not rows:
            self.log.info("No rows to import.")
            return []
        date_format = self.date_format.upper()
        if self.validate:
            schema = ImportSchema.from_hook(self.hook, check_dags=_has_dag_values(rows))
            try:
                rows = validate_records(rows, schema, date_format=date_format, map_labels=self.map_labels)
            except RedcapImportValidationError as err:
                for problem in err.problems:
                    self.log.error("Import problem: %s", problem)
                raise AirflowFailException(err.message) from err
            self.log.info("%d row(s) passed validation against the project's metadata.", len(rows))
            record_id_field: str | None = schema.record_id_field
        else:
            record_id_field = None
        try:
            result = self.hook.import_records(
                rows,
                overwrite=self.overwrite,
                force_auto_number=self.force_auto_number,
                date_format=date_format,
                batch_size=self.batch_size,
                record_id_field=record_id_field,
            )
        except RedcapError as err:
            _fail_import(err, auto_numbered=self.force_auto_number)
        imported = list(result.record_ids)
        auto_ids = dict(result.auto_ids)
        self.log.info("Imported %d record(s) from %d row(s).", len(imported), len(rows))
        if self.force_auto_number:
            ti = context.get("ti")
            if ti is not None:
                ti.xcom_push(key=AUTO_IDS_XCOM_KEY, value=auto_ids)
            self.log.info("REDCap assigned new record ids: %s", auto_ids)
        return imported

    def _load_rows(self) -> list[Any]:
        if self.path is not None:
            return read_records_file(self.path, file_format=self.file_format, encoding=self.encoding)
        records = self.records
        if isinstance(records, str):
            records = _parse_rendered(records)
        if not isinstance(records, Sequence) or isinstance(records, (str, bytes)):
            raise ValueError(f"records must be a list of dicts, not {type(records).__name__}")
        return list(records)


def read_records_file(
    path: str | Path, *, file_format: str | None = None, encoding: str = "utf-8-sig"
) -> list[Any]:
    """Read import rows from a CSV (every value as text) or a JSON file (a list of objects).

    :raises ValueError: naming the file and, for undecodable bytes, the byte offset and line.
    """
    path = Path(path)
    fmt = (file_format or path.suffix.lstrip(".")).lower()
    if fmt not in ("csv", "json"):
        raise ValueError(f"{path}: cannot tell the format; name it .csv or .json, or set file_format")
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ValueError(
            f"{path}: cannot decode byte 0x{data[err.start]:02x} at byte offset {err.start} (line {line}) "
            f"as {encoding}; set encoding= to the file's encoding"
        ) from None
    if fmt == "json":
        try:
            # Numbers stay as written (no 1.50 -> 1.5), like CSV values.
            rows = json.loads(text, parse_float=str, parse_int=str)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON: {err}") from None
        if not isinstance(rows, list):
            raise ValueError(f"{path}: the JSON must be a list of objects, as in [{{...}}]")
        return rows
    return _read_csv(text, path)


def _read_csv(text: str, path: Path) -> list[dict[str, str]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        return []
    header = [h.strip() for h in header]
    if len(header) == 1 and (delimiter := next((d for d in (";", "\t") if d in header[0]), None)):
        kind = "tab" if delimiter == "\t" else "';'"
        raise ValueError(
            f"{path}: the header is a single column, {header[0][:80]!r}: the file seems to be "
            f"{kind}-delimited; CSV with commas is expected (save it again as comma-separated CSV)"
        )
    duplicates = sorted({h for h in header if h and header.count(h) > 1})
    if duplicates:
        raise ValueError(f"{path}: duplicate column(s) in the header: {', '.join(duplicates)}")
    unnamed = [i for i, h in enumerate(header) if not h]
    rows: list[dict[str, str]] = []
    filled: set[int] = set()
    for values in reader:
        if not values or (len(values) == 1 and not values[0]):
            continue  # blank line
        if len(values) != len(header):
            raise ValueError(
                f"{path}: line {reader.line_num} has {len(values)} value(s) but the header has {len(header)}"
            )
        filled.update(i for i in unnamed if values[i].strip())
        rows.append(dict(zip(header, values, strict=True)))
    if filled:
        positions = ", ".join(str(i + 1) for i in sorted(filled))
        which = f"columns {positions} have" if len(filled) > 1 else f"column {positions} has"
        raise ValueError(
            f"{path}: {which} an empty header cell but hold(s) values; name the column(s) in the header "
            "or delete them"
        )
    if unnamed:
        # Spreadsheets save formatted but empty columns as trailing ",,": nothing to import there.
        log.info("%s: dropped %d empty column(s) with an empty header cell.", path, len(unnamed))
        for row in rows:
            row.pop("", None)
    return rows


def _fail_import(err: RedcapError, *, auto_numbered: bool) -> NoReturn:
    """Raise a task failure naming what is saved and what is not.

    Only a transient failure of a plain import is left to Airflow's retries: re-sending saved batches
    writes the same values again. An auto-numbered import is never re-sent, since every send creates
    new records.
    """
    if isinstance(err, RedcapImportError):
        message = (
            f"REDCap import stopped: {_sentence(err.message)}\nSaved {len(err.imported_records)} record(s): "
            f"{_ids(err.imported_records)}. Not saved: {_ids(err.pending_records)}."
        )
        cause = err.__cause__
    else:
        message, cause = f"REDCap import failed; nothing was saved: {err}", err
    if auto_numbered:
        raise AirflowFailException(
            f"{message} The import was auto-numbered, so it is not retried: check REDCap for the records "
            "of the failing batch before importing the rest."
        ) from err
    if getattr(cause, "retryable", False) and not isinstance(cause, RedcapValidationError):
        raise AirflowException(message) from err
    raise AirflowFailException(message) from err


def _sentence(text: str) -> str:
    """``text`` ending in a full stop: REDCap's messages often have none."""
    text = text.rstrip()
    return text if text.endswith((".", "!", "?", ":")) else text + "."


def _parse_rendered(text: str) -> Any:
    """A list rendered to text by Jinja (JSON, or a Python literal)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError("records is text that is neither JSON nor a Python list literal") from None


def _has_dag_values(rows: list[dict[str, str]]) -> bool:
    return any(row.get("redcap_data_access_group") for row in rows)


def _ids(ids: Sequence[str], limit: int = 50) -> str:
    if not ids:
        return "(none)"
    shown = ", ".join(ids[:limit])
    return shown + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")
