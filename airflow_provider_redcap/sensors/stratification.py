"""Wait until records hold every stratification value a randomization model needs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.configuration import conf
from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, AirflowSkipException

from airflow_provider_redcap._randomization import (
    NOT_FOUND_WARNING,
    ModelSelectionError,
    StrataSpec,
    UnreadableStrataError,
    coerce_records,
    coerce_strata,
    describe_records,
    describe_waiting,
    evaluate_strata,
    select_model,
)
from airflow_provider_redcap.exceptions import (
    RedcapConnectionError,
    RedcapError,
    RedcapResponseError,
    RedcapServerError,
)
from airflow_provider_redcap.hooks.redcap import RedcapHook
from airflow_provider_redcap.models import StratumField
from airflow_provider_redcap.triggers.stratification import RedcapStratificationTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Errors a later poke can get past; everything else fails the sensor at once.
TRANSIENT_ERRORS = (RedcapConnectionError, RedcapServerError, RedcapResponseError)


class RedcapStratificationSensor(BaseSensorOperator):
    """Wait until records hold all the stratification data a randomization model needs.

    The strata (fields with their events, and grouping by data access group) are read from the
    project's randomization models, or given with ``strata`` and ``group_by_dag``. Each poke is one
    Export Records call for all ``records``: the record id and strata fields (and the DAG column when
    grouped by DAG) in every event, each stratum then read in its own event, so a record with data in
    other events only is waiting, not missing. A value counts as missing only when blank (``"0"`` is a
    value). A record that is not found is still waited for (it may be created later, or lie in a data
    access group the token's user cannot see), but is logged as a warning and listed under
    ``not_found`` instead of ``waiting``.

    Each sensor instance first checks ``randomization_id`` with REDCap, allocating nothing (see
    :meth:`RedcapHook.check_randomization_id`): an id that is not a model of the project fails the task
    at once, even with ``soft_fail`` (a configuration error, not data that failed to arrive). When the
    token's user lacks the Randomize privilege the check is skipped; the sensor itself needs export
    rights only.

    Works with dynamic task mapping: ``.partial(...).expand(records=[...])`` with one id (or one list
    of ids) per mapped task.

    :param records: the record ids to wait for (a list, or a single id).
    :param randomization_id: the model the records will be randomized in; checked to exist, see above.
        REDCap's project XML does not reveal which id belongs to which model, so the model's strata are
        picked with ``target_field`` when the project has several.
    :param target_field: the target field of the model, to pick it among several.
    :param target_event: the target event, when one target field is used in several events.
    :param strata: explicit strata instead of the model's: ``"field"`` or ``{"field", "event"}`` items.
    :param group_by_dag: with explicit ``strata``, also require a data access group.
    :param deferrable: hand the wait to :class:`RedcapStratificationTrigger` (needs a triggerer).
    :param redcap_conn_id: the REDCap connection.
    :return: ``{"randomization_id", "complete": [ids], "waiting": {}, "not_found": []}`` once every
        record is complete; while waiting, ``waiting`` maps records to their missing strata.
    """

    template_fields: Sequence[str] = (
        "records",
        "randomization_id",
        "target_field",
        "target_event",
        "strata",
        "redcap_conn_id",
    )
    ui_color = "#e8f1d4"

    def __init__(
        self,
        *,
        records: list[str] | str,
        randomization_id: int | str | None = None,
        target_field: str | None = None,
        target_event: str | None = None,
        strata: list[Any] | None = None,
        group_by_dag: bool | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        redcap_conn_id: str = RedcapHook.default_conn_name,
        mode: str = "reschedule",
        poke_interval: float | timedelta = 300,
        **kwargs: Any,
    ) -> None:
        super().__init__(mode=mode, poke_interval=poke_interval, **kwargs)
        self.records = records
        self.randomization_id = randomization_id
        self.target_field = target_field
        self.target_event = target_event
        self.strata = strata
        self.group_by_dag = group_by_dag
        self.deferrable = deferrable
        self.redcap_conn_id = redcap_conn_id

    @cached_property
    def hook(self) -> RedcapHook:
        return RedcapHook(redcap_conn_id=self.redcap_conn_id)

    def execute(self, context: Context) -> Any:
        # Outside the poke, so soft_fail cannot turn a wrong id into a skip: with soft_fail set on every
        # sensor of a run, a typo would otherwise skip all randomizations and leave the run green.
        if context.get("task_reschedule_count"):
            # A rescheduled poke is a new instance of a try whose first poke already checked the id.
            self._randomization_id_checked = True
        else:
            self._check_randomization_id()
        if not self.deferrable:
            return super().execute(context)
        try:
            result = self.poke(context)
        except AirflowFailException as err:
            # This poke runs outside BaseSensorOperator.execute, which would apply these two
            # (never_fail is not in every Airflow 3 release).
            if self.soft_fail or getattr(self, "never_fail", False):
                raise AirflowSkipException(f"Skipping due to soft_fail or never_fail: {err}") from err
            raise
        if result.is_done:
            return result.xcom_value
        spec = self._spec()
        self.defer(
            trigger=RedcapStratificationTrigger(
                redcap_conn_id=self.redcap_conn_id,
                records=self._record_ids(),
                spec=spec.to_dict(),
                poke_interval=self.poke_interval,
                randomization_id=self._randomization_id(),
                end_time=time.time() + self.timeout,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Resume after the trigger fired."""
        if event.get("status") == "timeout":
            raise AirflowSensorTimeout(f"Sensor timed out: {event.get('message')}")
        if event.get("status") != "success":
            raise AirflowFailException(f"Waiting for stratification data failed: {event.get('message')}")
        self.log.info("All %d record(s) hold their stratification data.", len(event["result"]["complete"]))
        return event["result"]

    def poke(self, context: Context) -> PokeReturnValue:
        records = self._record_ids()
        try:
            spec = self._spec()
            self._check_randomization_id()
            # No events filter: a record with rows in other events only exists (it waits for strata),
            # so this one export also tells waiting records from those that are not found.
            rows = self.hook.export_records(
                records=records,
                fields=spec.export_fields,
                export_data_access_groups=spec.group_by_dag,
                on_missing="ignore",  # reported below, apart from the records waiting for strata
            )
        except TRANSIENT_ERRORS as err:
            self.log.warning("REDCap is not answering properly; will poke again: %s", err)
            return PokeReturnValue(is_done=False)
        except RedcapError as err:
            raise AirflowFailException(f"Cannot check stratification data: {err}") from err
        try:
            status = evaluate_strata(rows, records, spec)
        except UnreadableStrataError as err:
            raise AirflowFailException(str(err)) from err
        result = {"randomization_id": self._randomization_id(), **status}
        if status["not_found"]:
            self.log.warning(NOT_FOUND_WARNING, describe_records(status["not_found"]))
        if status["waiting"]:
            self.log.info(
                "%d of %d record(s) complete; waiting for: %s",
                len(status["complete"]),
                len(records),
                describe_waiting(status["waiting"]),
            )
        if status["waiting"] or status["not_found"]:
            return PokeReturnValue(is_done=False, xcom_value=result)
        self.log.info("All %d record(s) hold their stratification data.", len(records))
        return PokeReturnValue(is_done=True, xcom_value=result)

    def _record_ids(self) -> list[str]:
        try:
            records = coerce_records(self.records)
        except ValueError as err:
            raise AirflowFailException(str(err)) from err
        if not records:
            raise AirflowFailException("records is empty: give at least one record id")
        return records

    def _randomization_id(self) -> int | None:
        if self.randomization_id in (None, ""):
            return None
        try:
            return int(str(self.randomization_id).strip())
        except ValueError:
            raise AirflowFailException(
                f"randomization_id must be a whole number, not {self.randomization_id!r}"
            ) from None

    def _check_randomization_id(self) -> None:
        """Fail at once when REDCap does not know ``randomization_id``; once per sensor instance."""
        rid = self._randomization_id()
        if rid is None or getattr(self, "_randomization_id_checked", False):
            return
        self._randomization_id_checked = True
        try:
            known = self.hook.check_randomization_id(rid)
        except RedcapError as err:
            self.log.warning("Could not check randomization_id %s with REDCap; going on: %s", rid, err)
            return
        if known is None:
            self.log.info(
                "randomization_id %s not checked: the token's user lacks the Randomize privilege (this "
                "sensor needs export rights only).",
                rid,
            )
        elif not known:
            raise AirflowFailException(
                f"randomization_id {rid} is not a randomization model of this project (REDCap answered "
                "'Invalid data supplied' to a check that allocates nothing); see the project's "
                "Randomization page for the model's id."
            )

    def _spec(self) -> StrataSpec:
        """The strata to check: explicit, or from the project's randomization models."""
        if getattr(self, "_resolved_spec", None) is None:
            self._resolved_spec = self._resolve_spec()
        return self._resolved_spec

    def _resolve_spec(self) -> StrataSpec:
        self._randomization_id()
        record_id_field = self.hook.get_record_id_field()
        if self.strata is not None:
            try:
                strata = coerce_strata(self.strata)
            except ValueError as err:
                raise AirflowFailException(str(err)) from err
            group_by_dag = bool(self.group_by_dag)
        else:
            models = self.hook.get_randomization_models()
            try:
                model = select_model(models, target_field=self.target_field, target_event=self.target_event)
            except ModelSelectionError as err:
                # Models that need the same strata are as good as one for waiting purposes.
                if self.target_field or len({(m.strata, m.group_by_dag) for m in models}) != 1:
                    raise AirflowFailException(f"Cannot tell which strata to wait for: {err}") from err
                model = models[0]
            strata = model.strata
            group_by_dag = model.group_by_dag if self.group_by_dag is None else bool(self.group_by_dag)
        if not strata and not group_by_dag:
            raise AirflowFailException("The model has no strata and no DAG grouping: nothing to wait for.")
        # The project XML names an event even in classic projects (their one hidden event), whose export
        # rows carry no redcap_event_name: only project info tells.
        longitudinal = self.hook.is_longitudinal()
        if not longitudinal:
            strata = tuple(StratumField(s.field) for s in strata)
        elif self.strata is not None and any(s.event for s in strata):
            # Exports read every event, so REDCap never sees (and refuses) an unknown event name.
            known = {str(e.get("unique_event_name")) for e in self.hook.get_events()}
            unknown = sorted({s.event for s in strata if s.event and s.event not in known})
            if unknown:
                raise AirflowFailException(
                    f"strata name event(s) the project does not have: {', '.join(unknown)}; its events: "
                    f"{', '.join(sorted(known))}"
                )
        spec = StrataSpec(record_id_field, tuple(strata), group_by_dag, longitudinal)
        self.log.info(
            "Waiting for strata %s%s.",
            ", ".join(str(s) for s in spec.strata) or "(none)",
            " and a data access group" if group_by_dag else "",
        )
        return spec
