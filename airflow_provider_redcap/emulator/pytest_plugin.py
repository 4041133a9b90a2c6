"""pytest fixtures for testing DAGs against a local REDCap emulator (entry point ``pytest11``).

Override ``redcap_project_dir`` in a ``conftest.py`` to serve your own project folder::

    @pytest.fixture
    def redcap_project_dir():
        return Path(__file__).parent / "redcap_project"
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_redcap.emulator.server import RedcapEmulator, ServerHandle, demo_project_dir


@pytest.fixture
def redcap_project_dir() -> Path:
    """The project folder the emulator serves; the packaged demo unless overridden."""
    return demo_project_dir()


@pytest.fixture
def redcap_emulator(
    redcap_project_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerHandle]:
    """A running emulator on a free loopback port, fresh for each test: ``url``, ``tokens``, ``admin``."""
    db = tmp_path_factory.mktemp("redcap-emulator") / "redcap.db"
    emulator = RedcapEmulator(redcap_project_dir, db_path=db)
    try:
        with emulator.serve() as server:
            yield server
    finally:
        emulator.close()


@pytest.fixture
def redcap_connection(redcap_emulator: ServerHandle, monkeypatch: pytest.MonkeyPatch) -> ServerHandle:
    """The emulator, with ``AIRFLOW_CONN_REDCAP_DEFAULT`` pointing at it for the test's duration."""
    monkeypatch.setenv("AIRFLOW_CONN_REDCAP_DEFAULT", redcap_emulator.airflow_connection_json())
    return redcap_emulator
