"""Randomize records in a REDCap randomization model, each exactly once, safely across retries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.exceptions import AirflowException
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_redcap._randomization import ModelSelectionError, coerce_records, select_model
from airflow_provider_redcap.exceptions import (
    RedcapAlreadyRandomizedError,
    RedcapAuthError,
    RedcapConfigurationError,
    RedcapConnectionError,
    RedcapError,
    RedcapInvalidRandomizationIdError,
    RedcapPermissionError,
    RedcapRandomizationError,
    RedcapRandomizationUnsupportedError,
    RedcapRateLimitError,
    RedcapRequestError,
    RedcapResponseError,
    RedcapServerError,
)
from airflow_provider_redcap.hooks.redcap import RedcapHook
from airflow_provider_redcap.links.redcap import RECORD_URL_XCOM_KEY, RedcapRecordLink, record_url
from airflow_provider_redcap.models import RandomizationResult
from airflow_provider_redcap.validation import parse_choices

if TYPE_CHECKING:
    from airflow.sdk import Context

#: No complete answer, or an answer that is not REDCap's: the allocation may or may not be committed.
AMBIGUOUS_ERRORS = (RedcapConnectionError, RedcapServerError, RedcapResponseError)
#: Refusals that hold for every record of the task, so the other records are not tried.
TASK_WIDE_ERRORS = (
    RedcapInvalidRandomizationIdError,
    RedcapRandomizationUnsupportedError,
    RedcapAuthError,
    RedcapPermissionError,
    RedcapRateLimitError,
    RedcapConfigurationError,
    RedcapRequestError,
)
#: XCom key holding the successful results when the task fails part-way.
PARTIAL_RESULTS_XCOM_KEY = "partial_results"

STATUS_RANDOMIZED = "randomized"
STATUS_EXISTING = "existing"
STATUS_RECOVERED = "recovered"
#: REDCap allocated the record into another field than ``target_field``: the pairing is wrong.
STATUS_OTHER_TARGET = "randomized_other_target"


@dataclass(frozen=True)
class _Target:
    record_id_field: str
    field: str
    event: str | None
    longitudinal: bool
    concealed: bool
    labels: Mapping[str, str]
    text_fields: frozenset[str]  # a text target means a concealed model
    other_targets: Mapping[str, str | None]  # the project's other model targets -> their events


@dataclass
class _Run:
    """What happened to each record during one execution."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # retrying cannot help
    unsettled: dict[str, str] = field(default_factory=dict)  # an Airflow retry may help
    halt: str | None = None  # why no further randomize call may be sent (a wrong pairing)
    alarm: str | None = None  # shown first in the failure message


class RedcapRandomizeOperator(BaseOperator):
    """Randomize records in one randomization model, never allocating a record twice.

    Before any Randomize call, one export reads the model's target field (in its target event) for all
    records: a record that already holds a value is returned with status ``existing`` and is not sent.
    Every other record gets one Randomize call. When the answer is lost (timeout, dropped connection,
    5xx, a page that is not REDCap's) or REDCap says the record is already randomized, the target field
    is read again and what REDCap holds is returned with status ``recovered``. If REDCap holds nothing
    after an error answer (5xx, a page that is not REDCap's), nothing was committed, so the record is sent
    once more (``retry_unconfirmed``); after no answer at all REDCap may still be working on the call, so
    that record is left to an Airflow retry.
    REDCap itself refuses a second randomization of a record in the same model, so a retried task never
    allocates twice and never fails a record that REDCap did randomize.

    Concealed (blinded) models, whose target is a text field, get the randomization number as value;
    logs and XCom never carry a group.

    Refusals retrying cannot fix (missing strata, no allocations left, record not found, no DAG, invalid
    randomization id, missing privilege) fail the task without Airflow retries
    (``AirflowFailException``), naming each record and reason, after all records were tried (unless
    ``fail_fast``). Records whose outcome stays unknown fail the task with a retryable error instead.
    The successes are pushed to XCom under ``partial_results`` before the task fails.

    ``randomization_id`` and ``target_field`` must belong to the same model; REDCap cannot be asked
    beforehand. When REDCap's answer names another target field, the record WAS randomized in that
    model (irreversibly): the task stops at once, whatever ``fail_fast`` says, and fails without
    retries; that allocation is in ``partial_results`` with status ``randomized_other_target`` and the
    field it went into. "Already randomized" with an empty target field stops the task the same way.

    :param randomization_id: the model's id (REDCap has no default); an int or a numeric string.
    :param record: one record id; the task then returns one dict.
    :param records: record ids (a list, or a single id); the task then returns a list of dicts. An
        empty list (say, from an upstream task that found no one) randomizes nothing and returns ``[]``.
    :param return_alt: ask REDCap for the alternate value (the randomization number of open models).
    :param target_field: the model's target field; found from the project's models when there is one.
    :param target_event: the target's event (longitudinal projects); found from the models.
    :param fail_fast: stop at the first refused record.
    :param retry_unconfirmed: after an error answer and an empty target field, send the record once more.
    :param redcap_conn_id: the REDCap connection.
    :return: per record ``{"record", "randomization_id", "target_field", "target_event", "value",
        "label", "alternate_value", "concealed", "status"}``; ``status`` is ``randomized``,
        ``existing`` or ``recovered`` (``randomized_other_target`` appears only in ``partial_results``).
    """

    template_fields: Sequence[str] = (
        "randomization_id",
        "record",
        "records",
        "target_field",
        "target_event",
        "redcap_conn_id",
    )
    operator_extra_links = (RedcapRecordLink(),)
    ui_color = "#f6d6ad"

    def __init__(
        self,
        *,
        randomization_id: int | str,
        record: str | None = None,
        records: list[str] | str | None = None,
        return_alt: bool = True,
        target_field: str | None = None,
        target_event: str | None = None,
        fail_fast: bool = False,
        retry_unconfirmed: bool = True,
        redcap_conn_id: str = RedcapHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (record is None) == (records is None):
            raise ValueError("give exactly one of record= or records=")
        self.randomization_id = randomization_id
        self.record = record
        self.records = records
        self.return_alt = return_alt
        self.target_field = target_field
        self.target_event = target_event
        self.fail_fast = fail_fast
        self.retry_unconfirmed = retry_unconfirmed
        self.redcap_conn_id = redcap_conn_id

    @cached_property
    def hook(self) -> RedcapHook:
        return RedcapHook(redcap_conn_id=self.redcap_conn_id)

    def execute(self, context: Context) -> dict[str, Any] | list[dict[str, Any]]:
        rid = self._randomization_id()
        ids = self._record_ids()
        if not ids:
            # records came from upstream (XCom) and named nobody, e.g. a daily run that found no one.
            self.log.info(
                "records rendered to an empty list (records=%r): nothing to randomize.", self.records
            )
            return []
        ti = context.get("ti")
        try:
            self._push_link(ti, ids)
            target = self._target()
            held = self._read_targets(ids, target)
        except RedcapError as err:
            raise _task_error(err, "before any randomization") from err
        run = _Run()
        self.log.info(
            "Randomizing %d record(s) in randomization %s (target %s%s); %d already hold a value.",
            len(ids),
            rid,
            target.field,
            f" @ {target.event}" if target.event else "",
            sum(1 for r in ids if r in held),
        )
        unconfirmed: dict[str, RedcapError] = {}
        for index, record in enumerate(ids):
            if record in held:
                self._settle(run, target, rid, record, held[record], None, STATUS_EXISTING)
                continue
            outcome = self._randomize_once(run, target, rid, record)
            if isinstance(outcome, RedcapError):
                unconfirmed[record] = outcome
            elif outcome == "stop" or (outcome == "refused" and self.fail_fast):
                for later in ids[index + 1 :]:
                    if later not in held:
                        run.refused[later] = "not attempted: the task stopped at record " + repr(record)
                    else:
                        self._settle(run, target, rid, later, held[later], None, STATUS_EXISTING)
                break
        if unconfirmed and run.halt:
            # Every randomize call of this task may land in the wrong model: send nothing more.
            for record, cause in unconfirmed.items():
                run.refused[record] = _not_resent(cause, run.halt)
        elif unconfirmed:
            self._recover(run, target, rid, unconfirmed)
        results = [run.results[r] for r in ids if r in run.results]
        if run.refused or run.unsettled:
            self._fail(ti, run, results)
        if self.record is not None:
            return results[0]
        return results

    # -- steps ------------------------------------------------------------------------------------

    def _randomize_once(self, run: _Run, target: _Target, rid: int, record: str) -> RedcapError | str:
        """One Randomize call: ``"done"``, ``"refused"``, ``"stop"``, or the error to recover from."""
        try:
            result = self.hook.randomize_record(record, rid, return_alt=self.return_alt)
        except RedcapAlreadyRandomizedError as err:
            self.log.warning("Record %s: REDCap says it is already randomized; reading its value.", record)
            # Read now, not after the loop: an empty target means the guard watches the wrong field,
            # and every further call could burn an allocation.
            try:
                held = self._read_targets([record], target)
            except RedcapError:
                return err
            if record in held:
                self._settle(run, target, rid, record, held[record], None, STATUS_RECOVERED)
                return "done"
            run.refused[record] = _already_randomized_elsewhere(record, rid, target)
            run.halt = f"record {record} suggests randomization_id and target_field do not belong together"
            return "stop"
        except AMBIGUOUS_ERRORS as err:
            self.log.warning("Record %s: the randomize answer was lost (%s); reading its value.", record, err)
            return err
        except TASK_WIDE_ERRORS as err:
            run.refused[record] = err.message
            return "stop"
        except RedcapRandomizationError as err:
            run.refused[record] = err.message
            self.log.error("Record %s: %s", record, err.message)
            return "refused"
        if result.target_field and result.target_field != target.field:
            # The read-before-write guard watched the wrong field: every further call would burn
            # another allocation in the wrong model, so stop whatever fail_fast says.
            self._wrong_target(run, target, rid, record, result)
            return "stop"
        concealed = target.concealed or result.concealed
        alternate = None if concealed else result.alternate_value
        self._settle(run, target, rid, record, result.value, alternate, STATUS_RANDOMIZED, concealed)
        return "done"

    def _recover(self, run: _Run, target: _Target, rid: int, unconfirmed: dict[str, RedcapError]) -> None:
        """Re-read records whose randomization is unconfirmed, and send the empty ones once more."""
        try:
            held = self._read_targets(list(unconfirmed), target)
        except RedcapError as err:
            for record, cause in unconfirmed.items():
                run.unsettled[record] = f"outcome unknown ({cause.message}); re-reading failed: {err.message}"
            return
        for record, cause in unconfirmed.items():
            if record in held:
                self._settle(run, target, rid, record, held[record], None, STATUS_RECOVERED)
            elif isinstance(cause, RedcapAlreadyRandomizedError):
                run.refused[record] = _already_randomized_elsewhere(record, rid, target)
            elif run.halt:
                run.refused[record] = _not_resent(cause, run.halt)
            elif not _request_ended(cause):
                run.unsettled[record] = (
                    f"outcome unknown: {cause.message} (the target field is empty so far, but REDCap may "
                    "still be working on the call; an Airflow retry reads it again first)"
                )
            elif self.retry_unconfirmed:
                self.log.info(
                    "Record %s: REDCap holds no allocation, so none was committed; retrying.", record
                )
                self._retry_once(run, target, rid, record, cause)
            else:
                run.unsettled[record] = f"not randomized: {cause.message} (the target field is empty)"

    def _retry_once(self, run: _Run, target: _Target, rid: int, record: str, first: RedcapError) -> None:
        outcome = self._randomize_once(run, target, rid, record)
        if not isinstance(outcome, RedcapError):
            return
        try:
            held = self._read_targets([record], target)
        except RedcapError as err:
            run.unsettled[record] = f"outcome unknown after two attempts ({outcome.message}): {err.message}"
            return
        if record in held:
            self._settle(run, target, rid, record, held[record], None, STATUS_RECOVERED)
        else:
            run.unsettled[record] = (
                f"not randomized after two attempts (first: {first.message}; then: {outcome.message})"
            )

    def _settle(
        self,
        run: _Run,
        target: _Target,
        rid: int,
        record: str,
        value: str,
        alternate: str | None,
        status: str,
        concealed: bool | None = None,
    ) -> None:
        concealed = target.concealed if concealed is None else concealed
        label = None if concealed else target.labels.get(value)
        run.results[record] = {
            "record": record,
            "randomization_id": rid,
            "target_field": target.field,
            "target_event": target.event,
            "value": value,
            "label": label,
            "alternate_value": None if concealed else alternate,
            "concealed": concealed,
            "status": status,
        }
        if concealed:
            self.log.info("Record %s: %s, randomization number %s.", record, status, value)
        else:
            shown = f"{value} ({label})" if label else value
            extra = f", randomization number {alternate}" if alternate else ""
            self.log.info("Record %s: %s, allocated %s%s.", record, status, shown, extra)

    def _wrong_target(
        self, run: _Run, target: _Target, rid: int, record: str, result: RandomizationResult
    ) -> None:
        """Record an allocation REDCap made into another field than ``target_field``."""
        other = result.target_field
        concealed = result.concealed or other in target.text_fields
        alternate = None if concealed else result.alternate_value
        run.halt = (
            f"randomization {rid} allocates into {other!r}: look at that field for this record in REDCap"
        )
        run.results[record] = {
            "record": record,
            "randomization_id": rid,
            "target_field": other,
            "target_event": target.other_targets.get(other),
            "value": result.value,
            "label": None,
            "alternate_value": alternate,
            "concealed": concealed,
            "status": STATUS_OTHER_TARGET,
        }
        if concealed:
            shown = f"randomization number {result.value!r}"
        else:
            shown = f"value {result.value!r}" + (
                f" (randomization number {alternate!r})" if alternate else ""
            )
        run.alarm = (
            f"RECORD {record} WAS RANDOMIZED in randomization {rid}: REDCap wrote {shown} into field "
            f"{other!r}, not into target_field {target.field!r}. This allocation is irreversible; only a "
            f"REDCap administrator can undo it. randomization_id={rid} and target_field={target.field!r} "
            f"do not belong together: randomization {rid} allocates into {other!r}. The task sent no "
            "further randomize call. Before running it again, set target_field="
            f"{other!r} if {rid} is the model you mean, or else the randomization_id of the model that "
            f"targets {target.field!r}."
        )
        run.refused[record] = f"randomized into {other!r}, not {target.field!r} (see above)"
        self.log.error("%s", run.alarm)

    def _fail(self, ti: Any, run: _Run, results: list[dict[str, Any]]) -> None:
        if ti is not None:
            ti.xcom_push(key=PARTIAL_RESULTS_XCOM_KEY, value=results)
        done = sum(1 for r in results if r["status"] != STATUS_OTHER_TARGET)
        lines = [run.alarm, ""] if run.alarm else []
        lines += [f"{done} record(s) done; {len(run.refused) + len(run.unsettled)} not:"]
        lines += [f"  - {record}: {reason}" for record, reason in run.refused.items()]
        lines += [f"  - {record}: {reason}" for record, reason in run.unsettled.items()]
        message = "\n".join(lines)
        if run.unsettled and not run.halt:
            # The read-before-write makes an Airflow retry safe, and it may settle these records.
            raise AirflowException(message)
        raise AirflowFailException(message)

    # -- inputs and reads -------------------------------------------------------------------------

    def _randomization_id(self) -> int:
        value = self.randomization_id
        text = str(value).strip() if not isinstance(value, bool) else ""
        if not text.isdigit() or int(text) < 1:
            raise AirflowFailException(f"randomization_id must be a positive whole number, not {value!r}")
        return int(text)

    def _record_ids(self) -> list[str]:
        """The record ids; empty only when ``records`` rendered to an empty list."""
        if self.record is None and self.records is None:
            raise AirflowFailException(
                "record and records are both None: give one record id (record=) or a list (records=)"
            )
        name, value = ("record", self.record) if self.record is not None else ("records", self.records)
        try:
            ids = coerce_records(value)
        except ValueError as err:
            raise AirflowFailException(f"{name}={value!r}: {err}") from err
        if not ids and self.record is not None:
            raise AirflowFailException(
                f"record rendered to no record id (record={self.record!r}, records={self.records!r})"
            )
        if self.record is not None and len(ids) != 1:
            raise AirflowFailException(f"record= takes one record id; use records= for {ids}")
        return ids

    def _push_link(self, ti: Any, ids: list[str]) -> None:
        if ti is None:
            return
        info = self.hook.get_project_info()
        url = record_url(
            self.hook.settings.url,
            self.hook.get_version(),
            info["project_id"],
            ids[0] if len(ids) == 1 else None,
        )
        ti.xcom_push(key=RECORD_URL_XCOM_KEY, value=url)

    def _target(self) -> _Target:
        metadata = self.hook.get_metadata()
        if not metadata:
            raise AirflowFailException("The project's data dictionary is empty.")
        longitudinal = self.hook.is_longitudinal()
        models = self.hook.get_randomization_models()
        if models or not self.target_field:
            try:
                model = select_model(models, target_field=self.target_field, target_event=self.target_event)
            except ModelSelectionError as err:
                raise AirflowFailException(f"Cannot tell the model's target field: {err}") from err
            field_name, event = model.target_field, model.target_event
        else:
            self.log.warning("The project XML lists no randomization models; trusting target_field.")
            field_name, event = self.target_field, self.target_event
        if longitudinal and not event:
            raise AirflowFailException("The project is longitudinal: set target_event.")
        meta = next((row for row in metadata if row.get("field_name") == field_name), None)
        if meta is None:
            raise AirflowFailException(f"The target field {field_name!r} is not in the data dictionary.")
        concealed = str(meta.get("field_type")) == "text"
        labels: Mapping[str, str] = {}
        if not concealed:
            field_type = str(meta.get("field_type"))
            labels = {"yesno": {"1": "Yes", "0": "No"}, "truefalse": {"1": "True", "0": "False"}}.get(
                field_type
            ) or parse_choices(str(meta.get("select_choices_or_calculations") or ""))
        return _Target(
            record_id_field=str(metadata[0]["field_name"]),
            field=field_name,
            event=event if longitudinal else None,
            longitudinal=longitudinal,
            concealed=concealed,
            labels=labels,
            text_fields=frozenset(
                str(r.get("field_name")) for r in metadata if r.get("field_type") == "text"
            ),
            other_targets={
                m.target_field: m.target_event if longitudinal else None
                for m in models
                if m.target_field != field_name
            },
        )

    def _read_targets(self, ids: list[str], target: _Target) -> dict[str, str]:
        """``{record: value}`` for the records whose target field holds a value (one export)."""
        # No events filter: a record with no data yet in the target event still comes back from its
        # other events, so "did not come back" means the record does not exist.
        rows = self.hook.export_records(records=ids, fields=[target.record_id_field, target.field])
        if rows and not any(target.field in row for row in rows):
            # REDCap drops fields the user may not export (De-identified or no-access rights for the
            # form): an absent column is not an empty one, and a blind guard must not let calls through.
            raise AirflowFailException(
                f"REDCap's export leaves out the target field {target.field!r}: the token's user may not "
                "export it, so existing allocations cannot be checked. Grant full export rights for its form."
            )
        held: dict[str, str] = {}
        for row in rows:
            if target.longitudinal and row.get("redcap_event_name") != target.event:
                continue
            value = row.get(target.field)
            if value not in (None, ""):
                held.setdefault(str(row.get(target.record_id_field)), str(value))
        return held


def _already_randomized_elsewhere(record: str, rid: int, target: _Target) -> str:
    """Why REDCap can say "already randomized" while the target field is empty."""
    others = ", ".join(f"{f} @ {e}" if e else f for f, e in target.other_targets.items())
    return (
        f"REDCap says record {record} is already randomized in randomization {rid}, but target_field "
        f"{target.field!r} is empty: the allocation most likely sits in another field, i.e. "
        f"randomization_id={rid} and target_field={target.field!r} do not belong together"
        + (f" (the project's other randomization targets: {others})" if others else "")
        + ". Only a REDCap administrator can undo an allocation made in the wrong model. (Less likely: "
        "the value was erased, or the record was randomized in another project status.)"
    )


def _not_resent(cause: RedcapError, halt: str) -> str:
    return f"outcome unknown ({cause.message}); not re-sent, since {halt}"


def _request_ended(err: RedcapError) -> bool:
    """Whether an answer shows the server is done with the call, so an empty target field is final.

    Without one (timeout, dropped connection) or after a gateway timeout REDCap may still be working on
    the call and write its allocation later; only an Airflow retry, after its delay, reads again.
    """
    return not isinstance(err, RedcapConnectionError) and err.status_code != 504


def _task_error(err: RedcapError, when: str) -> Exception:
    """Transient errors stay retryable; anything else fails the task for good."""
    message = f"REDCap call failed {when}: {err}"
    if err.retryable:
        return AirflowException(message)
    return AirflowFailException(message)
