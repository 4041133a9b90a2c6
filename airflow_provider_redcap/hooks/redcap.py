"""RedcapHook: a safe, synchronous client for the REDCap API.

.. seealso:: README section "Using the hook".
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar

import requests
import tenacity
from airflow.sdk import BaseHook
from requests.exceptions import ConnectTimeout, RequestException, SSLError
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

from airflow_provider_redcap import __version__
from airflow_provider_redcap.exceptions import (
    RedcapConnectionError,
    RedcapError,
    RedcapImportError,
    RedcapInvalidRandomizationIdError,
    RedcapMissingRecordsError,
    RedcapPermissionError,
    RedcapRandomizationUnsupportedError,
    RedcapRecordNotFoundError,
    RedcapRequestError,
    RedcapResponseError,
    RedcapServerError,
    RedcapValidationError,
)
from airflow_provider_redcap.exceptions import RedcapFieldError as _FieldError
from airflow_provider_redcap.hooks._connection import (
    RedcapSettings,
    api_url_warning,
    settings_from_connection,
    unknown_extras,
)
from airflow_provider_redcap.hooks._params import DEFAULT_EXPORT_BATCH, build_form, encode_value
from airflow_provider_redcap.hooks._project_xml import parse_randomization_models
from airflow_provider_redcap.hooks._responses import (
    MIN_RANDOMIZE_VERSION,
    RawResponse,
    classify_response,
    excerpt,
    expect_dict,
    expect_list,
    parse_import_ids,
    parse_json,
    parse_randomize_response,
    parse_text,
    parse_version,
    should_retry,
    tls_hint,
)
from airflow_provider_redcap.hooks._throttle import Throttle
from airflow_provider_redcap.models import ImportResult, RandomizationModel, RandomizationResult

T = TypeVar("T")
RetryMode = Literal["safe", "connect_only"]

DATE_FORMATS = ("YMD", "MDY", "DMY")
_LOG_FILTER_NAMES = {"begin_time": "beginTime", "end_time": "endTime", "log_type": "logtype"}
#: Prefix of the record ids :meth:`RedcapHook.check_randomization_id` randomizes; no real record has one.
PROBE_RECORD_PREFIX = "__airflow_provider_redcap_probe_"
#: REDCap's 403 for a token without API Import rights (``API/index.php``).
NO_IMPORT_PRIVILEGE = "You do not have API Import/Update privileges"


def _may_have_reached_server(exc: RequestException) -> bool:
    """``False`` only for failures that happen before a byte of the request is sent."""
    if isinstance(exc, ConnectTimeout):
        return False
    if isinstance(exc, requests.exceptions.ConnectionError) and exc.args:
        reason = exc.args[0]
        if isinstance(reason, MaxRetryError):
            reason = reason.reason
        if isinstance(reason, NewConnectionError | ConnectTimeoutError):
            return False
    return True


def _decode(response: requests.Response) -> str:
    # Without a declared charset requests would guess (slow, and wrong for UTF-8 CSV); REDCap is UTF-8.
    if "charset=" in response.headers.get("Content-Type", "").lower():
        return response.text
    return response.content.decode("utf-8", errors="replace")


def _dedupe(values: Iterable[Any]) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        seen.setdefault(str(value), None)
    return list(seen)


def _import_value(value: Any) -> str:
    # yesno/truefalse/checkbox fields take "1"/"0"; None is a blank cell.
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return encode_value(value)


class RedcapHook(BaseHook):
    """Talk to one REDCap project through its API token.

    The connection's ``host`` is the full API URL and its ``password`` the project's API token.
    Construction does no I/O; the connection is read on first use.

    :param redcap_conn_id: Airflow connection id (type ``redcap``).
    :param timeout: seconds per request; overrides the connection's ``timeout`` extra.
    :param max_retries: retries after transient failures; overrides the ``max_retries`` extra.
    :param requests_per_minute: client-side throttle; overrides the ``requests_per_minute`` extra.
    :param retry_wait: base of the exponential back-off in seconds; overrides the ``retry_wait`` extra.
    """

    conn_name_attr = "redcap_conn_id"
    default_conn_name = "redcap_default"
    conn_type = "redcap"
    hook_name = "REDCap"

    def __init__(
        self,
        redcap_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        requests_per_minute: int | None = None,
        retry_wait: float | None = None,
    ) -> None:
        super().__init__()
        self.redcap_conn_id = redcap_conn_id
        self._overrides: dict[str, Any] = {
            "timeout": timeout,
            "max_retries": max_retries,
            "requests_per_minute": requests_per_minute,
            "retry_wait": retry_wait,
        }
        self._settings: RedcapSettings | None = None
        self._session: requests.Session | None = None
        self._throttle: Throttle | None = None
        self._version: str | None = None
        self._randomize_supported = False
        self._project_info: dict[str, Any] | None = None
        self._record_id_field: str | None = None
        #: Requested record ids that the last export did not return (see :meth:`iter_records`).
        self.last_missing_records: list[str] = []
        self._sleep: Callable[[float], None] = tenacity.nap.sleep

    def __repr__(self) -> str:
        url = self._settings.url if self._settings else "<not loaded>"
        return f"<{type(self).__name__} redcap_conn_id={self.redcap_conn_id!r} url={url!r}>"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Connection form for Airflow 3.1 (3.2+ reads the same from provider info)."""
        return {
            "hidden_fields": ["login", "port", "schema"],
            "relabeling": {"host": "REDCap API URL", "password": "API Token"},
            "placeholders": {
                "host": "https://redcap.example.org/api/",
                "password": "32-character REDCap API token",
            },
        }

    # -- connection -------------------------------------------------------------------------------

    @property
    def settings(self) -> RedcapSettings:
        """Validated settings from the Airflow connection (read once; the token is masked)."""
        if self._settings is None:
            conn = self.get_connection(self.redcap_conn_id)
            settings = settings_from_connection(conn, **self._overrides)
            ignored = unknown_extras(conn.extra_dejson)
            if ignored:
                self.log.warning("Connection %s: ignoring unknown extras %s", self.redcap_conn_id, ignored)
            if warning := api_url_warning(settings.url):
                self.log.warning("Connection %s: %s", self.redcap_conn_id, warning)
            self._settings = settings
        return self._settings

    def get_conn(self) -> requests.Session:
        """The hook's cached ``requests.Session``."""
        if self._session is None:
            settings = self.settings
            session = requests.Session()
            session.headers["User-Agent"] = (
                f"airflow-provider-redcap/{__version__} {requests.utils.default_user_agent()}"
            )
            session.headers["Accept"] = "application/json, text/csv, text/xml, text/plain;q=0.9, */*;q=0.1"
            self._throttle = Throttle(settings.requests_per_minute)
            self._session = session
        return self._session

    def close(self) -> None:
        """Close the session's pooled connections."""
        if self._session is not None:
            self._session.close()
            self._session = None

    @property
    def _verify(self) -> bool | str:
        verify = self.settings.verify
        # requests replaces verify=True with $REQUESTS_CA_BUNDLE; pin certifi's bundle so a worker-wide
        # variable cannot silently override the connection's choice.
        return requests.utils.DEFAULT_CA_BUNDLE_PATH if verify is True else verify

    # -- transport --------------------------------------------------------------------------------

    def _send(self, form: Mapping[str, str], *, what: str) -> RawResponse:
        settings = self.settings
        session = self.get_conn()
        assert self._throttle is not None
        waited = self._throttle.acquire()
        if waited:
            self.log.info(
                "Throttled for %.2f s to stay under %d requests a minute",
                waited,
                settings.requests_per_minute,
            )
        self.log.debug("POST %s (%s)", settings.url, what)
        try:
            response = session.post(
                settings.url,
                data=form,
                timeout=settings.timeout,
                verify=self._verify,
                proxies=dict(settings.proxies or {}),
                allow_redirects=False,
            )
            text = _decode(response)
        except SSLError as exc:
            raise RedcapConnectionError(
                f"TLS failure talking to REDCap at {settings.url} ({what}): {self._redact(exc)}. "
                + tls_hint(str(exc)),
                may_have_reached_server=False,
            ) from exc
        except RequestException as exc:
            reached = _may_have_reached_server(exc)
            qualifier = "the request may have reached the server" if reached else "nothing was sent"
            raise RedcapConnectionError(
                f"No complete response from REDCap at {settings.url} ({what}; {qualifier}): "
                f"{type(exc).__name__}: {self._redact(exc)}",
                may_have_reached_server=reached,
            ) from exc
        return RawResponse(
            status_code=response.status_code,
            text=text,
            content_type=response.headers.get("Content-Type", ""),
            location=response.headers.get("Location"),
        )

    def _redact(self, value: object) -> str:
        text = str(value)
        token = self._settings.token if self._settings else None
        return text.replace(token, "***") if token else text

    def _execute(
        self,
        form: Mapping[str, str],
        *,
        content: str,
        action: str | None,
        parse: Callable[[RawResponse], T],
        mode: RetryMode,
    ) -> T:
        """Send once, classify, and retry transient failures as ``mode`` allows.

        ``safe``: connection errors, timeouts and 408/500/502/503/504. ``connect_only``: only failures
        that happened before the request was sent (for calls that are not safe to repeat).
        """
        settings = self.settings
        what = f"content={content}" + (f", action={action}" if action else "")

        def retryable(exc: BaseException) -> bool:
            # A certificate problem does not go away by trying again.
            if isinstance(exc, RedcapConnectionError) and isinstance(exc.__cause__, SSLError):
                return False
            return should_retry(exc, idempotent=mode == "safe")

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            self.log.warning(
                "REDCap request (%s) failed, attempt %d of %d: %s; retrying in %.2f s",
                what,
                state.attempt_number,
                settings.max_retries + 1,
                exc,
                wait,
            )

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(settings.max_retries + 1),
            wait=tenacity.wait_exponential_jitter(
                initial=settings.retry_wait,
                max=max(settings.retry_wait * 30, 0.0),
                jitter=settings.retry_wait,
            ),
            retry=tenacity.retry_if_exception(retryable),
            before_sleep=before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                return parse(self._send(form, what=what))
        raise AssertionError("unreachable")  # pragma: no cover

    def _form(
        self, content: str, *, action: str | None = None, format: str = "json", **params: Any
    ) -> dict[str, str]:
        return build_form(self.settings.token, content, action=action, format=format, params=params)

    def request(
        self,
        content: str,
        *,
        action: str | None = None,
        format: str = "json",
        retry: bool = True,
        **params: Any,
    ) -> Any:
        """One API call, classified: parsed JSON for ``format="json"``, else the body text.

        :param content: REDCap's ``content`` parameter.
        :param action: REDCap's ``action`` parameter, if any.
        :param format: ``json`` (default), ``csv``, ``xml`` or ``odm``.
        :param retry: ``False`` for calls that are not safe to repeat: then only failures before the
            request was sent are retried. Randomize and auto-numbered imports are never repeated.
        :param params: further parameters in REDCap's spelling; lists become ``x[0]``-style arrays.
        """
        form = self._form(content, action=action, format=format, **params)
        label = action or ("import" if content == "record" and "data" in params else None)
        # A repeat could allocate a second time or create the records twice, whatever the caller asked.
        auto_numbered = form.get("forceAutoNumber", "").lower() in ("true", "1")
        unsafe = content == "record" and (action == "randomize" or (label == "import" and auto_numbered))
        return self._execute(
            form,
            content=content,
            action=label,
            parse=lambda r: classify_response(r, content=content, action=label, format=format),
            mode="safe" if retry and not unsafe else "connect_only",
        )

    def _json_list(self, content: str, **params: Any) -> list[dict[str, Any]]:
        return expect_list(self.request(content, **params), content=content)

    # -- project structure ------------------------------------------------------------------------

    def get_version(self) -> str:
        """The server's REDCap version, e.g. ``"15.7.6"`` (REDCap answers plain text)."""
        form = self._form("version")
        text = self._execute(
            form,
            content="version",
            action=None,
            parse=lambda r: parse_text(r, content="version"),
            mode="safe",
        ).strip()
        parse_version(text)
        self._version = text
        return text

    def get_project_info(self) -> dict[str, Any]:
        """Export Project Info (``project_id``, ``project_title``, ``is_longitudinal``...)."""
        info = expect_dict(self.request("project"), content="project")
        self._project_info = info
        return info

    def is_longitudinal(self) -> bool:
        """Whether the project has events (from project info, cached)."""
        info = self._project_info if self._project_info is not None else self.get_project_info()
        return str(info.get("is_longitudinal", "0")).strip() in ("1", "true", "True")

    def get_metadata(
        self, fields: Sequence[str] | None = None, forms: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """The data dictionary, one dict per field."""
        return self._json_list("metadata", fields=fields, forms=forms)

    def get_record_id_field(self) -> str:
        """The project's record id field (the first field of the data dictionary; cached)."""
        if self._record_id_field is None:
            metadata = self.get_metadata()
            if not metadata or not metadata[0].get("field_name"):
                raise RedcapResponseError(
                    "REDCap's metadata answer is empty; the record id field is unknown."
                )
            self._record_id_field = str(metadata[0]["field_name"])
        return self._record_id_field

    def get_field_names(self, field: str | None = None) -> list[dict[str, Any]]:
        """Export field names (``original_field_name``, ``choice_value``, ``export_field_name``)."""
        return self._json_list("exportFieldNames", field=field)

    def get_events(self, arms: Sequence[int | str] | None = None) -> list[dict[str, Any]]:
        """Events; raises :class:`RedcapRequestError` (HTTP 400) for classic projects."""
        return self._json_list("event", arms=arms)

    def get_arms(self, arms: Sequence[int | str] | None = None) -> list[dict[str, Any]]:
        """Arms; raises :class:`RedcapRequestError` (HTTP 400) for classic projects."""
        return self._json_list("arm", arms=arms)

    def get_form_event_mapping(self, arms: Sequence[int | str] | None = None) -> list[dict[str, Any]]:
        """Instrument-event mappings; raises :class:`RedcapRequestError` for classic projects."""
        return self._json_list("formEventMapping", arms=arms)

    def get_repeating_forms_events(self) -> list[dict[str, Any]]:
        """Repeating instruments and events."""
        return self._json_list("repeatingFormsEvents")

    def get_dags(self) -> list[dict[str, Any]]:
        """Data access groups: ``data_access_group_name``, ``unique_group_name``, ``data_access_group_id``."""
        return self._json_list("dag")

    def get_project_xml(self, *, metadata_only: bool = True) -> str:
        """The project XML (CDISC ODM). ``metadata_only=False`` also exports every record."""
        form = self._form("project_xml", format="xml", returnMetadataOnly=metadata_only)

        def parse(response: RawResponse) -> str:
            text = parse_text(response, content="project_xml")
            if not text.lstrip().startswith("<"):
                raise RedcapResponseError(f"REDCap's project XML is not XML. Excerpt: {excerpt(text)!r}")
            return text

        return self._execute(form, content="project_xml", action=None, parse=parse, mode="safe")

    def get_randomization_models(self) -> list[RandomizationModel]:
        """Randomization models from the project XML, in model order (``position`` 1, 2, ...).

        REDCap leaves the ``randomization_id`` out of the XML; the caller must know it.
        """
        return parse_randomization_models(self.get_project_xml())

    # -- records ----------------------------------------------------------------------------------

    def export_records(
        self,
        records: Sequence[str] | None = None,
        fields: Sequence[str] | None = None,
        forms: Sequence[str] | None = None,
        events: Sequence[str] | None = None,
        filter_logic: str | None = None,
        raw_or_label: str = "raw",
        export_data_access_groups: bool = False,
        batch_size: int | None = None,
        *,
        on_missing: Literal["warn", "raise", "ignore"] = "warn",
    ) -> list[dict[str, Any]]:
        """Export flat records as a list of dicts. Parameters as in :meth:`iter_records`."""
        return list(
            self.iter_records(
                records=records,
                fields=fields,
                forms=forms,
                events=events,
                filter_logic=filter_logic,
                raw_or_label=raw_or_label,
                export_data_access_groups=export_data_access_groups,
                batch_size=batch_size,
                on_missing=on_missing,
            )
        )

    def iter_records(
        self,
        records: Sequence[str] | None = None,
        fields: Sequence[str] | None = None,
        forms: Sequence[str] | None = None,
        events: Sequence[str] | None = None,
        filter_logic: str | None = None,
        raw_or_label: str = "raw",
        export_data_access_groups: bool = False,
        batch_size: int | None = None,
        *,
        on_missing: Literal["warn", "raise", "ignore"] = "warn",
    ) -> Iterator[dict[str, Any]]:
        """Export flat records, batch by batch (all rows of a record are in the same batch).

        With ``batch_size`` and no ``records``, the record ids are exported first (honouring
        ``events`` and ``filter_logic``). Requested ``records`` that do not come back (checked when
        there is no ``filter_logic``, which legitimately drops records) are reported: ``on_missing=
        "warn"`` logs a warning naming them and keeps them in :attr:`last_missing_records`;
        ``"raise"`` raises :class:`RedcapMissingRecordsError`; ``"ignore"`` only keeps them (for
        callers that report them themselves). To check this the record id field is
        added to ``fields`` when ``fields`` or ``forms`` are given.

        :param records: record ids; ``None`` for all.
        :param fields: field names; ``None`` for all.
        :param forms: instrument names.
        :param events: unique event names (longitudinal projects).
        :param filter_logic: REDCap logic, e.g. ``[age] > 30``.
        :param raw_or_label: ``raw`` codes or ``label`` text.
        :param export_data_access_groups: add ``redcap_data_access_group`` (ignored by REDCap when the
            token's user is in a DAG).
        :param batch_size: records per request; requested lists longer than 500 are always batched.
        """
        if raw_or_label not in ("raw", "label"):
            raise ValueError("raw_or_label must be 'raw' or 'label'")
        if batch_size is not None and batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.last_missing_records = []
        base: dict[str, Any] = {
            "type": "flat",
            "rawOrLabel": raw_or_label,
            "forms": forms,
            "events": events,
            "filterLogic": filter_logic or None,
            "exportDataAccessGroups": export_data_access_groups,
        }
        if records is None and batch_size is None:
            yield from self._export_batch({**base, "fields": fields})
            return
        if records is not None:
            ids = _dedupe(records)
            if not ids:
                return
        else:
            ids = self._export_record_ids(events=events, filter_logic=filter_logic)
        check = records is not None and not filter_logic
        fields_sent = list(fields) if fields is not None else None
        pk: str | None = None
        if check:
            pk = self.get_record_id_field()
            if (fields_sent is not None or forms) and pk not in (fields_sent or []):
                fields_sent = [pk, *(fields_sent or [])]
        size = batch_size or DEFAULT_EXPORT_BATCH
        for start in range(0, len(ids), size):
            batch = ids[start : start + size]
            rows = self._export_batch({**base, "fields": fields_sent, "records": batch})
            if check and pk is not None:
                returned = {str(row.get(pk)) for row in rows}
                missing = [record for record in batch if record not in returned]
                if missing:
                    self._report_missing(missing, on_missing)
            yield from rows

    def _report_missing(self, missing: list[str], on_missing: str) -> None:
        self.last_missing_records.extend(missing)
        message = (
            f"{len(missing)} requested record(s) did not come back from REDCap (they do not exist, are "
            f"outside the token user's DAG, or have no data in the requested events): {missing}"
        )
        if on_missing == "raise":
            raise RedcapMissingRecordsError(message, records=missing)
        if on_missing == "warn":
            self.log.warning("%s", message)

    def _export_batch(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        rows = self._json_list("record", **params)
        if any(not isinstance(row, dict) for row in rows):
            raise RedcapResponseError("REDCap's record export holds items that are not records.")
        return rows

    def _export_record_ids(self, *, events: Sequence[str] | None, filter_logic: str | None) -> list[str]:
        pk = self.get_record_id_field()
        rows = self._export_batch(
            {"type": "flat", "fields": [pk], "events": events, "filterLogic": filter_logic or None}
        )
        return _dedupe(row[pk] for row in rows if row.get(pk) not in (None, ""))

    def import_records(
        self,
        rows: Iterable[Mapping[str, Any]],
        *,
        overwrite: bool = False,
        force_auto_number: bool = False,
        date_format: str = "YMD",
        batch_size: int = 100,
        record_id_field: str | None = None,
    ) -> ImportResult:
        """Import flat rows in batches of whole records (all rows of one record travel together).

        A batch REDCap refuses saves nothing; earlier batches stay saved. On failure
        :class:`RedcapImportError` names the records saved and those not saved, chained from the
        underlying error (e.g. :class:`RedcapValidationError` with the parsed field errors).
        Auto-numbered imports are never retried once a request may have reached the server.

        :param rows: flat rows keyed by field name; values are sent as strings (``None`` -> blank).
        :param overwrite: ``overwriteBehavior=overwrite`` (blanks erase stored values).
        :param force_auto_number: let REDCap assign new record ids; see ``ImportResult.auto_ids``.
        :param date_format: ``YMD``, ``MDY`` or ``DMY``, the format of date values in ``rows``.
        :param batch_size: records (not rows) per request.
        :param record_id_field: the record id column; default: the project's first field.
        """
        if date_format not in DATE_FORMATS:
            raise ValueError(f"date_format must be one of {DATE_FORMATS}")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        materialised = [{str(k): _import_value(v) for k, v in row.items()} for row in rows]
        if not materialised:
            return ImportResult(record_ids=())
        pk = record_id_field or self._import_record_id_field(materialised[0])
        groups: dict[str, list[dict[str, str]]] = {}
        for index, row in enumerate(materialised):
            record = row.get(pk, "").strip()
            if not record:
                raise RedcapValidationError(
                    f"Row {index} has no value in the record id field {pk!r}; nothing was sent to REDCap.",
                    errors=[
                        _FieldError(record="", field=pk, value="", message="The record name cannot be empty.")
                    ],
                    status_code=None,
                )
            groups.setdefault(record, []).append(row)
        record_ids = list(groups)
        batches = [record_ids[i : i + batch_size] for i in range(0, len(record_ids), batch_size)]
        saved: list[str] = []
        auto_ids: dict[str, str] = {}
        for number, batch in enumerate(batches, start=1):
            payload = [row for record in batch for row in groups[record]]
            try:
                ids, mapping = self._import_batch(payload, overwrite, force_auto_number, date_format)
            except RedcapError as exc:
                pending = [record for later in batches[number - 1 :] for record in later]
                # Only a refusal proves nothing was saved; a lost or unparsable answer may follow a save.
                ambiguous = isinstance(exc, RedcapConnectionError | RedcapServerError | RedcapResponseError)
                note = (
                    " The failing batch may or may not have been saved: check REDCap before re-sending it."
                    if ambiguous
                    else ""
                )
                raise RedcapImportError(
                    f"Import stopped at batch {number} of {len(batches)}: {len(saved)} record(s) saved, "
                    f"{len(pending)} not saved.{note} Cause: {exc.message}",
                    imported_records=saved,
                    pending_records=pending,
                    status_code=exc.status_code,
                    redcap_message=exc.redcap_message,
                ) from exc
            if not force_auto_number and set(ids) != set(batch):
                self.log.warning(
                    "REDCap confirmed %d record id(s) for a batch of %d: unexpected %s, unconfirmed %s",
                    len(ids),
                    len(batch),
                    sorted(set(ids) - set(batch)),
                    sorted(set(batch) - set(ids)),
                )
            saved.extend(ids)
            auto_ids.update(mapping)
            self.log.info("Imported batch %d of %d (%d records)", number, len(batches), len(ids))
        return ImportResult(record_ids=tuple(saved), auto_ids=auto_ids)

    def _import_record_id_field(self, first_row: Mapping[str, str]) -> str:
        try:
            return self.get_record_id_field()
        except RedcapPermissionError:
            # An import-only token cannot read the data dictionary; REDCap's own templates put the
            # record id first, before any redcap_* pseudo-column.
            for key in first_row:
                if not key.startswith("redcap_"):
                    return key
            raise

    def _import_batch(
        self, payload: list[dict[str, str]], overwrite: bool, force_auto_number: bool, date_format: str
    ) -> tuple[list[str], dict[str, str]]:
        form = self._form(
            "record",
            type="flat",
            overwriteBehavior="overwrite" if overwrite else "normal",
            forceAutoNumber=force_auto_number,
            dateFormat=date_format,
            returnContent="auto_ids" if force_auto_number else "ids",
            data=json.dumps(payload, ensure_ascii=False),
        )
        return self._execute(
            form,
            content="record",
            action="import",
            parse=lambda r: parse_import_ids(
                parse_json(r, content="record", action="import"), auto_ids=force_auto_number
            ),
            # Re-sending an auto-numbered batch would create the records twice.
            mode="connect_only" if force_auto_number else "safe",
        )

    # -- randomization ----------------------------------------------------------------------------

    def _check_randomize_supported(self, record: str, randomization_id: int) -> None:
        if self._randomize_supported:
            return
        version = self._version or self.get_version()
        if parse_version(version) < MIN_RANDOMIZE_VERSION:
            raise RedcapRandomizationUnsupportedError(
                f"REDCap {version} has no Randomize Record API method; it arrived in REDCap 14.7.0.",
                record=record,
                randomization_id=randomization_id,
                status_code=None,
            )
        self._randomize_supported = True

    def randomize_record(
        self, record: str, randomization_id: int, *, return_alt: bool = True
    ) -> RandomizationResult:
        """Randomize one record in one model. Never retried once the request may have reached REDCap.

        :param record: an existing record id with all stratification data.
        :param randomization_id: the model's id (REDCap has no default).
        :param return_alt: also return ``target_field_alt`` (the randomization number, ``"*"`` if
            concealed).
        :raises RedcapRandomizationError: a subclass for each REDCap refusal.
        :raises RedcapConnectionError: no complete answer; the allocation may have been committed.
        """
        record = str(record).strip()
        if not record:
            raise ValueError("record must be a non-empty record id")
        if (
            isinstance(randomization_id, bool)
            or not isinstance(randomization_id, int)
            or randomization_id < 1
        ):
            raise ValueError("randomization_id must be a positive integer")
        hint = (
            " The randomization may have been committed: read the record's target field before calling "
            "randomize again."
        )
        try:
            result = self._post_randomize(record, randomization_id, return_alt=return_alt)
        except RedcapConnectionError as exc:
            if not exc.may_have_reached_server:
                raise
            raise RedcapConnectionError(exc.message + hint) from exc
        except RedcapServerError as exc:
            raise RedcapServerError(
                exc.message + hint, status_code=exc.status_code, redcap_message=exc.redcap_message
            ) from exc
        if result.record != record or result.randomization_id != randomization_id:
            self.log.warning(
                "REDCap answered for record %r / randomization %s; requested %r / %s",
                result.record,
                result.randomization_id,
                record,
                randomization_id,
            )
        self.log.info("Randomized record %r in randomization %s", record, randomization_id)
        return result

    def _post_randomize(self, record: str, randomization_id: int, *, return_alt: bool) -> RandomizationResult:
        """One Randomize Record call after the version gate; never repeated once it may have arrived."""
        self._check_randomize_supported(record, randomization_id)
        form = self._form(
            "record",
            action="randomize",
            record=record,
            randomization_id=randomization_id,
            returnAlt="true" if return_alt else None,
        )
        return self._execute(
            form,
            content="record",
            action="randomize",
            parse=lambda r: parse_randomize_response(r, record=record, randomization_id=randomization_id),
            mode="connect_only",
        )

    def check_randomization_id(self, randomization_id: int) -> bool | None:
        """Whether ``randomization_id`` is one of the project's randomization models; allocates nothing.

        REDCap's project XML does not list the ids, so this randomizes a record id that cannot exist:
        REDCap checks the Randomize privilege (403), then the id ("Invalid data supplied"), then the
        record ("Record does not exist"), and stops there. ``0`` is never a valid id, so
        ``check_randomization_id(0)`` tests the privilege alone.

        :param randomization_id: the model's id.
        :return: ``True`` (a model of this project), ``False`` (not one, or randomization is off), or
            ``None`` when the token's user lacks the Randomize privilege (REDCap refuses before the id).
        :raises RedcapError: any other answer (no answer, server error, REDCap older than 14.7.0, ...).
        """
        if (
            isinstance(randomization_id, bool)
            or not isinstance(randomization_id, int)
            or randomization_id < 0
        ):
            raise ValueError("randomization_id must be a whole number, 0 or more")
        record = PROBE_RECORD_PREFIX + uuid.uuid4().hex
        try:
            result = self._post_randomize(record, randomization_id, return_alt=False)
        except RedcapInvalidRandomizationIdError:
            return False
        except RedcapRecordNotFoundError:
            return True
        except RedcapPermissionError:
            return None
        # REDCap checks the record before it allocates; only a server that does not behave like it gets here.
        raise RedcapResponseError(
            f"REDCap answered the probe for randomization {randomization_id} by randomizing record "
            f"{result.record!r}, which should not exist; ask a REDCap administrator to remove that "
            "allocation."
        )

    # -- misc ---------------------------------------------------------------------------------------

    def generate_next_record_name(self) -> str:
        """The next auto-numbered record id (``"<dag>-<n>"`` for users in a DAG); creates nothing."""
        form = self._form("generateNextRecordName")

        def parse(response: RawResponse) -> str:
            text = parse_text(response, content="generateNextRecordName").strip()
            if not text or len(text) > 100 or any(c in text for c in "<>\n\r\t\"'{}"):
                raise RedcapResponseError(f"REDCap's next record name is not a record id: {excerpt(text)!r}")
            return text

        return self._execute(form, content="generateNextRecordName", action=None, parse=parse, mode="safe")

    def export_logging(self, **filters: Any) -> list[dict[str, Any]]:
        """Export the project log.

        :param filters: REDCap's filters (``logtype``, ``user``, ``record``, ``dag``, ``beginTime``,
            ``endTime``); ``begin_time``/``end_time``/``log_type`` are accepted too, and datetimes are
            formatted as ``YYYY-MM-DD HH:MM``.
        """
        params: dict[str, Any] = {}
        for name, value in filters.items():
            if isinstance(value, dt.datetime):
                value = value.strftime("%Y-%m-%d %H:%M")
            params[_LOG_FILTER_NAMES.get(name, name)] = value
        return self._json_list("log", **params)

    def test_connection(self) -> tuple[bool, str]:
        """Check URL, token and privileges; the message names the project, the REDCap version and the
        privileges the token's user lacks.

        Without API Export nothing works (``ok`` is ``False``). Randomize and API Import are probed without
        side effects (Randomize with ``randomization_id`` 0, which REDCap refuses right after its privilege
        check; an import of no rows) and reported as missing in the message, ``ok`` staying ``True``.
        """
        version = "(version unknown)"
        try:
            version = self.get_version()
            info = self.get_project_info()
        except RedcapPermissionError as exc:
            return False, (
                f"Connected to REDCap {version} and the token is valid, but its user lacks a privilege "
                f"this provider needs (API Export): {exc.redcap_message or exc.message}"
            )
        except RedcapError as exc:
            return False, f"{type(exc).__name__}: {exc.message}"
        status = {0: "development", 1: "production", 2: "analysis/cleanup"}.get(
            int(info.get("in_production", 0) or 0), "unknown status"
        )
        message = (
            f"Connected to REDCap {version}: project {info.get('project_id')} "
            f"{str(info.get('project_title', '')).strip()!r} ({status})."
        )
        missing, notes = self._probe_privileges()
        if missing:
            message += f" Missing privileges: {', '.join(missing)}."
        return True, " ".join([message, *notes])

    def _probe_privileges(self) -> tuple[list[str], list[str]]:
        """The privileges the token's user lacks among Randomize and API Import, and probes that failed."""
        missing: list[str] = []
        notes: list[str] = []
        try:
            if self.check_randomization_id(0) is None:
                missing.append("Randomize (needed by RedcapRandomizeOperator)")
        except RedcapError as exc:
            notes.append(f"Could not check the Randomize privilege: {exc.message}")
        try:
            # REDCap checks the privilege before it reads the rows; no rows can change nothing.
            self.request(
                "record",
                type="flat",
                overwriteBehavior="normal",
                forceAutoNumber=False,
                returnContent="count",
                data="[]",
            )
        except RedcapPermissionError as exc:
            refusal = exc.redcap_message or exc.message
            if refusal.startswith(NO_IMPORT_PRIVILEGE):
                missing.append("API Import (needed by RedcapImportRecordsOperator)")
            else:
                notes.append(f"REDCap refuses imports: {refusal}")
        except RedcapRequestError:
            pass  # any answer past the privilege check shows the privilege
        except RedcapError as exc:
            notes.append(f"Could not check the API Import privilege: {exc.message}")
        return missing, notes
