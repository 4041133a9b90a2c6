"""Kill the emulator process in the middle of a randomize storm, restart it on the same database,
and check that nothing acknowledged was lost and no allocation is half-written (issue 4)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from redcap_conformance import (
    CONCEALED_RID,
    OPEN_RID,
    Api,
    DemoFacts,
    check_allocation_state,
    storm_import_rows,
    storm_participants,
)

pytestmark = pytest.mark.integration

THREADS = 8
ALREADY = "Cannot randomize. Randomization already completed for record."
EXHAUSTED = "Cannot randomize. No allocations available."
READY_TIMEOUT = 60.0


def _command() -> list[str]:
    script = shutil.which("redcap-emulator", path=str(Path(sys.executable).parent))
    if script:
        return [script]
    return [
        sys.executable,
        "-c",
        "import sys; from airflow_provider_redcap.emulator.cli import main; sys.argv[0] = 'redcap-emulator'; "
        "sys.exit(main())",
    ]


class ServerProcess:
    """``redcap-emulator serve`` in a subprocess, reporting readiness through ``--ready-file``."""

    def __init__(self, db: Path, ready: Path) -> None:
        self.ready = ready
        ready.unlink(missing_ok=True)
        args = ["serve", "--project", "demo", "--db", str(db), "--port", "0", "--ready-file", str(ready)]
        self.proc = subprocess.Popen(
            [*_command(), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.info = self._wait_ready()
        self.url: str = self.info["url"]
        self.tokens: dict[str, str] = self.info["tokens"]
        self.admin = self.url.rsplit("/api/", 1)[0] + "/_emulator"

    def _wait_ready(self) -> dict[str, Any]:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"emulator exited with {self.proc.returncode}: {err}")
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                info = json.loads(self.ready.read_text())
                if info.get("url"):
                    return info
            time.sleep(0.05)
        self.kill()
        raise AssertionError("emulator did not become ready")

    def kill(self) -> None:
        # The server runs in its own session: SIGKILL the whole group it may have spawned.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture
def processes() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for proc in started:
        proc.kill()


def _state(server: ServerProcess, api: Api) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    resp = requests.get(server.admin + "/allocations", timeout=60)
    assert resp.status_code == 200, resp.text
    exports = api.export(fields="record_id,rand_arm,kit_number", events="randomization_arm_1")
    return resp.json(), exports


def _check(
    demo: DemoFacts,
    server: ServerProcess,
    api: Api,
    participants: dict[str, tuple[str, str, str]],
    acknowledged: dict[tuple[str, int], str],
) -> None:
    allocations, exports = _state(server, api)
    for rid, field in ((OPEN_RID, "rand_arm"), (CONCEALED_RID, "kit_number")):
        stored = {row["record_id"]: row[field] for row in exports}
        used = check_allocation_state(demo, rid, allocations, stored, participants)
        for (record, model), value in acknowledged.items():
            if model == rid:
                assert used.get(record) == value, f"acknowledged allocation of {record} in {rid} lost"


def test_kill_during_randomize_storm_loses_nothing(
    tmp_path: Path, demo: DemoFacts, processes: list[ServerProcess]
) -> None:
    db = tmp_path / "durable.sqlite3"
    first = ServerProcess(db, tmp_path / "ready1.json")
    processes.append(first)
    participants = storm_participants()
    api = Api(first.url, first.tokens["data_manager"])
    api.import_ok(storm_import_rows(participants))

    calls = [(record, rid) for record in participants for rid in (OPEN_RID, CONCEALED_RID)]
    random.Random(11).shuffle(calls)
    kill_after = len(calls) // 3
    answered = 0
    lock = threading.Lock()
    half_way = threading.Event()
    acknowledged: dict[tuple[str, int], str] = {}
    local = threading.local()

    def randomize(url: str, token: str, call: tuple[str, int]) -> str | None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        record, rid = call
        try:
            resp = local.session.post(
                url,
                data={
                    "token": token,
                    "content": "record",
                    "action": "randomize",
                    "format": "json",
                    "record": record,
                    "randomization_id": rid,
                },
                timeout=60,
            )
        except requests.RequestException:
            return None  # the kill: the outcome of this call is unknown to the client
        return resp.text if resp.status_code == 200 else None

    def storm_call(call: tuple[str, int]) -> None:
        nonlocal answered
        text = randomize(first.url, first.tokens["data_manager"], call)
        with lock:
            if text is not None and text not in (ALREADY, EXHAUSTED):
                acknowledged[call] = json.loads(text)["target_field"]
            answered += 1
            if answered >= kill_after:
                half_way.set()

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        futures = [pool.submit(storm_call, call) for call in calls]
        half_way.wait()
        first.kill()
        for future in futures:
            future.result()
    assert acknowledged, "no randomization was acknowledged before the kill"
    assert len(acknowledged) < len(calls), "the kill came after the storm"

    second = ServerProcess(db, tmp_path / "ready2.json")
    processes.append(second)
    api = Api(second.url, second.tokens["data_manager"])
    _check(demo, second, api, participants, acknowledged)

    # The restarted server carries on: the rest of the storm completes consistently.
    for call in calls:
        if call in acknowledged:
            continue
        text = randomize(second.url, second.tokens["data_manager"], call)
        assert text is not None
        if text not in (ALREADY, EXHAUSTED):
            acknowledged[call] = json.loads(text)["target_field"]
    _check(demo, second, api, participants, acknowledged)
    assert second.stop() == 0
