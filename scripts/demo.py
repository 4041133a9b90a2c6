"""``make demo``: run the first example DAG end to end against a fresh local REDCap emulator.

1. Starts ``redcap-emulator serve --project demo`` on a free loopback port with a new database, so
   every run starts from the demo project's initial state.
2. Prepares a project-local Airflow home (``.demo/airflow``: SQLite, no example DAGs, the DAGs
   folder pointing at ``example_dags/``) and sets ``AIRFLOW_CONN_REDCAP_DEFAULT`` to the emulator.
3. Runs ``airflow dags test redcap_import_and_randomize`` (full output in ``.demo/dag_test.log``)
   while playing site staff: a few seconds after the screening file is imported, it fills in some
   of the missing strata through the API, so those records are released by the sensor.
4. Prints the outcome per participant and checks every allocation against the allocation table:
   each record must hold the lowest unused row of its stratum (sex, age group, site) in upload
   order, taking records in the order REDCap randomized them.

Exits non-zero when the DAG run failed or any check failed. The emulator is stopped in every case.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, TextIO

import requests

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / ".demo"
AIRFLOW_HOME = DEMO_DIR / "airflow"
DAG_TEST_LOG = DEMO_DIR / "dag_test.log"
EMULATOR_LOG = DEMO_DIR / "emulator.log"
BIN = Path(sys.executable).parent
SCREENING_FILE = ROOT / "example_dags" / "data" / "screening.csv"

DAG_ID = "redcap_import_and_randomize"
# Short waits so the demo ends in about a minute; production runs keep the DAG's defaults.
RUN_CONF = {"poke_interval": 2, "strata_timeout": 30}
RANDOMIZATION_ID = 48213
TARGET_FIELD = "rand_arm"
TARGET_EVENT = "randomization_arm_1"
STRATA_EVENT = "baseline_arm_1"
STRATA_FIELDS = ("sex", "age_group")
SITE_COLUMN = "redcap_data_access_group"
USER = "data_manager"

# What the site staff enter while the DAG waits: only some of the blanks, so the rest stay waiting.
STAFF_DELAY_SECONDS = 3.0
STAFF_FILLS = {
    "001004": {"sex": "0"},
    "002008": {"age_group": "1"},
    "003006": {"sex": "1"},
}


class DemoError(Exception):
    """Something the demo cannot carry on from; the message says what and where to look."""


# --- the emulator -------------------------------------------------------------------------------


@contextmanager
def running_emulator(workdir: Path) -> Iterator[dict[str, Any]]:
    """Start the emulator on a fresh database and yield its ready-file info; always stop it."""
    ready_file = workdir / "ready.json"
    command = [
        str(BIN / "redcap-emulator"),
        "serve",
        "--project",
        "demo",
        "--db",
        str(workdir / "redcap.sqlite"),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--ready-file",
        str(ready_file),
    ]
    # stdout carries the users' tokens: it goes nowhere, so the demo never shows one.
    with EMULATOR_LOG.open("wb") as log:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT)
        try:
            yield _wait_until_ready(process, ready_file)
        finally:
            stop_process(process, grace=10)


def stop_process(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds: `airflow dags test` does not always stop on
    SIGTERM alone."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_until_ready(process: subprocess.Popen[bytes], ready_file: Path) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoError(f"the emulator exited with code {process.returncode}; see {EMULATOR_LOG}")
        try:
            return json.loads(ready_file.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(0.1)  # not written yet, or caught half-written
    raise DemoError(f"the emulator did not get ready within 60 s; see {EMULATOR_LOG}")


class Redcap:
    """The few REDCap API calls the demo makes itself, with plain ``requests``."""

    def __init__(self, url: str, token: str, admin_url: str) -> None:
        self.url = url
        self._token = token
        self.admin_url = admin_url.rstrip("/")
        self._session = requests.Session()

    def call(self, content: str, **params: Any) -> Any:
        data = {"token": self._token, "content": content, "format": "json", "returnFormat": "json"}
        data.update(params)
        response = self._session.post(self.url, data=data, timeout=30)
        if response.status_code != 200:
            raise DemoError(f"REDCap answered {response.status_code} to content={content}: {response.text}")
        return response.json()

    def export(self, records: list[str] | None = None, **params: Any) -> list[dict[str, str]]:
        for name, values in (("records", records), ("fields", params.pop("fields", None))):
            for i, value in enumerate(values or ()):
                params[f"{name}[{i}]"] = value
        for i, event in enumerate(params.pop("events", ())):
            params[f"events[{i}]"] = event
        return self.call("record", type="flat", rawOrLabel="raw", **params)

    def import_rows(self, rows: list[dict[str, str]]) -> None:
        self.call("record", type="flat", overwriteBehavior="normal", data=json.dumps(rows))

    def allocations(self) -> list[dict[str, Any]]:
        response = self._session.get(f"{self.admin_url}/allocations", timeout=30)
        response.raise_for_status()
        return [a for a in response.json() if int(a["randomization_id"]) == RANDOMIZATION_ID]


# --- site staff -----------------------------------------------------------------------------------


@dataclass
class SiteStaff:
    """Fills in some missing strata through the API once every participant's sensor has poked."""

    redcap: Redcap
    fills: dict[str, dict[str, str]]
    delay: float
    started: float = field(default_factory=time.monotonic)
    filled_at: float | None = None
    error: Exception | None = None
    sensors_waiting: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self.started = time.monotonic()
        threading.Thread(target=self._run, name="site-staff", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.sensors_waiting.set()

    def _run(self) -> None:
        try:
            self.sensors_waiting.wait()
            # A few pokes go by with the strata still blank, then the staff catch up.
            if self._stop.wait(self.delay):
                return
            rows = [
                {"record_id": record, "redcap_event_name": STRATA_EVENT, **values}
                for record, values in self.fills.items()
            ]
            self.redcap.import_rows(rows)
            self.filled_at = time.monotonic() - self.started
        except Exception as exc:  # reported by main(): the demo fails if the staff could not act
            self.error = exc


# --- Airflow --------------------------------------------------------------------------------------


def airflow_env(connection: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update(
        AIRFLOW_HOME=str(AIRFLOW_HOME),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "example_dags"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
        AIRFLOW_CONN_REDCAP_DEFAULT=connection,
    )
    return env


def migrate_airflow_db(env: dict[str, str]) -> None:
    """``airflow db migrate`` once per Airflow version; later runs reuse the database."""
    marker = AIRFLOW_HOME / ".migrated"
    wanted = version("apache-airflow")
    if marker.exists() and marker.read_text() == wanted and (AIRFLOW_HOME / "airflow.db").exists():
        return
    AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
    with (DEMO_DIR / "airflow_db_migrate.log").open("wb") as log:
        result = subprocess.run(
            [str(BIN / "airflow"), "db", "migrate"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    if result.returncode:
        raise DemoError(f"airflow db migrate failed; see {DEMO_DIR / 'airflow_db_migrate.log'}")
    marker.write_text(wanted)


@dataclass
class Progress:
    """Follows the ``airflow dags test`` log and keeps one short status line up to date."""

    out: TextIO
    participants: int
    states: dict[tuple[str, str], str] = field(default_factory=dict)
    _current: tuple[str, str] | None = None
    _last_line: str = ""
    _last_printed: str = ""
    _last_print: float = 0.0

    def feed(self, line: str) -> None:
        if "[DAG TEST] starting task_id=" in line:
            task_id = line.split("task_id=", 1)[1].split()[0]
            map_index = line.split("map_index=", 1)[1].split()[0] if "map_index=" in line else "-1"
            self._current = (task_id, map_index)
            self.states.setdefault(self._current, "running")
        elif "new_state=" in line and self._current:
            self.states[self._current] = line.split("new_state=", 1)[1].split()[0]

    def count(self, task_suffix: str, state: str | None = None) -> int:
        return sum(1 for (t, _), s in self.states.items() if t.endswith(task_suffix) and state in (None, s))

    @property
    def all_sensors_poked(self) -> bool:
        return self.count("wait_for_strata") >= self.participants and not self.count(
            "wait_for_strata", "running"
        )

    def show(self, elapsed: float, staff: SiteStaff) -> None:
        if not self.states:
            status = "starting Airflow's in-process task runner"
        elif not self.count("import_screening", "success"):
            status = "importing the screening file"
        else:
            if staff.filled_at:
                staff_note = f"site staff entered strata at {staff.filled_at:.0f}s"
            else:
                staff_note = "site staff at work" if self.all_sensors_poked else "sensors starting"
            status = (
                f"tasks: randomize done {self.count('randomize', 'success'):2d}"
                f"  sensors rescheduled {self.count('wait_for_strata', 'up_for_reschedule'):2d}"
                f"  sensors timed out {self.count('wait_for_strata', 'skipped'):2d}  ({staff_note})"
            )
        line = f"  {elapsed:4.0f}s  {status}"
        if self.out.isatty():
            self.out.write("\r" + line.ljust(len(self._last_line)))
            self.out.flush()
        elif line != self._last_line and time.monotonic() - self._last_print > 10:
            self.out.write(line + "\n")
            self._last_print = time.monotonic()
            self._last_printed = line
        self._last_line = line

    def done(self) -> None:
        if self.out.isatty():
            self.out.write("\n")
        elif self._last_line != self._last_printed:
            self.out.write(self._last_line + "\n")


def run_dag(env: dict[str, str], staff: SiteStaff) -> int:
    """``airflow dags test`` with its output in the log file; returns its exit code."""
    command = [str(BIN / "airflow"), "dags", "test", DAG_ID, "--conf", json.dumps(RUN_CONF)]
    progress = Progress(sys.stdout, participants=len(screening_records()))
    started = time.monotonic()
    with DAG_TEST_LOG.open("w", encoding="utf-8") as log, DAG_TEST_LOG.open(encoding="utf-8") as tail:
        # Own session: a Ctrl-C reaches the demo only, which then stops Airflow itself (below).
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
        staff.start()
        try:
            while process.poll() is None:
                for line in tail:
                    progress.feed(line)
                if progress.all_sensors_poked:
                    staff.sensors_waiting.set()
                progress.show(time.monotonic() - started, staff)
                time.sleep(0.5)
            for line in tail:
                progress.feed(line)
            progress.show(time.monotonic() - started, staff)
        finally:
            stop_process(process, grace=5)
            staff.stop()
            progress.done()
    return process.returncode


# --- the outcome ---------------------------------------------------------------------------------


def choice_labels(redcap: Redcap) -> dict[str, dict[str, str]]:
    labels: dict[str, dict[str, str]] = {}
    fields = {f"fields[{i}]": name for i, name in enumerate((*STRATA_FIELDS, TARGET_FIELD))}
    for item in redcap.call("metadata", **fields):
        pairs = (c.split(",", 1) for c in item["select_choices_or_calculations"].split("|") if "," in c)
        labels[item["field_name"]] = {code.strip(): label.strip() for code, label in pairs}
    return labels


def screening_records() -> list[str]:
    with SCREENING_FILE.open(encoding="utf-8-sig", newline="") as f:
        return list(dict.fromkeys(row["record_id"] for row in csv.DictReader(f)))


def current_records(redcap: Redcap, records: list[str]) -> dict[str, dict[str, str]]:
    """One flat dict per record: strata from baseline, arm from the randomization event, site."""
    rows = redcap.export(
        records,
        fields=["record_id", *STRATA_FIELDS, TARGET_FIELD],
        events=[STRATA_EVENT, TARGET_EVENT],
        exportDataAccessGroups="true",
    )
    merged: dict[str, dict[str, str]] = {record: {} for record in records}
    for row in rows:
        values = merged.setdefault(row["record_id"], {})
        wanted = STRATA_FIELDS if row["redcap_event_name"] == STRATA_EVENT else (TARGET_FIELD,)
        values.update({f: row.get(f, "") for f in wanted})
        values[SITE_COLUMN] = values.get(SITE_COLUMN) or row.get(SITE_COLUMN, "")
    return merged


def expected_allocations(
    records: dict[str, dict[str, str]], order: list[str], dag_ids: dict[str, str]
) -> dict[str, dict[str, str]]:
    """Replay the allocation table: each record, in randomization order, takes the lowest unused
    row of its stratum (sex, age group, site) in the table's upload order."""
    from airflow_provider_redcap.emulator import demo_project_dir

    project_dir = demo_project_dir()
    project = json.loads((project_dir / "project.json").read_text(encoding="utf-8"))
    model = next(m for m in project["randomizations"] if m["randomization_id"] == RANDOMIZATION_ID)
    status = "production" if project["in_production"] else "development"
    with (project_dir / model["allocation_tables"][status]).open(encoding="utf-8-sig", newline="") as f:
        table = list(csv.DictReader(f))
    used: set[int] = set()
    expected = {}
    for record in order:
        values = records[record]
        stratum = (*(values[f] for f in STRATA_FIELDS), dag_ids[values[SITE_COLUMN]])
        for i, row in enumerate(table):
            if i not in used and (*(row[f] for f in STRATA_FIELDS), row[SITE_COLUMN]) == stratum:
                used.add(i)
                expected[record] = row
                break
    return expected


def report(redcap: Redcap, out: TextIO) -> list[str]:
    """Print the final table; return the problems found (empty when everything matches)."""
    from airflow_provider_redcap.emulator import demo_project_dir

    project = json.loads((demo_project_dir() / "project.json").read_text(encoding="utf-8"))
    sites = {d["unique_group_name"]: d["data_access_group_name"] for d in project["dags"]}
    dag_ids = {d["unique_group_name"]: str(d["data_access_group_id"]) for d in project["dags"]}
    labels = choice_labels(redcap)
    ids = screening_records()
    records = current_records(redcap, ids)
    allocations = {}
    problems = []
    for allocation in redcap.allocations():
        if allocation["is_used_by"]:
            if allocation["is_used_by"] in allocations:
                problems.append(f"{allocation['is_used_by']} holds more than one allocation")
            allocations[allocation["is_used_by"]] = allocation
    # Upload order (aid) breaks ties between records randomized within the same clock tick.
    order = sorted(allocations, key=lambda r: (allocations[r]["allocation_time"], int(allocations[r]["aid"])))
    expected = expected_allocations(records, order, dag_ids)

    header = f"{'Record':<8} {'Site':<24} {'Sex':<7} {'Age':<6} Allocation"
    out.write(f"\n{header}\n{'-' * (len(header) + 24)}\n")
    waiting = 0
    for record in ids:
        values = records[record]
        sex = labels["sex"].get(values.get("sex", ""), "-")
        age = labels["age_group"].get(values.get("age_group", ""), "-")
        site = sites.get(values.get(SITE_COLUMN, ""), "-")
        arm = values.get(TARGET_FIELD, "")
        if arm:
            allocation = allocations.get(record)
            number = allocation["target_field_alt"] if allocation else "?"
            outcome = f"{labels[TARGET_FIELD].get(arm, arm):<10} {number}"
        else:
            missing = [f for f in (*STRATA_FIELDS, SITE_COLUMN) if not values.get(f)]
            outcome = f"waiting: missing {', '.join(missing)}" if missing else "NOT RANDOMIZED"
            waiting += bool(missing)
        staff = "  (strata entered by site staff during the run)" if record in STAFF_FILLS else ""
        out.write(f"{record:<8} {site:<24} {sex:<7} {age:<6} {outcome}{staff}\n")

        complete = all(values.get(f) for f in (*STRATA_FIELDS, SITE_COLUMN))
        if complete and not arm:
            problems.append(f"{record} has complete strata but was not randomized")
        if not complete and (arm or record in allocations):
            problems.append(f"{record} was randomized although its strata are incomplete")
        if arm:
            want = expected.get(record)
            got = allocations.get(record)
            if want is None or got is None:
                problems.append(f"{record}: no allocation row in the table matches its stratum")
            elif (arm, got["target_field"], got["target_field_alt"]) != (
                want["redcap_randomization_group"],
                want["redcap_randomization_group"],
                want["redcap_randomization_number"],
            ):
                problems.append(
                    f"{record}: got arm {arm} ({got['target_field_alt']}), the table prescribes "
                    f"{want['redcap_randomization_group']} ({want['redcap_randomization_number']})"
                )
    randomized = sum(1 for values in records.values() if values.get(TARGET_FIELD))
    out.write(f"\n{randomized} randomized, {waiting} waiting for strata.\n")
    return problems


def main() -> int:
    started = time.monotonic()
    DEMO_DIR.mkdir(exist_ok=True)
    out = sys.stdout
    try:
        with (
            tempfile.TemporaryDirectory(prefix="redcap-demo-") as workdir,
            running_emulator(Path(workdir)) as info,
        ):
            redcap = Redcap(info["url"], info["tokens"][USER], info["admin_url"])
            out.write(f"REDCap emulator (demo project) at {info['url']}\n")
            connection = json.dumps(
                {"conn_type": "redcap", "host": info["url"], "password": info["tokens"][USER]}
            )
            env = airflow_env(connection)
            out.write(f"Airflow home: {AIRFLOW_HOME.relative_to(ROOT)} (migrating the database if needed)\n")
            migrate_airflow_db(env)
            out.write(
                f"Running `airflow dags test {DAG_ID}` (log: {DAG_TEST_LOG.relative_to(ROOT)}); "
                f"once the sensors wait, site staff fill in strata for {', '.join(STAFF_FILLS)}.\n"
            )
            staff = SiteStaff(redcap, STAFF_FILLS, STAFF_DELAY_SECONDS)
            returncode = run_dag(env, staff)
            problems = report(redcap, out)
    except DemoError as exc:
        out.write(f"\nDemo failed: {exc}\n")
        return 1
    except requests.RequestException as exc:
        out.write(f"\nDemo failed: the emulator stopped answering ({exc}); see {EMULATOR_LOG}\n")
        return 1
    except KeyboardInterrupt:
        out.write("\nInterrupted; the emulator is stopped.\n")
        return 130
    if staff.error is not None:
        problems.append(f"site staff could not enter the strata: {staff.error!r}")
    if returncode:
        problems.append(f"the DAG run failed (exit code {returncode}); see {DAG_TEST_LOG.relative_to(ROOT)}")
    if problems:
        out.write("\nFAILED:\n" + "".join(f"  - {p}\n" for p in problems))
        return 1
    out.write(
        "Every allocation is the lowest unused row of its stratum in the allocation table. "
        f"Done in {time.monotonic() - started:.0f} s.\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
