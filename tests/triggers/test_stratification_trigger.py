"""RedcapStratificationTrigger and RedcapAsyncHook, with httpx answered by an in-memory REDCap."""

from __future__ import annotations

import functools
import importlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from common.fake_redcap import CONNECTION_JSON, URL, FakeRedcap

from airflow_provider_redcap.exceptions import RedcapAuthError, RedcapConnectionError
from airflow_provider_redcap.hooks import redcap_async
from airflow_provider_redcap.hooks.redcap_async import RedcapAsyncHook
from airflow_provider_redcap.triggers.stratification import RedcapStratificationTrigger

SPEC = {
    "record_id_field": "record_id",
    "strata": [
        {"field": "sex", "event": "baseline_arm_1"},
        {"field": "age_group", "event": "baseline_arm_1"},
    ],
    "group_by_dag": True,
    "longitudinal": True,
}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRedcap:
    """An in-memory REDCap answering the async hook's httpx requests."""
    monkeypatch.setenv("AIRFLOW_CONN_REDCAP_DEFAULT", CONNECTION_JSON)
    state = FakeRedcap()

    def handler(request: httpx.Request) -> httpx.Response:
        assert str(request.url) == URL
        status, body, content_type = state.respond(request.content.decode())
        return httpx.Response(status, text=body, headers={"Content-Type": content_type})

    transport = httpx.MockTransport(handler)
    monkeypatch.setattr(
        redcap_async.httpx, "AsyncClient", functools.partial(httpx.AsyncClient, transport=transport)
    )
    return state


def trigger(records: list[str], **kwargs: Any) -> RedcapStratificationTrigger:
    return RedcapStratificationTrigger(
        redcap_conn_id="redcap_default",
        records=records,
        spec=SPEC,
        poke_interval=0,
        randomization_id=48213,
        **kwargs,
    )


def test_serialize_round_trips_through_json() -> None:
    classpath, kwargs = trigger(["001001"]).serialize()
    module, _, name = classpath.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    rebuilt = cls(**json.loads(json.dumps(kwargs)))
    assert rebuilt.serialize() == (classpath, kwargs)


async def test_fires_once_every_record_is_complete(fake: FakeRedcap) -> None:
    fake.add("001001", "baseline_arm_1", sex="0", age_group="1")
    fake.dags["001001"] = "boston"
    fake.add("001002", "baseline_arm_1", sex="1")
    exports = 0
    original = fake.respond

    def filling_in(body: str) -> tuple[int, str, str]:
        nonlocal exports
        answer = original(body)
        if fake.calls[-1]["content"] == "record":
            exports += 1
            if exports == 2:  # the site completes record 001002 after the second poll
                fake.add("001002", "baseline_arm_1", age_group="3")
                fake.dags["001002"] = "denver"
        return answer

    fake.respond = filling_in  # type: ignore[method-assign]

    event = await anext(trigger(["001001", "001002"]).run())

    assert event.payload == {
        "status": "success",
        "result": {
            "randomization_id": 48213,
            "complete": ["001001", "001002"],
            "waiting": {},
            "not_found": [],
        },
    }
    assert exports == 3
    call = fake.calls[-1]
    assert call["fields"] == ["record_id", "sex", "age_group"]
    assert "events" not in call  # every event: the strata are picked from the rows
    assert call["exportDataAccessGroups"] == "true"


async def test_transient_errors_keep_polling(fake: FakeRedcap) -> None:
    fake.add_participant("001001")
    # First poll: 503, and 503 again on the hook's one retry. Second poll: 503, then the retry answers.
    fake.outages["record"] = 3
    event = await anext(trigger(["001001"]).run())
    assert event.payload["status"] == "success"
    assert len(fake.calls_of("record")) == 4


async def test_permanent_error_ends_with_an_error_event(fake: FakeRedcap) -> None:
    fake.forbidden = {"record"}
    event = await anext(trigger(["001001"]).run())
    assert event.payload["status"] == "error"
    assert "permissions to use the API" in event.payload["message"]


async def test_async_hook_classifies_errors_like_the_sync_hook(fake: FakeRedcap) -> None:
    fake.forbidden = {"record"}
    with pytest.raises(RedcapAuthError):
        await RedcapAsyncHook().export_records(records=["1"])


async def test_async_hook_turns_transport_failures_into_connection_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_REDCAP_DEFAULT", CONNECTION_JSON)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    transport = httpx.MockTransport(refuse)
    monkeypatch.setattr(
        redcap_async.httpx, "AsyncClient", functools.partial(httpx.AsyncClient, transport=transport)
    )
    with pytest.raises(RedcapConnectionError) as info:
        await RedcapAsyncHook().export_records(records=["1"])
    assert info.value.may_have_reached_server is False
    assert "0123456789ABCDEF" not in str(info.value)


async def test_async_hook_names_a_plain_http_port_behind_an_https_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A real TLS handshake against a loopback server that speaks plain http only.
    class Quiet(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    conn = {**json.loads(CONNECTION_JSON), "host": f"https://127.0.0.1:{server.server_address[1]}/api/"}
    monkeypatch.setenv("AIRFLOW_CONN_REDCAP_DEFAULT", json.dumps(conn))
    try:
        with pytest.raises(RedcapConnectionError) as info:
            await RedcapAsyncHook(max_retries=0).export_records(records=["1"])
    finally:
        server.shutdown()
        server.server_close()
    assert "the server does not answer https on this port" in str(info.value)
    assert "check the URL's scheme and port" in str(info.value)


async def test_record_not_found_keeps_the_trigger_waiting(fake: FakeRedcap) -> None:
    fake.add("001001", "baseline_arm_1", sex="0", age_group="1")
    fake.dags["001001"] = "boston"
    fake.add("001002", "screening_arm_1", age="40")  # exists, no baseline data yet
    event = await anext(trigger(["001001", "001002", "999999"], end_time=0.0).run())
    assert event.payload["status"] == "timeout"
    assert event.payload["result"]["waiting"] == {
        "001002": ["sex (baseline_arm_1)", "age_group (baseline_arm_1)", "data access group"]
    }
    assert event.payload["result"]["not_found"] == ["999999"]
    assert "not found: 999999" in event.payload["message"]
    # One export per poll tells the waiting record (screening data only) from the one not found.
    assert [c.get("events") for c in fake.calls_of("record")] == [None]


async def test_gives_up_at_end_time(fake: FakeRedcap) -> None:
    fake.add("001001", "baseline_arm_1", sex="1")
    event = await anext(trigger(["001001"], end_time=0.0).run())
    assert event.payload["status"] == "timeout"
    assert "001001 (age_group (baseline_arm_1)" in event.payload["message"]
    assert event.payload["result"]["waiting"] == {
        "001001": ["age_group (baseline_arm_1)", "data access group"]
    }
    assert len(fake.calls_of("record")) == 1


async def test_async_hooks_share_one_throttle_per_server(
    fake: FakeRedcap, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every trigger runs in the one triggerer process: together they must stay under REDCap's IP ban.
    connection = json.loads(CONNECTION_JSON)
    connection["extra"]["requests_per_minute"] = 2
    monkeypatch.setenv("AIRFLOW_CONN_REDCAP_DEFAULT", json.dumps(connection))
    waits: list[float] = []

    async def record_wait(seconds: float) -> None:
        waits.append(seconds)

    for _ in range(3):  # three triggers, one poll each, within a minute
        hook = RedcapAsyncHook()
        hook._sleep = record_wait
        await hook.export_records(records=["001001"])

    assert len(fake.calls_of("record")) == 3
    assert len(waits) == 1
    assert 50 < waits[0] <= 60  # the third poll waits until the first leaves the 60-second window


async def test_stratum_the_token_cannot_export_ends_with_an_error_event(fake: FakeRedcap) -> None:
    fake.add("001001", "baseline_arm_1", sex="1", age_group="2")
    fake.unexportable = {"age_group"}
    event = await anext(trigger(["001001"], end_time=0.0).run())
    assert event.payload["status"] == "error"
    assert "age_group" in event.payload["message"]


async def test_async_export_sends_at_most_500_record_ids_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    # PHP's max_input_vars (often 1000) refuses a POST with more variables; the sync hook splits too.
    monkeypatch.setenv("AIRFLOW_CONN_REDCAP_DEFAULT", CONNECTION_JSON)
    sent: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        form = parse_qs(request.content.decode())
        ids = [value for key, values in form.items() if key.startswith("records[") for value in values]
        sent.append(ids)
        rows = [{"record_id": record} for record in ids]
        return httpx.Response(200, text=json.dumps(rows), headers={"Content-Type": "application/json"})

    monkeypatch.setattr(
        redcap_async.httpx,
        "AsyncClient",
        functools.partial(httpx.AsyncClient, transport=httpx.MockTransport(handler)),
    )
    records = [f"{n:05d}" for n in range(1201)]

    rows = await RedcapAsyncHook().export_records(records=records, fields=["record_id"])

    assert [len(batch) for batch in sent] == [500, 500, 201]
    assert [row["record_id"] for row in rows] == records
