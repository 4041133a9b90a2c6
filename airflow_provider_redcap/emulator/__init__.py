"""A faithful local REDCap API emulator: the demo's REDCap, our tests' REDCap, and our users'."""

from __future__ import annotations

from airflow_provider_redcap.emulator.faults import Fault
from airflow_provider_redcap.emulator.project import ProjectError
from airflow_provider_redcap.emulator.server import RedcapEmulator, ServerHandle, demo_project_dir

__all__ = ["Fault", "ProjectError", "RedcapEmulator", "ServerHandle", "demo_project_dir"]
