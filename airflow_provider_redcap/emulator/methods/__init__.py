"""The API methods, by ``content`` and ``action``, with the privilege REDCap's index checks first."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from airflow_provider_redcap.emulator.context import Context
from airflow_provider_redcap.emulator.formats import ApiResponse
from airflow_provider_redcap.emulator.methods import (
    dag,
    log,
    metadata,
    next_record_name,
    project_info,
    project_xml,
    record_delete,
    record_export,
    record_import,
    record_rename,
    structure,
    user,
    version,
)
from airflow_provider_redcap.emulator.randomization import randomize

Handler = Callable[[Context], ApiResponse]


@dataclass(frozen=True)
class Method:
    key: str  # the fault-injection key
    handler: Handler
    privilege: str  # "export", "import", "delete", "rename" or "randomize"


METHODS: dict[str, dict[str, Method]] = {
    "version": {"export": Method("version", version.export_version, "export")},
    "project": {"export": Method("project", project_info.export_project, "export")},
    "metadata": {"export": Method("metadata", metadata.export_metadata, "export")},
    "exportFieldNames": {"export": Method("exportFieldNames", metadata.export_field_names, "export")},
    "instrument": {"export": Method("instrument", metadata.export_instruments, "export")},
    "event": {"export": Method("event", structure.export_events, "export")},
    "arm": {"export": Method("arm", structure.export_arms, "export")},
    "formEventMapping": {"export": Method("formEventMapping", structure.export_form_event_mapping, "export")},
    "repeatingFormsEvents": {"export": Method("repeatingFormsEvents", structure.export_repeating, "export")},
    "dag": {"export": Method("dag", dag.export_dags, "export")},
    "user": {"export": Method("user", user.export_users, "export")},
    "project_xml": {"export": Method("project_xml", project_xml.export_project_xml, "export")},
    "generateNextRecordName": {
        "export": Method("generateNextRecordName", next_record_name.generate_next_record_name, "export")
    },
    "log": {"export": Method("log", log.export_logging, "export")},
    "record": {
        "export": Method("record.export", record_export.export_records, "export"),
        "import": Method("record.import", record_import.import_records, "import"),
        "delete": Method("record.delete", record_delete.delete_records, "delete"),
        "rename": Method("record.rename", record_rename.rename_record, "rename"),
        "randomize": Method("record.randomize", randomize, "randomize"),
    },
}

# Contents REDCap knows but the emulator does not serve: REDCap would not call them invalid, so the
# emulator says plainly that it does not implement them.
KNOWN_CONTENTS = frozenset(
    {
        "file",
        "fileRepository",
        "participantList",
        "pdf",
        "project_settings",
        "report",
        "surveyLink",
        "surveyQueueLink",
        "surveyReturnCode",
        "userRole",
        "userDagMapping",
        "mycap",
        "dataQuality",
        "appRightsCheck",
        "tableau",
        "attachment",
        "fieldValidation",
    }
)
