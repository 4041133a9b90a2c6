"""Emulator features around the API: rate limiter (REDCap's 429 ban), fault injection, the admin
surface, the CLI, and a few parameter-parsing details (reference §1.0, §1.3, §2 rate limits,
§5.1 items 9 and 12; issue 4)."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from redcap_conformance import OPEN_RID, Api, DemoFacts, demo_dir

pytestmark = pytest.mark.integration

BANNED = "Your IP address (127.0.0.1) has been banned due to suspected abuse."


@pytest.fixture
def fresh_emulator(tmp_path: Path) -> Iterator[Any]:
    from airflow_provider_redcap.emulator import RedcapEmulator

    emu = RedcapEmulator(demo_dir(), db_path=tmp_path / "state.sqlite3")
    with emu.serve(host="127.0.0.1", port=0) as server:
        yield server


# --- rate limiter ---------------------------------------------------------------------------


def test_rate_limiter_bans_the_ip_permanently(tmp_path: Path) -> None:
    from airflow_provider_redcap.emulator import RedcapEmulator

    emu = RedcapEmulator(demo_dir(), db_path=tmp_path / "state.sqlite3", rate_limit_per_minute=5)
    with emu.serve(host="127.0.0.1", port=0) as server:
        api = Api(server.url, server.token)
        assert [api.call("version").status_code for _ in range(5)] == [200] * 5
        for _ in range(3):
            resp = api.call("version")
            assert resp.status_code == 429
            assert resp.text == BANNED  # plain text, not wrapped, whatever the format
        bad_token = api.call("project", token="0" * 32)
        assert (bad_token.status_code, bad_token.text) == (429, BANNED)


def test_rate_limiter_is_off_by_default(rc: Api) -> None:
    assert {rc.call("version").status_code for _ in range(30)} == {200}


# --- fault injection ------------------------------------------------------------------------


def _randomize_params(server: Any, record: str) -> dict[str, Any]:
    return {
        "token": server.token,
        "content": "record",
        "action": "randomize",
        "format": "json",
        "record": record,
        "randomization_id": OPEN_RID,
    }


def test_drop_after_commit_commits_then_cuts_the_connection(fresh_emulator: Any, demo: DemoFacts) -> None:
    from airflow_provider_redcap.emulator import Fault

    api = Api(fresh_emulator.url, fresh_emulator.token)
    api.enrol("001001", "boston", "0", "1")
    fresh_emulator.admin.add_fault(
        Fault(method="record.randomize", kind="drop_after_commit", times=1, seed=0)
    )
    # No complete response reaches the client: refused/reset, or a body cut short.
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        requests.post(fresh_emulator.url, data=_randomize_params(fresh_emulator, "001001"), timeout=30)
    used = [a for a in fresh_emulator.admin.allocations(OPEN_RID) if a["is_used_by"] == "001001"]
    assert [a["target_field"] for a in used] == [demo.stratum_rows(OPEN_RID, "0", "1", "boston")[0].target]
    retry = api.randomize("001001", OPEN_RID)
    assert (retry.status_code, retry.text) == (
        200,
        "Cannot randomize. Randomization already completed for record.",
    )


@pytest.mark.parametrize(
    ("kind", "committed"), [("error_before_commit", False), ("error_after_commit", True)]
)
@pytest.mark.parametrize("status", [500, 502])
def test_error_faults(fresh_emulator: Any, kind: str, committed: bool, status: int) -> None:
    from airflow_provider_redcap.emulator import Fault

    api = Api(fresh_emulator.url, fresh_emulator.token)
    api.enrol("001001", "boston", "0", "1")
    fresh_emulator.admin.add_fault(
        Fault(method="record.randomize", kind=kind, times=1, seed=0, status=status)
    )
    resp = api.randomize("001001", OPEN_RID)
    assert resp.status_code == status
    used = [a for a in fresh_emulator.admin.allocations(OPEN_RID) if a["is_used_by"] == "001001"]
    assert bool(used) is committed
    # ``times=1``: the next call is served normally.
    again = api.randomize("001001", OPEN_RID)
    assert again.status_code == 200
    if committed:
        assert again.text == "Cannot randomize. Randomization already completed for record."
    else:
        assert again.json()["record"] == "001001"


def test_html_200_fault(fresh_emulator: Any) -> None:
    from airflow_provider_redcap.emulator import Fault

    api = Api(fresh_emulator.url, fresh_emulator.token)
    fresh_emulator.admin.add_fault(Fault(method="*", kind="html_200", times=1, seed=0))
    resp = api.call("project")
    assert resp.status_code == 200
    assert "<html" in resp.text.lower()
    assert api.call("project").json()["project_id"] == 1742


def test_clear_faults(fresh_emulator: Any) -> None:
    from airflow_provider_redcap.emulator import Fault

    api = Api(fresh_emulator.url, fresh_emulator.token)
    fresh_emulator.admin.add_fault(Fault(method="metadata", kind="error_before_commit", seed=0))
    assert api.call("metadata").status_code == 500
    assert api.call("project").status_code == 200  # other methods untouched
    fresh_emulator.admin.clear_faults()
    assert api.call("metadata").status_code == 200


# --- admin HTTP surface ---------------------------------------------------------------------


def _admin(server: Any) -> str:
    return server.url.rsplit("/api/", 1)[0] + "/_emulator"


def test_admin_http_surface(fresh_emulator: Any, demo: DemoFacts) -> None:
    api = Api(fresh_emulator.url, fresh_emulator.token)
    base = _admin(fresh_emulator)
    api.enrol("001001", "boston", "0", "1")
    api.randomize("001001", OPEN_RID)

    allocations = requests.get(f"{base}/allocations", timeout=30).json()
    used = [a for a in allocations if a["is_used_by"]]
    assert [(a["randomization_id"], a["is_used_by"]) for a in used] == [(OPEN_RID, "001001")]
    records = requests.get(f"{base}/records", timeout=30).json()
    assert {r["record_id"] for r in records} == {"001001"}

    resp = requests.post(
        f"{base}/remove_randomization", json={"randomization_id": OPEN_RID, "record": "001001"}, timeout=30
    )
    assert resp.status_code == 200, resp.text
    assert not [a for a in requests.get(f"{base}/allocations", timeout=30).json() if a["is_used_by"]]

    fault = {"method": "record.export", "kind": "error_before_commit", "seed": 0}
    assert requests.post(f"{base}/faults", json=fault, timeout=30).status_code == 200
    assert api.call("record", type="flat").status_code == 500
    assert requests.delete(f"{base}/faults", timeout=30).status_code == 200
    assert api.call("record", type="flat").status_code == 200

    assert requests.post(f"{base}/reset", timeout=30).status_code == 200
    assert api.export(fields="record_id") == []


def test_admin_surface_is_not_part_of_the_api(fresh_emulator: Any) -> None:
    # REDCap's own endpoint is only /api/: the admin paths do not answer API-style requests.
    resp = requests.post(
        fresh_emulator.url, data={"token": fresh_emulator.token, "content": "allocations"}, timeout=30
    )
    assert resp.status_code == 400


# --- parameter details ----------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["true", "TRUE", "True", "1"])
def test_boolean_flags_accept_1_and_any_case_true(rc: Api, flag: str) -> None:
    rc.enrol("001001", "boston", "0", "1")
    rows = rc.export(fields="record_id", events="screening_arm_1", exportDataAccessGroups=flag)
    assert rows[0]["redcap_data_access_group"] == "boston"


@pytest.mark.parametrize("flag", ["false", "0", "yes", ""])
def test_boolean_flags_other_values_are_false(rc: Api, flag: str) -> None:
    rc.enrol("001001", "boston", "0", "1")
    rows = rc.export(fields="record_id", events="screening_arm_1", exportDataAccessGroups=flag)
    assert "redcap_data_access_group" not in rows[0]


def test_date_range_filters_on_the_log(rc: Api) -> None:
    rc.enrol("001001", "boston", "0", "1")
    assert [
        r["record_id"]
        for r in rc.export(fields="record_id", events="screening_arm_1", dateRangeBegin="2000-01-01 00:00:00")
    ] == ["001001"]
    assert rc.export(fields="record_id", dateRangeBegin="2999-01-01 00:00:00") == []
    assert rc.export(fields="record_id", dateRangeEnd="2000-01-01 00:00:00") == []


def test_already_randomized_is_checked_before_strata(rc: Api) -> None:
    rc.enrol("001001", "boston", "0", "1")
    assert rc.randomize("001001", OPEN_RID).status_code == 200
    # Blanking strata is allowed (the strata rule only refuses non-empty values).
    rc.import_ok(
        [{"record_id": "001001", "redcap_event_name": "baseline_arm_1", "sex": "", "age_group": ""}],
        overwriteBehavior="overwrite",
    )
    resp = rc.randomize("001001", OPEN_RID)
    assert resp.text == "Cannot randomize. Randomization already completed for record."


# --- CLI ------------------------------------------------------------------------------------


def _cli() -> list[str]:
    script = shutil.which("redcap-emulator", path=str(Path(sys.executable).parent))
    assert script, "console script redcap-emulator not installed"
    return [script]


def test_cli_prints_url_and_tokens_writes_ready_file_and_stops_on_sigterm(
    tmp_path: Path, demo: DemoFacts
) -> None:
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [*_cli(), "serve", "--project", "demo", "--port", "0", "--ready-file", str(ready)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        info: dict[str, Any] = {}
        while time.monotonic() < deadline and not info:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                info = json.loads(ready.read_text())
            time.sleep(0.05)
        assert set(info) >= {"url", "admin_url", "tokens", "pid"}
        assert info["url"].startswith("http://127.0.0.1:")
        assert info["url"].endswith("/api/")
        assert info["tokens"] == demo.tokens
        resp = requests.post(
            info["url"], data={"token": info["tokens"]["monitor"], "content": "version"}, timeout=30
        )
        assert resp.text == "15.7.6"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    lines = out.splitlines()
    assert f"API URL: {info['url']}" in lines
    for username, token in demo.tokens.items():
        assert f"token {username}: {token}" in lines
