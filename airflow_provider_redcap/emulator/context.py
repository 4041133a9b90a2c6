"""What a method handler gets: the project, the open transaction, the user and the parameters."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_redcap.emulator.params import Params
from airflow_provider_redcap.emulator.project import Project, User
from airflow_provider_redcap.emulator.storage import Tx


@dataclass
class Context:
    project: Project
    tx: Tx
    user: User
    params: Params
    status: int
    client_ip: str = "127.0.0.1"

    @property
    def fmt(self) -> str:
        return self.params.format

    @property
    def return_format(self) -> str:
        return self.params.return_format

    @property
    def group_id(self) -> int | None:
        """The numeric id of the user's DAG, or ``None`` for users who see every record."""
        if not self.user.data_access_group:
            return None
        dag = self.project.dag_by_name(self.user.data_access_group)
        return dag.group_id if dag else None

    @property
    def csv_delimiter(self) -> str:
        return {"tab": "\t", ";": ";", "|": "|", "^": "^"}.get(self.params.get("csvDelimiter"), ",")
