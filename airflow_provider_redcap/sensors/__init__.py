"""REDCap sensors."""

from __future__ import annotations

from airflow_provider_redcap.sensors.stratification import RedcapStratificationSensor

__all__ = ["RedcapStratificationSensor"]
