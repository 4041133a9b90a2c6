"""Trigger that polls REDCap until records hold their stratification data (no worker slot used)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_redcap._randomization import (
    NOT_FOUND_WARNING,
    StrataSpec,
    UnreadableStrataError,
    describe_records,
    describe_waiting,
    evaluate_strata,
)
from airflow_provider_redcap.exceptions import (
    RedcapConnectionError,
    RedcapError,
    RedcapResponseError,
    RedcapServerError,
)
from airflow_provider_redcap.hooks.redcap_async import RedcapAsyncHook

_TRANSIENT = (RedcapConnectionError, RedcapServerError, RedcapResponseError)


class RedcapStratificationTrigger(BaseTrigger):
    """Poll Export Records every ``poke_interval`` seconds until every record holds its strata.

    All arguments are JSON values, because Airflow stores them with the deferred task. The trigger only
    reads from REDCap, so running it more than once is harmless. The deferral's ``timeout`` ends it.

    :param redcap_conn_id: the REDCap connection.
    :param records: record ids.
    :param spec: :meth:`StrataSpec.to_dict` of the strata to check.
    :param poke_interval: seconds between polls.
    :param randomization_id: carried into the result for the record, not used for the check.
    :param end_time: Unix time after which the trigger gives up with a ``timeout`` event. The deferral's
        own timeout does the same in a deployment; this also bounds runs that do not enforce it
        (``dag.test()`` runs triggers inline without a timeout).
    :return: a ``TriggerEvent`` ``{"status": "success", "result": {...}}`` (the sensor's XCom shape,
        with ``not_found`` records polled like waiting ones),
        ``{"status": "error", "message": ...}`` for a permanent error, or
        ``{"status": "timeout", "message": ..., "result": {...}}``.
    """

    def __init__(
        self,
        *,
        redcap_conn_id: str,
        records: Sequence[str],
        spec: dict[str, Any],
        poke_interval: float = 300.0,
        randomization_id: int | None = None,
        end_time: float | None = None,
    ) -> None:
        super().__init__()
        self.redcap_conn_id = redcap_conn_id
        self.records = [str(r) for r in records]
        self.spec = dict(spec)
        self.poke_interval = float(poke_interval)
        self.randomization_id = randomization_id
        self.end_time = end_time

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "redcap_conn_id": self.redcap_conn_id,
                "records": list(self.records),
                "spec": dict(self.spec),
                "poke_interval": self.poke_interval,
                "randomization_id": self.randomization_id,
                "end_time": self.end_time,
            },
        )

    def _hook(self) -> RedcapAsyncHook:
        return RedcapAsyncHook(redcap_conn_id=self.redcap_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        spec = StrataSpec.from_dict(self.spec)
        hook = self._hook()
        status: dict[str, Any] | None = None
        while True:
            try:
                # All events, as the sensor's poke: one export tells waiting records from absent ones.
                rows = await hook.export_records(
                    records=self.records,
                    fields=spec.export_fields,
                    export_data_access_groups=spec.group_by_dag,
                )
            except _TRANSIENT as err:
                self.log.warning("REDCap is not answering properly; will poll again: %s", err)
            except RedcapError as err:
                yield TriggerEvent({"status": "error", "message": str(err)})
                return
            else:
                try:
                    status = evaluate_strata(rows, self.records, spec)
                except UnreadableStrataError as err:
                    yield TriggerEvent({"status": "error", "message": str(err)})
                    return
                if not status["waiting"] and not status["not_found"]:
                    yield TriggerEvent(
                        {"status": "success", "result": {"randomization_id": self.randomization_id, **status}}
                    )
                    return
                if status["not_found"]:
                    self.log.warning(NOT_FOUND_WARNING, describe_records(status["not_found"]))
                if status["waiting"]:
                    self.log.info(
                        "%d of %d record(s) complete; waiting for: %s",
                        len(status["complete"]),
                        len(self.records),
                        describe_waiting(status["waiting"]),
                    )
            if self.end_time is not None and time.time() + self.poke_interval > self.end_time:
                yield TriggerEvent(
                    {
                        "status": "timeout",
                        "message": _still_missing(status, self.records),
                        "result": {"randomization_id": self.randomization_id, **(status or {})},
                    }
                )
                return
            await asyncio.sleep(self.poke_interval)


def _still_missing(status: dict[str, Any] | None, records: Sequence[str]) -> str:
    if status is None:
        return f"REDCap did not answer; stratification data unchecked for: {describe_records(records)}"
    parts = []
    if status["waiting"]:
        parts.append(f"stratification data still missing: {describe_waiting(status['waiting'])}")
    if status["not_found"]:
        parts.append(f"record(s) not found: {describe_records(status['not_found'])}")
    return "; ".join(parts)
