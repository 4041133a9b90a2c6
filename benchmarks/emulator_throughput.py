"""Print the REDCap emulator's randomize and export throughput (requests per second).

A script, not a test: it builds a throw-away project with a large allocation table, serves it on a
loopback port, imports the participants, then times randomize calls (from several threads) and
record exports with ``requests``. Bounded in count and in time.

    .venv/bin/python benchmarks/emulator_throughput.py [--records 600] [--threads 8] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from airflow_provider_redcap.emulator import RedcapEmulator

TOKEN = "BENCH000000000000000000000000001"
METADATA = """field_name,form_name,field_type,field_label,select_choices_or_calculations
record_id,enrolment,text,Record ID,
sex,enrolment,radio,Sex,"0, Female | 1, Male"
age_group,enrolment,dropdown,Age group,"1, 18-39 | 2, 40-64 | 3, 65+"
arm,allocation,radio,Arm,"1, A | 2, B | 3, C"
"""


def build_project(folder: Path, records: int) -> None:
    project = {
        "project_id": 4242,
        "project_title": "Emulator throughput benchmark",
        "in_production": 1,
        "users": [
            {
                "username": "bench",
                "token": TOKEN,
                "rights": {"api_export": 1, "api_import": 1, "random_perform": 1},
            }
        ],
        "randomizations": [
            {
                "randomization_id": 90210,
                "target_field": "arm",
                "strata": [{"field": "sex"}, {"field": "age_group"}],
                "allocation_tables": {"production": "alloc.csv"},
            }
        ],
    }
    (folder / "project.json").write_text(json.dumps(project))
    (folder / "metadata.csv").write_text(METADATA)
    lines = ["redcap_randomization_group,sex,age_group"]
    # Enough rows that every participant gets one: each stratum holds records/6 + spare rows.
    per_stratum = records // 6 + 10
    for i in range(per_stratum):
        for sex in "01":
            for age in "123":
                lines.append(f"{(i % 3) + 1},{sex},{age}")
    (folder / "alloc.csv").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=600)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0, help="time budget per phase")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build_project(folder, args.records)
        emu = RedcapEmulator(folder, db_path=folder / "bench.db")
        try:
            with emu.serve(host="127.0.0.1", port=0) as server:
                session = requests.Session()
                ids = [str(i) for i in range(1, args.records + 1)]
                rows = [
                    {"record_id": r, "sex": str(i % 2), "age_group": str(i % 3 + 1)}
                    for i, r in enumerate(ids)
                ]
                session.post(
                    server.url,
                    data={"token": TOKEN, "content": "record", "format": "json", "data": json.dumps(rows)},
                    timeout=60,
                ).raise_for_status()

                local = threading.local()

                def randomize(record: str) -> int:
                    # One keep-alive session per thread, as a client pool would hold.
                    if not hasattr(local, "session"):
                        local.session = requests.Session()
                    resp = local.session.post(
                        server.url,
                        timeout=30,
                        data={
                            "token": TOKEN,
                            "content": "record",
                            "action": "randomize",
                            "record": record,
                            "randomization_id": "90210",
                            "format": "json",
                            "returnAlt": "true",
                        },
                    )
                    return resp.status_code

                deadline = time.monotonic() + args.seconds
                done = 0
                start = time.perf_counter()
                with ThreadPoolExecutor(max_workers=args.threads) as pool:
                    for chunk_start in range(0, len(ids), args.threads * 10):
                        if time.monotonic() > deadline:
                            break
                        chunk = ids[chunk_start : chunk_start + args.threads * 10]
                        statuses = list(pool.map(randomize, chunk))
                        assert all(s == 200 for s in statuses), statuses
                        done += len(chunk)
                elapsed = time.perf_counter() - start
                used = [a for a in emu.admin.allocations() if a["is_used_by"]]
                assert len(used) == len({a["is_used_by"] for a in used}) == done
                print(f"randomize: {done} calls, {args.threads} threads, {done / elapsed:.0f} requests/s")

                exports = 0
                deadline = time.monotonic() + args.seconds
                start = time.perf_counter()
                while exports < 200 and time.monotonic() < deadline:
                    resp = session.post(
                        server.url,
                        timeout=30,
                        data={
                            "token": TOKEN,
                            "content": "record",
                            "format": "json",
                            "fields[0]": "record_id",
                            "fields[1]": "sex",
                            "fields[2]": "arm",
                            "records": ",".join(ids[:100]),
                        },
                    )
                    resp.raise_for_status()
                    exports += 1
                elapsed = time.perf_counter() - start
                print(f"export (100 records, 3 fields): {exports} calls, {exports / elapsed:.0f} requests/s")

                full = 0
                start = time.perf_counter()
                while full < 20 and time.monotonic() < deadline + args.seconds:
                    session.post(
                        server.url, timeout=60, data={"token": TOKEN, "content": "record", "format": "json"}
                    ).raise_for_status()
                    full += 1
                elapsed = time.perf_counter() - start
                print(f"export (all {args.records} records): {full} calls, {full / elapsed:.1f} requests/s")
        finally:
            emu.close()


if __name__ == "__main__":
    main()
