"""Concurrent randomize storm against a served emulator (issue 4, "Done when").

Eight threads fire a few hundred randomize calls across all 18 strata of both models, each
record asked twice for the open model so that duplicate requests race each other. Afterwards
every allocation row is used at most once, every stratum is consumed in upload order, and each
record's stored target equals its row.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
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
    demo_dir,
    storm_import_rows,
    storm_participants,
)

pytestmark = pytest.mark.integration

THREADS = 8
ALREADY = "Cannot randomize. Randomization already completed for record."
EXHAUSTED = "Cannot randomize. No allocations available."


@pytest.fixture
def storm_server(tmp_path: Path) -> Iterator[Any]:
    from airflow_provider_redcap.emulator import RedcapEmulator

    emu = RedcapEmulator(demo_dir(), db_path=tmp_path / "storm.sqlite3")
    with emu.serve(host="127.0.0.1", port=0) as server:
        yield server


def test_randomize_storm(storm_server: Any, demo: DemoFacts) -> None:
    participants = storm_participants()
    api = Api(storm_server.url, storm_server.token)
    api.import_ok(storm_import_rows(participants))

    calls = [(record, OPEN_RID) for record in participants] * 2 + [
        (record, CONCEALED_RID) for record in participants
    ]
    random.Random(7).shuffle(calls)
    assert len(calls) >= 300

    local = threading.local()

    def randomize(call: tuple[str, int]) -> tuple[str, int, int, str]:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        record, rid = call
        resp = local.session.post(
            storm_server.url,
            data={
                "token": storm_server.token,
                "content": "record",
                "action": "randomize",
                "format": "json",
                "record": record,
                "randomization_id": rid,
                "returnAlt": "true",
            },
            timeout=120,
        )
        return record, rid, resp.status_code, resp.text

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(randomize, calls))

    assert {status for *_, status, _ in results} == {200}
    successes: dict[tuple[str, int], str] = {}
    for record, rid, _, text in results:
        if text in (ALREADY, EXHAUSTED):
            continue
        body = json.loads(text)
        assert (body["record"], body["randomization_id"]) == (record, rid)
        assert (record, rid) not in successes, f"{record} randomized twice in {rid}"
        successes[(record, rid)] = body["target_field"]

    exports = api.export(fields="record_id,rand_arm,kit_number", events="randomization_arm_1")
    allocations = storm_server.admin.allocations()
    for rid, field in ((OPEN_RID, "rand_arm"), (CONCEALED_RID, "kit_number")):
        stored = {row["record_id"]: row[field] for row in exports}
        used = check_allocation_state(demo, rid, allocations, stored, participants)
        assert used == {rec: value for (rec, r), value in successes.items() if r == rid}
        # Each stratum hands out min(participants, rows) allocations, no more, no fewer.
        asked = Counter(participants.values())
        got = Counter(participants[rec] for rec in used)
        for cell, n in asked.items():
            sex, age, dag = cell
            assert got[cell] == min(n, len(demo.stratum_rows(rid, sex, age, dag))), cell
