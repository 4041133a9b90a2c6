"""Print RedcapHook's import and export throughput and the client's peak memory.

A script, not a test. It serves the demo project with ``redcap-emulator`` in a separate process (so
the figures are the client's alone), imports N synthetic participants (two event rows each) through
``RedcapHook.import_records`` in batches, then reads them back with the streaming
``iter_records`` and with ``export_records``. Peak memory is Python's traced allocation peak in this
process (``tracemalloc``). Loopback only; bounded by ``--records``.

    .venv/bin/python benchmarks/hook_import_export.py [--records 3000] [--batch-size 500]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from airflow_provider_redcap.hooks.redcap import RedcapHook

SITES = ("boston", "denver", "seattle")


def participants(count: int) -> Iterator[dict[str, str]]:
    for n in range(count):
        record = f"9{n:06d}"
        site = SITES[n % len(SITES)]
        yield {
            "record_id": record,
            "redcap_event_name": "screening_arm_1",
            "redcap_data_access_group": site,
            "screen_date": "2026-11-02",
            "age": str(18 + n % 80),
            "eligible": "1",
        }
        yield {
            "record_id": record,
            "redcap_event_name": "baseline_arm_1",
            "redcap_data_access_group": site,
            "sex": str(n % 2),
            "age_group": str(1 + n % 3),
            "weight_kg": f"{55 + n % 50}.5",
        }


def measure(label: str, work: Callable[[], int], unit: str) -> None:
    tracemalloc.start()
    started = time.perf_counter()
    done = work()
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rate = f"{done / seconds:,.0f} {unit}/s"
    print(f"{label}: {done} {unit} in {seconds:.2f} s, {rate}, peak {peak / 2**20:.1f} MiB")


def serve_demo(folder: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    ready = folder / "ready.json"
    cli = Path(sys.executable).with_name("redcap-emulator")
    process = subprocess.Popen(
        [
            str(cli),
            "serve",
            "--project",
            "demo",
            "--db",
            str(folder / "state.db"),
            "--port",
            "0",
            "--ready-file",
            str(ready),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit("the emulator did not start")
        time.sleep(0.1)
    return process, json.loads(ready.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        process, ready = serve_demo(Path(tmp))
        try:
            os.environ["AIRFLOW_CONN_REDCAP_BENCH"] = json.dumps(
                {"conn_type": "redcap", "host": ready["url"], "password": ready["tokens"]["data_manager"]}
            )
            hook = RedcapHook("redcap_bench", requests_per_minute=599)
            print(f"{args.records} participants x 2 event rows, batches of {args.batch_size} records")
            measure(
                "import_records",
                lambda: hook.import_records(participants(args.records), batch_size=args.batch_size).count,
                "records",
            )
            measure(
                "iter_records (streaming)",
                lambda: sum(1 for _ in hook.iter_records(batch_size=args.batch_size)),
                "rows",
            )
            measure("export_records (one list)", lambda: len(hook.export_records()), "rows")
        finally:
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
