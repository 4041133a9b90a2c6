"""REDCap operators."""

from __future__ import annotations

from airflow_provider_redcap.operators.import_records import RedcapImportRecordsOperator
from airflow_provider_redcap.operators.randomize import RedcapRandomizeOperator

__all__ = ["RedcapImportRecordsOperator", "RedcapRandomizeOperator"]
