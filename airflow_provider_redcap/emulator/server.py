"""``RedcapEmulator``: a project folder, its SQLite state, the API, and a uvicorn server on demand."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from airflow_provider_redcap.emulator.admin import Admin
from airflow_provider_redcap.emulator.api import Api
from airflow_provider_redcap.emulator.app import build_app
from airflow_provider_redcap.emulator.faults import Fault, FaultSet
from airflow_provider_redcap.emulator.import_validation import apply_plan, build_plan, parse_payload
from airflow_provider_redcap.emulator.project import load_project
from airflow_provider_redcap.emulator.ratelimit import RateLimiter
from airflow_provider_redcap.emulator.storage import Storage

log = logging.getLogger(__name__)


def demo_project_dir() -> Path:
    """The packaged demo project folder (a multi-site, DAG-stratified, longitudinal trial)."""
    return Path(__file__).resolve().parent / "projects" / "demo_trial"


class RedcapEmulator:
    """A local REDCap API for one project.

    :param project_dir: the project folder (see the README), or ``"demo"`` for the packaged demo.
    :param db_path: SQLite file holding the state; reused with its state when it already belongs to
        this project. ``None`` uses a fresh temporary file.
    :param rate_limit_per_minute: ban client IPs above this many requests a minute (off when ``None``).
    :param faults: faults active from the start.
    """

    def __init__(
        self,
        project_dir: str | Path,
        db_path: str | Path | None = None,
        rate_limit_per_minute: int | None = None,
        faults: Iterable[Fault] = (),
    ) -> None:
        if str(project_dir) == "demo":
            project_dir = demo_project_dir()
        self.project = load_project(project_dir)
        self._tmpdir: str | None = None
        if db_path is None:
            self._tmpdir = tempfile.mkdtemp(prefix="redcap-emulator-")
            db_path = Path(self._tmpdir) / "redcap.db"
        self.db_path = Path(db_path)
        self.storage = Storage(self.db_path)
        self.faults = FaultSet()
        for fault in faults:
            self.faults.add(fault)
        self.rate_limiter = RateLimiter(rate_limit_per_minute)
        if not self.storage.initialized_for(self.project):
            if self.storage.get_meta("schema") is not None:
                log.warning(
                    "%s holds the state of another project or folder version; starting afresh", db_path
                )
            self._seed()
        self.api = Api(self.project, self.storage, self.faults)
        self.admin = Admin(self)
        self.app = build_app(self)

    @property
    def tokens(self) -> dict[str, str]:
        return {u.username: u.token for u in self.project.users}

    def _seed(self) -> None:
        project = self.project
        with self.storage.transaction() as tx:
            self.storage.wipe(tx, project)
            if project.seed_csv:
                rows = parse_payload(project.seed_csv, "csv", "flat", ",")
                plan = build_plan(
                    project,
                    tx,
                    None,
                    None,
                    rows,
                    date_format="YMD",
                    overwrite=False,
                    force_auto_number=False,
                    status=project.status,
                    enforce_randomization=False,
                )
                apply_plan(project, tx, plan, project.users[0].username, None)
                tx.conn.execute("DELETE FROM log")

    def reset(self) -> None:
        self.faults.clear()
        self.rate_limiter.reset()
        self._seed()

    def close(self) -> None:
        self.storage.close()
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    @contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[ServerHandle]:
        """Run the API with uvicorn in a background thread; stops when the block exits."""
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=5
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="redcap-emulator", daemon=True
        )
        thread.start()
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the REDCap emulator failed to start")
            threading.Event().wait(0.01)
        try:
            yield ServerHandle(self, host, sock.getsockname()[1])
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()


class ServerHandle:
    """A running emulator: where it listens, its users' tokens and its admin handle."""

    def __init__(self, emulator: RedcapEmulator, host: str, port: int) -> None:
        self.emulator = emulator
        self.host = host
        self.port = port
        netloc = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{netloc}:{port}"
        self.url = f"{self.base_url}/api/"
        self.admin_url = f"{self.base_url}/_emulator/"
        self.admin = emulator.admin

    @property
    def tokens(self) -> dict[str, str]:
        return self.emulator.tokens

    @property
    def token(self) -> str:
        return self.emulator.project.users[0].token

    def airflow_connection_json(self, username: str | None = None) -> str:
        """JSON for ``AIRFLOW_CONN_REDCAP_DEFAULT`` pointing at this emulator as ``username``."""
        token = self.tokens[username] if username else self.token
        return json.dumps({"conn_type": "redcap", "host": self.url, "password": token})

    def __repr__(self) -> str:
        return f"ServerHandle(url={self.url!r})"
