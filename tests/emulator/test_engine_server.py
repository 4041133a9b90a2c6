"""The served emulator over real HTTP: transport, faults, rate limiter, CLI, pytest fixtures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from airflow_provider_redcap.emulator import Fault, RedcapEmulator, ServerHandle

pytestmark = pytest.mark.integration

CLASSIC = Path(__file__).parent / "projects" / "classic"
ADMIN = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA01"
NOT_IMPLEMENTED = (
    '<?xml version="1.0" encoding="UTF-8" ?>'
    "<hash><error>The requested method is not implemented.</error></hash>"
)


@pytest.fixture
def server(emu: RedcapEmulator) -> Iterator[ServerHandle]:
    with emu.serve() as handle:
        yield handle


def post(server: ServerHandle, **params: str) -> requests.Response:
    return requests.post(server.url, data={"token": ADMIN, **params}, timeout=10)


def test_only_post_to_api(server: ServerHandle) -> None:
    for resp in (
        requests.get(server.url, timeout=5),
        requests.put(server.url, timeout=5),
        requests.post(f"{server.base_url}/index.php", timeout=5),
    ):
        assert (resp.status_code, resp.text) == (501, NOT_IMPLEMENTED)
        assert resp.headers["content-type"] == "text/xml; charset=utf-8"


def test_api_without_slash_redirects_like_apache(server: ServerHandle) -> None:
    resp = requests.post(server.url.rstrip("/"), data={"token": ADMIN, "content": "version"}, timeout=5)
    # requests follows the 301 with a GET, which REDCap answers with its 501.
    assert [r.status_code for r in resp.history] == [301]
    assert (resp.status_code, resp.text) == (501, NOT_IMPLEMENTED)


def test_default_format_is_xml_and_return_format_falls_back(server: ServerHandle) -> None:
    resp = requests.post(server.url, data={"token": "short", "content": "record"}, timeout=5)
    assert resp.status_code == 403
    assert resp.headers["content-type"] == "text/xml; charset=utf-8"
    resp = requests.post(server.url, data={"token": "x", "content": "record", "format": "csv"}, timeout=5)
    assert resp.text == "ERROR: You do not have permissions to use the API"
    resp = requests.post(server.url, data={"token": "x", "format": "csv", "returnFormat": "json"}, timeout=5)
    assert resp.json() == {"error": "You do not have permissions to use the API"}


def test_multipart_is_accepted(server: ServerHandle) -> None:
    resp = requests.post(server.url, files={"token": (None, ADMIN), "content": (None, "version")}, timeout=5)
    assert (resp.status_code, resp.text) == (200, "15.7.6")


def test_drop_after_commit_commits_and_cuts_the_response(server: ServerHandle) -> None:
    server.admin.add_fault(Fault("record.randomize", "drop_after_commit", times=1))
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        post(server, content="record", action="randomize", record="1", randomization_id="7311", format="json")
    used = [a["is_used_by"] for a in server.admin.allocations(7311) if a["is_used_by"]]
    assert used == ["1"]
    retry = post(
        server, content="record", action="randomize", record="1", randomization_id="7311", format="json"
    )
    assert retry.text == "Cannot randomize. Randomization already completed for record."


def test_error_faults(server: ServerHandle) -> None:
    server.admin.add_fault(Fault("record.randomize", "error_before_commit", times=1, status=502))
    resp = post(
        server, content="record", action="randomize", record="1", randomization_id="7311", format="json"
    )
    assert resp.status_code == 502
    assert not [a for a in server.admin.allocations(7311) if a["is_used_by"]]
    server.admin.add_fault(Fault("record.randomize", "error_after_commit", times=1))
    resp = post(
        server, content="record", action="randomize", record="1", randomization_id="7311", format="json"
    )
    assert (resp.status_code, resp.json()) == (
        500,
        {"error": "The server encountered an error processing your request."},
    )
    assert [a["is_used_by"] for a in server.admin.allocations(7311) if a["is_used_by"]] == ["1"]
    server.admin.add_fault(Fault("*", "html_200", times=1))
    resp = post(server, content="version")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert post(server, content="version").text == "15.7.6"


def test_delay_fault_answers_late(server: ServerHandle) -> None:
    server.admin.add_fault(Fault("version", "delay", times=1, seconds=0.5))
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(server.url, data={"token": ADMIN, "content": "version"}, timeout=0.1)
    # The fault fired once; the next request is answered normally.
    assert post(server, content="version").text == "15.7.6"


def test_fault_probability_is_seeded() -> None:
    def pattern() -> list[bool]:
        fault = Fault("metadata", "delay", probability=0.5, seed=42, seconds=0)
        from airflow_provider_redcap.emulator.faults import FaultSet

        faults = FaultSet()
        faults.add(fault)
        return [bool(faults.draw("metadata")) for _ in range(20)]

    assert pattern() == pattern()
    assert 0 < sum(pattern()) < 20


def test_admin_http_routes(server: ServerHandle) -> None:
    post(server, content="record", action="randomize", record="1", randomization_id="7311", format="json")
    rows = requests.get(f"{server.admin_url}allocations", params={"randomization_id": 7311}, timeout=5).json()
    assert [r["is_used_by"] for r in rows if r["is_used_by"]] == ["1"]
    resp = requests.post(
        f"{server.admin_url}remove_randomization", json={"randomization_id": 7311, "record": "1"}, timeout=5
    )
    assert resp.status_code == 200
    resp = requests.post(
        f"{server.admin_url}faults", json={"method": "version", "kind": "html_200"}, timeout=5
    )
    assert resp.json()["faults"][0]["kind"] == "html_200"
    requests.delete(f"{server.admin_url}faults", timeout=5)
    assert requests.post(f"{server.admin_url}reset", timeout=5).json() == {"reset": True}
    assert len(requests.get(f"{server.admin_url}records", timeout=5).json()) == 3


def test_rate_limiter_bans_the_ip(tmp_path: Path) -> None:
    emu = RedcapEmulator(CLASSIC, db_path=tmp_path / "rl.db", rate_limit_per_minute=5)
    try:
        with emu.serve() as server:
            statuses = [post(server, content="version").status_code for _ in range(7)]
            assert statuses == [200] * 5 + [429] * 2
            resp = post(server, content="version", format="json")
            assert resp.text == "Your IP address (127.0.0.1) has been banned due to suspected abuse."
    finally:
        emu.close()


def test_concurrent_randomize_never_shares_a_row(server: ServerHandle) -> None:
    records = [f"c{i}" for i in range(40)]
    rows = [{"record_id": r, "sex": str(i % 2), "smoker": "0"} for i, r in enumerate(records)]
    post(server, content="record", format="json", data=json.dumps(rows))

    def go(record: str) -> str:
        return post(
            server,
            content="record",
            action="randomize",
            record=record,
            randomization_id="7311",
            format="json",
        ).text

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(go, records))
    used = [a["is_used_by"] for a in server.admin.allocations(7311) if a["is_used_by"]]
    assert len(used) == len(set(used))


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_serves_until_stopped(tmp_path: Path, stop: signal.Signals) -> None:
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_redcap.emulator.cli",
            "serve",
            "--project",
            str(CLASSIC),
            "--db",
            str(tmp_path / "cli.db"),
            "--ready-file",
            str(ready),
            "--fault",
            "metadata:html_200:1:3",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        assert info["pid"] == proc.pid
        assert info["tokens"]["admin"] == ADMIN
        resp = requests.post(info["url"], data={"token": ADMIN, "content": "version"}, timeout=5)
        assert resp.text == "15.7.6"
        resp = requests.post(info["url"], data={"token": ADMIN, "content": "metadata"}, timeout=5)
        assert resp.headers["content-type"].startswith("text/html")
        os.kill(proc.pid, stop)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert out.splitlines()[0] == f"API URL: {info['url']}"
        assert f"token admin: {ADMIN}" in out
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture
def redcap_project_dir() -> Path:
    return CLASSIC


def test_pytest_plugin_fixtures(redcap_connection: ServerHandle) -> None:
    conn = json.loads(os.environ["AIRFLOW_CONN_REDCAP_DEFAULT"])
    assert conn == {"conn_type": "redcap", "host": redcap_connection.url, "password": ADMIN}
    assert requests.post(conn["host"], data={"token": conn["password"], "content": "version"}, timeout=5).ok
