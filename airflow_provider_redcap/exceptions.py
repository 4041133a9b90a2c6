"""Typed errors for everything that can go wrong talking to REDCap.

Every error is a :class:`RedcapError` (an ``AirflowException``) that carries the HTTP status code and
the message REDCap sent, so callers can branch on the class instead of parsing text. ``retryable``
says whether trying the same request again later can succeed; operators use it to decide whether an
Airflow retry is worth anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from airflow.exceptions import AirflowException


class RedcapError(AirflowException):
    """Base class of every REDCap error raised by this provider.

    :param message: human-readable description; never contains the API token.
    :param status_code: HTTP status of the response, or ``None`` when no response arrived.
    :param redcap_message: the error text exactly as REDCap sent it, when it sent one.
    """

    retryable: bool = False

    def __init__(
        self, message: str, *, status_code: int | None = None, redcap_message: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        # AirflowException types status_code as an HTTPStatus of Airflow's own API; ours is REDCap's
        # HTTP status, or None when no response arrived.
        self.status_code = status_code  # type: ignore[assignment]
        self.redcap_message = redcap_message


class RedcapConfigurationError(RedcapError):
    """The Airflow connection is unusable (API URL or token malformed); raised before any request."""


class RedcapAuthError(RedcapError):
    """The token is unknown, the user has no API rights, or the user's rights have expired (403)."""


class RedcapPermissionError(RedcapError):
    """The token works but its user lacks a privilege (API Export, API Import, Randomize, ...)."""


class RedcapRateLimitError(RedcapError):
    """HTTP 429: REDCap has banned this client's IP address. Never retried: the ban is permanent."""


class RedcapRequestError(RedcapError):
    """REDCap refused the request's parameters (HTTP 400), e.g. an unknown field or event name."""


@dataclass(frozen=True)
class RedcapFieldError:
    """One line of REDCap's import validation report."""

    record: str
    field: str
    value: str
    message: str


class RedcapValidationError(RedcapRequestError):
    """An import was refused (HTTP 400); nothing from that request was saved.

    :param errors: the parsed ``"record","field","value","message"`` lines, when REDCap sent them.
    """

    def __init__(
        self,
        message: str,
        *,
        errors: Sequence[RedcapFieldError] = (),
        status_code: int | None = 400,
        redcap_message: str | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, redcap_message=redcap_message)
        self.errors = list(errors)


class RedcapResponseError(RedcapError):
    """A response that is not REDCap API output: an HTML page (login, maintenance, firewall) or a
    body that does not parse as the format asked for. Its message shows a short excerpt."""


class RedcapServerError(RedcapError):
    """HTTP 5xx (or 408) that persisted after the configured retries."""

    retryable = True


class RedcapConnectionError(RedcapError):
    """No complete response arrived: connection refused or dropped, timeout, truncated body.

    :param may_have_reached_server: ``False`` only when the request certainly never reached REDCap
        (e.g. the TCP connection could not be opened); a change may have been committed otherwise.
    """

    retryable = True

    def __init__(self, message: str, *, may_have_reached_server: bool = True) -> None:
        super().__init__(message, status_code=None)
        self.may_have_reached_server = may_have_reached_server


class RedcapImportError(RedcapError):
    """A batched import stopped part-way. Earlier batches are saved in REDCap; the rest are not.

    :param imported_records: record ids REDCap confirmed as saved, in order.
    :param pending_records: record ids that were not saved (the failing batch and those after it).
    """

    def __init__(
        self,
        message: str,
        *,
        imported_records: Sequence[str],
        pending_records: Sequence[str],
        status_code: int | None = None,
        redcap_message: str | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, redcap_message=redcap_message)
        self.imported_records = list(imported_records)
        self.pending_records = list(pending_records)


class RedcapRandomizationError(RedcapError):
    """REDCap refused to randomize a record. The refusals REDCap sends as HTTP 200 plain text
    ("Cannot randomize. ...", "Invalid data supplied") all land in a subclass of this.

    :param record: the record the call was for.
    :param randomization_id: the randomization model the call was for.
    """

    def __init__(
        self,
        message: str,
        *,
        record: str | None = None,
        randomization_id: int | None = None,
        status_code: int | None = 200,
        redcap_message: str | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, redcap_message=redcap_message)
        self.record = record
        self.randomization_id = randomization_id


class RedcapRecordNotFoundError(RedcapRandomizationError):
    """ "Cannot randomize. Record does not exist." (not in the arm of the model's target event)."""


class RedcapAlreadyRandomizedError(RedcapRandomizationError):
    """ "Cannot randomize. Randomization already completed for record." """


class RedcapRecordNotInDagError(RedcapRandomizationError):
    """ "Cannot randomize. Record not assigned to a DAG" (the model groups by DAG)."""


class RedcapMissingStratificationError(RedcapRandomizationError):
    """ "Cannot randomize. Missing stratification data for fields: ..."

    :param missing: ``(field, event_id)`` pairs as REDCap named them; ``event_id`` is REDCap's
        numeric event id (present even in classic projects).
    """

    def __init__(
        self, message: str, *, missing: Sequence[tuple[str, int | None]] = (), **kwargs: object
    ) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.missing = list(missing)


class RedcapNoAllocationsError(RedcapRandomizationError):
    """ "Cannot randomize. No allocations available." for the record's stratum (and DAG)."""


class RedcapInvalidRandomizationIdError(RedcapRandomizationError):
    """ "Invalid data supplied": the randomization id is not a model of this project."""


class RedcapRandomizationUnsupportedError(RedcapRandomizationError):
    """The server is older than REDCap 14.7.0, which introduced the Randomize Record API."""


@dataclass(frozen=True)
class RedcapImportProblem:
    """One problem found by client-side import validation, before anything was sent.

    :param record: the record id of the row (``""`` when the row has none).
    :param field: the column the problem is in.
    :param event: the row's unique event name (longitudinal projects), else ``None``.
    :param value: the offending value as supplied.
    :param message: what is wrong, and how to fix it when that is known.
    """

    record: str
    field: str
    event: str | None
    value: str
    message: str

    def __str__(self) -> str:
        event = f", event {self.event!r}" if self.event else ""
        return f"record {self.record!r}{event}, field {self.field!r}, value {self.value!r}: {self.message}"


class RedcapImportValidationError(RedcapValidationError):
    """Client-side validation against the project's metadata refused an import; nothing was sent.

    :param problems: every problem found, in row order.
    """

    def __init__(self, message: str, *, problems: Sequence[RedcapImportProblem]) -> None:
        super().__init__(
            message,
            errors=[RedcapFieldError(p.record, p.field, p.value, p.message) for p in problems],
            status_code=None,
        )
        self.problems = list(problems)


class RedcapMissingRecordsError(RedcapError):
    """An export did not return records that were requested by id (they do not exist, lie outside the
    token user's DAG, or have no data in the requested events). Raised only when asked to;
    by default the hook logs a warning instead.

    :param records: the requested record ids that did not come back.
    """

    def __init__(self, message: str, *, records: Sequence[str], status_code: int | None = 200) -> None:
        super().__init__(message, status_code=status_code)
        self.records = list(records)
