"""Fixtures for the emulator tests: black-box conformance against the demo project (helpers live in
``redcap_conformance``), and fresh engines on the small fixture projects in ``projects/``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redcap_conformance import Api, DemoFacts, demo_dir, make_variant

from airflow_provider_redcap.emulator import RedcapEmulator

CLASSIC_PROJECT = Path(__file__).parent / "projects" / "classic"
LONGITUDINAL_PROJECT = Path(__file__).parent / "projects" / "longitudinal"


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[RedcapEmulator]:
    """A fresh engine on the classic fixture project."""
    emulator = RedcapEmulator(CLASSIC_PROJECT, db_path=tmp_path / "state.db")
    yield emulator
    emulator.close()


@pytest.fixture
def long_emu(tmp_path: Path) -> Iterator[RedcapEmulator]:
    """A fresh engine on the longitudinal fixture project."""
    emulator = RedcapEmulator(LONGITUDINAL_PROJECT, db_path=tmp_path / "state.db")
    yield emulator
    emulator.close()


@pytest.fixture(scope="session")
def demo() -> DemoFacts:
    return DemoFacts.load(demo_dir())


@pytest.fixture(scope="session")
def conformance_server() -> Iterator[Any]:
    """One served demo emulator for the whole session; ``rc`` resets it before each test."""
    emu = RedcapEmulator(demo_dir())
    with emu.serve(host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
def rc(conformance_server: Any, demo: DemoFacts) -> Iterator[Api]:
    conformance_server.admin.reset()
    api = Api(conformance_server.url, demo.tokens["data_manager"])
    yield api
    api.session.close()


@pytest.fixture
def server(conformance_server: Any, rc: Api) -> Any:
    """The served emulator (already reset by ``rc``), for admin calls."""
    return conformance_server


@pytest.fixture
def serve_variant(tmp_path: Path) -> Iterator[Callable[[Callable[[dict[str, Any], Path], None]], Any]]:
    """Start an emulator on an edited copy of the demo project; stopped at teardown."""
    from contextlib import ExitStack

    from airflow_provider_redcap.emulator import RedcapEmulator

    stack = ExitStack()
    counter = iter(range(1000))

    def start(edit: Callable[[dict[str, Any], Path], None]) -> Any:
        path = make_variant(tmp_path / f"v{next(counter)}", edit)
        emu = RedcapEmulator(path, db_path=path / "state.sqlite3")
        return stack.enter_context(emu.serve(host="127.0.0.1", port=0))

    with stack:
        yield start
