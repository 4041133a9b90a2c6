"""Operator extra link to a record's page on the REDCap server."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

#: XCom key the operator pushes the record page URL under, before it does any work.
RECORD_URL_XCOM_KEY = "redcap_record_url"


def redcap_base_url(api_url: str) -> str:
    """The REDCap web root from the API URL: ``https://h/redcap/api/`` -> ``https://h/redcap/``."""
    parts = urlsplit(api_url)
    path = parts.path.rstrip("/")
    if path.lower().endswith("/api"):
        path = path[: -len("/api")]
    return urlunsplit((parts.scheme, parts.netloc, path + "/", "", ""))


def record_url(api_url: str, version: str, project_id: int | str, record: str | None = None) -> str:
    """A record's home page, or the project's record status dashboard when ``record`` is ``None``."""
    base = f"{redcap_base_url(api_url)}redcap_v{version}/DataEntry/"
    if record is None:
        return f"{base}record_status_dashboard.php?pid={quote(str(project_id))}"
    return f"{base}record_home.php?pid={quote(str(project_id))}&id={quote(str(record), safe='')}"


class RedcapRecordLink(BaseOperatorLink):
    """ "REDCap record": the record's page (the project's record dashboard for several records).

    The operator pushes the URL to XCom under :data:`RECORD_URL_XCOM_KEY` before it calls REDCap, so
    the link works even when the task fails.
    """

    name = "REDCap record"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        return XCom.get_value(ti_key=ti_key, key=RECORD_URL_XCOM_KEY) or ""
