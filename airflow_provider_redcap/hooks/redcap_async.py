"""Async REDCap client (httpx) for triggers.

Shares the sync hook's pure helpers: connection settings (:mod:`._connection`), form encoding
(:mod:`._params`) and response classification (:mod:`._responses`), so both clients read the same
connection the same way and raise the same typed errors. Only read-only calls live here: a trigger
may run more than once, so it must never change anything in REDCap.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
from airflow.sdk import BaseHook
from asgiref.sync import sync_to_async

from airflow_provider_redcap.exceptions import RedcapConnectionError, RedcapError
from airflow_provider_redcap.hooks._connection import RedcapSettings, settings_from_connection
from airflow_provider_redcap.hooks._params import DEFAULT_EXPORT_BATCH, build_form
from airflow_provider_redcap.hooks._responses import RawResponse, classify_response, expect_list, tls_hint
from airflow_provider_redcap.hooks._throttle import Throttle

#: One throttle per API URL and limit for the whole process: every trigger of a triggerer shares it,
#: since REDCap bans the client IP, not one hook.
_THROTTLES: dict[tuple[str, int], Throttle] = {}


def _throttle(settings: RedcapSettings) -> Throttle:
    key = (settings.url, settings.requests_per_minute)
    if key not in _THROTTLES:
        _THROTTLES[key] = Throttle(settings.requests_per_minute)
    return _THROTTLES[key]


class RedcapAsyncHook(BaseHook):
    """Read records from REDCap with httpx, for use in triggers.

    :param redcap_conn_id: the REDCap connection (same as :class:`~.redcap.RedcapHook`).
    :param timeout: seconds per request; defaults to the connection's ``timeout`` extra.
    :param max_retries: retries of a read after a connection error or 5xx; defaults to the connection's.
    """

    conn_name_attr = "redcap_conn_id"
    default_conn_name = "redcap_default"
    hook_name = "REDCap (async)"

    def __init__(
        self,
        redcap_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> None:
        super().__init__()
        self.redcap_conn_id = redcap_conn_id
        self.timeout = timeout
        self.max_retries = max_retries
        self._settings: RedcapSettings | None = None
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def get_settings(self) -> RedcapSettings:
        """The connection's validated settings, looked up once."""
        if self._settings is None:
            # aget_connection can deadlock on Airflow < 3.3.2 (it masks secrets through a sync call).
            conn = await sync_to_async(BaseHook.get_connection)(self.redcap_conn_id)
            self._settings = settings_from_connection(
                conn, timeout=self.timeout, max_retries=self.max_retries
            )
        return self._settings

    async def request(self, content: str, *, action: str | None = None, **params: Any) -> Any:
        """One JSON API call, retried after transient failures; returns parsed data or raises.

        Only for read-only calls: every failure that may be transient is retried.
        """
        settings = await self.get_settings()
        form = build_form(settings.token, content, action=action, params=params)
        attempt = 0
        while True:
            try:
                return await self._post_once(settings, form, content=content, action=action)
            except RedcapError as err:
                if not err.retryable or attempt >= settings.max_retries:
                    raise
                delay = settings.retry_wait * (2**attempt)
                attempt += 1
                self.log.warning(
                    "REDCap %s failed (%s); retry %d/%d in %.1fs",
                    content,
                    err,
                    attempt,
                    settings.max_retries,
                    delay,
                )
                await self._sleep(delay)

    async def _post_once(
        self, settings: RedcapSettings, form: dict[str, str], *, content: str, action: str | None
    ) -> Any:
        delay = _throttle(settings).reserve()
        if delay > 0:
            self.log.info(
                "Throttled for %.2f s to stay under %d requests a minute", delay, settings.requests_per_minute
            )
            await self._sleep(delay)
        try:
            async with httpx.AsyncClient(
                verify=settings.verify,
                timeout=settings.timeout,
                proxy=_proxy(settings),
                follow_redirects=False,
            ) as client:
                response = await client.post(settings.url, data=form)
        except httpx.ConnectError as err:
            # httpx reports a failed TLS handshake as a ConnectError too.
            tls = _ssl_cause(err)
            hint = f" TLS failure: {tls}. {tls_hint(str(tls))}" if tls else ""
            raise RedcapConnectionError(
                f"Could not connect to REDCap at {settings.url}: {type(err).__name__}.{hint}",
                may_have_reached_server=False,
            ) from None
        except httpx.HTTPError as err:
            raise RedcapConnectionError(
                f"No complete response from REDCap at {settings.url} ({content}): {type(err).__name__}"
            ) from None
        raw = RawResponse(
            status_code=response.status_code,
            text=response.text,
            content_type=response.headers.get("content-type", ""),
            location=response.headers.get("location"),
        )
        return classify_response(raw, content=content, action=action)

    async def export_records(
        self,
        records: Sequence[str] | None = None,
        fields: Sequence[str] | None = None,
        events: Sequence[str] | None = None,
        export_data_access_groups: bool = False,
    ) -> list[dict[str, Any]]:
        """Export Records as flat JSON rows (raw values), at most 500 record ids per request."""
        ids = list(records) if records else []
        batches: list[list[str] | None] = [
            ids[i : i + DEFAULT_EXPORT_BATCH] for i in range(0, len(ids), DEFAULT_EXPORT_BATCH)
        ]
        rows: list[dict[str, Any]] = []
        for batch in batches or [None]:
            data = await self.request(
                "record",
                type="flat",
                rawOrLabel="raw",
                records=batch,
                fields=list(fields) if fields else None,
                events=list(events) if events else None,
                exportDataAccessGroups=True if export_data_access_groups else None,
            )
            rows.extend(expect_list(data, content="record"))
        return rows


def _ssl_cause(err: BaseException) -> ssl.SSLError | None:
    """The ``ssl.SSLError`` behind an httpx error, if a TLS handshake is what failed."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _proxy(settings: RedcapSettings) -> str | None:
    if not settings.proxies:
        return None
    return settings.proxies.get("https") or settings.proxies.get("http")
