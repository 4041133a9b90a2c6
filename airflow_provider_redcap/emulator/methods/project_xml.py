"""Export Project XML (CDISC ODM with REDCap extensions).

The randomization models appear as ``<redcap:RandomizationGroup>`` with one ``<redcap:Randomization>``
per model in randomization-id order, event ids turned into unique event names, and **no** ``rid``:
REDCap strips it, so clients must be given the ``randomization_id`` separately.
"""

from __future__ import annotations

from datetime import datetime
from xml.sax.saxutils import escape, quoteattr

from airflow_provider_redcap.emulator import auth
from airflow_provider_redcap.emulator.context import Context
from airflow_provider_redcap.emulator.formats import CONTENT_TYPES, XML_DECL, ApiError, ApiResponse
from airflow_provider_redcap.emulator.project import Project
from airflow_provider_redcap.emulator.records import COMPLETE_SUFFIX, all_columns, flat_rows, visible_records

_DATA_TYPES = {
    "integer": "integer",
    "number": "float",
    "date_ymd": "date",
    "date_mdy": "date",
    "date_dmy": "date",
    "datetime_ymd": "datetime",
    "datetime_seconds_ymd": "datetime",
}


def _attrs(**values: object) -> str:
    return " ".join(f"{k.replace('__', ':')}={quoteattr(str(v))}" for k, v in values.items())


def randomization_group(project: Project) -> str:
    lines = ["\t<redcap:RandomizationGroup>"]
    for model in project.randomizations:
        attrs: dict[str, object] = {
            "target_field": model.target_field,
            "target_event": project.event_by_id(model.target_event_id).unique_name,
        }
        for i in range(15):
            if i < len(model.strata):
                field, event_id = model.strata[i]
                attrs[f"source_field{i + 1}"] = field
                attrs[f"source_event{i + 1}"] = project.event_by_id(event_id).unique_name
            else:
                attrs[f"source_field{i + 1}"] = ""
                attrs[f"source_event{i + 1}"] = ""
        attrs.update(
            stratified=int(bool(model.strata)),
            group_by="DAG" if model.group_by_dag else "",
            trigger_option=model.trigger_option,
            trigger_instrument="",
            trigger_event_id="",
            trigger_logic="",
        )
        lines.append(f"\t\t<redcap:Randomization {_attrs(**attrs)}/>")
    lines.append("\t</redcap:RandomizationGroup>")
    return "\n".join(lines)


def build_odm(ctx: Context, include_data: bool) -> str:
    project = ctx.project
    title = str(project.info["project_title"])
    now = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    oid = f"Project.{''.join(ch for ch in title if ch.isalnum())[:30]}"
    out = [
        XML_DECL,
        '<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:redcap="https://projectredcap.org" '
        'xsi:schemaLocation="http://www.cdisc.org/ns/odm/v1.3 schema/odm/ODM1-3-1.xsd" ODMVersion="1.3.1" '
        f'FileOID="000-00-0000" FileType="Snapshot" Description={quoteattr(title)} AsOfDateTime="{now}" '
        f'CreationDateTime="{now}" SourceSystem="REDCap" SourceSystemVersion="{project.redcap_version}">',
        f"<Study OID={quoteattr(oid)}>",
        "<GlobalVariables>",
        f"\t<StudyName>{escape(title)}</StudyName>",
        f"\t<StudyDescription>This file contains the metadata, events, and data for REDCap project "
        f'"{escape(title)}".</StudyDescription>',
        f"\t<ProtocolName>{escape(title)}</ProtocolName>",
        f"\t<redcap:RecordAutonumberingEnabled>{int(project.info.get('record_autonumbering_enabled', 0))}"
        "</redcap:RecordAutonumberingEnabled>",
        f"\t<redcap:Purpose>{project.info.get('purpose', 2)}</redcap:Purpose>",
    ]
    if project.repeating:
        out.append("\t<redcap:RepeatingInstrumentsAndEvents>")
        for r in project.repeating:
            if r["form_name"]:
                attrs = _attrs(
                    redcap__UniqueEventName=r["event_name"],
                    redcap__RepeatInstrument=r["form_name"],
                    redcap__CustomLabel=r["custom_form_label"],
                )
                out.append(f"\t\t<redcap:RepeatingInstrument {attrs}/>")
            else:
                out.append(f"\t\t<redcap:RepeatingEvent {_attrs(redcap__UniqueEventName=r['event_name'])}/>")
        out.append("\t</redcap:RepeatingInstrumentsAndEvents>")
    if project.randomizations:
        out.append(randomization_group(project))
    if project.dags:
        out.append("\t<redcap:DataAccessGroupsGroup>")
        out += [f"\t\t<redcap:DataAccessGroups {_attrs(group_name=d.label)}/>" for d in project.dags]
        out.append("\t</redcap:DataAccessGroupsGroup>")
    out.append("</GlobalVariables>")
    out.append(
        f'<MetaDataVersion OID="Metadata.{oid[8:]}_1" Name={quoteattr(title)} '
        f'redcap:RecordIdField="{project.pk}">'
    )
    if project.longitudinal:
        out.append("\t<Protocol>")
        out += [
            f'\t\t<StudyEventRef StudyEventOID="Event.{e.unique_name}" OrderNumber="{i}" Mandatory="No"/>'
            for i, e in enumerate(project.events, start=1)
        ]
        out.append("\t</Protocol>")
        for e in project.events:
            out.append(
                f'\t<StudyEventDef OID="Event.{e.unique_name}" Name={quoteattr(e.name)} Type="Common" '
                f'Repeating="{"Yes" if project.repeating_event(e.event_id) else "No"}" '
                f"redcap:EventName={quoteattr(e.name)} redcap:CustomEventLabel={quoteattr(e.custom_label)} "
                f'redcap:UniqueEventName="{e.unique_name}" redcap:ArmNum="{e.arm_num}" '
                f"redcap:ArmName={quoteattr(project.arms.get(e.arm_num, ''))}>"
            )
            out += [
                f'\t\t<FormRef FormOID="Form.{f}" OrderNumber="{i}" Mandatory="No" redcap:FormName="{f}"/>'
                for i, f in enumerate(project.form_events.get(e.event_id, []), start=1)
            ]
            out.append("\t</StudyEventDef>")
    for form in project.forms:
        label = quoteattr(project.form_labels[form])
        out.append(f'\t<FormDef OID="Form.{form}" Name={label} Repeating="No" redcap:FormName="{form}">')
        out.append(f'\t\t<ItemGroupRef ItemGroupOID="{form}.group" Mandatory="No"/>')
        out.append("\t</FormDef>")
    for form in project.forms:
        out.append(
            f'\t<ItemGroupDef OID="{form}.group" Name={quoteattr(project.form_labels[form])} Repeating="No">'
        )
        for f in project.form_fields(form):
            out.append(f'\t\t<ItemRef ItemOID="{f.name}" Mandatory="No" redcap:Variable="{f.name}"/>')
        out.append(
            f'\t\t<ItemRef ItemOID="{form}{COMPLETE_SUFFIX}" Mandatory="No" '
            f'redcap:Variable="{form}{COMPLETE_SUFFIX}"/>'
        )
        out.append("\t</ItemGroupDef>")
    for f in project.fields.values():
        data_type = _DATA_TYPES.get(f.validation, "text")
        extra = f' redcap:TextValidationType="{f.validation}"' if f.validation else ""
        code_list = f' <CodeListRef CodeListOID="{f.name}.choices"/>' if f.choices else ""
        out.append(
            f'\t<ItemDef OID="{f.name}" Name="{f.name}" DataType="{data_type}" Length="999" '
            f'redcap:Variable="{f.name}" redcap:FieldType="{f.field_type}"{extra}>'
            f"<Question><TranslatedText>{escape(f.label)}</TranslatedText></Question>{code_list}</ItemDef>"
        )
    for form in project.forms:
        out.append(
            f'\t<ItemDef OID="{form}{COMPLETE_SUFFIX}" Name="{form}{COMPLETE_SUFFIX}" DataType="text" '
            f'Length="1" redcap:Variable="{form}{COMPLETE_SUFFIX}"><Question><TranslatedText>Complete?'
            "</TranslatedText></Question></ItemDef>"
        )
    for f in project.fields.values():
        if not f.choices:
            continue
        out.append(
            f'\t<CodeList OID="{f.name}.choices" Name="{f.name}" DataType="text" redcap:Variable="{f.name}">'
        )
        out += [
            f"\t\t<CodeListItem CodedValue={quoteattr(code)}><Decode><TranslatedText>{escape(label)}"
            "</TranslatedText></Decode></CodeListItem>"
            for code, label in f.choices.items()
        ]
        out.append("\t</CodeList>")
    out.append("</MetaDataVersion>")
    out.append("</Study>")
    if include_data:
        out.append(_clinical_data(ctx, oid))
    out.append("</ODM>")
    return "\n".join(out)


def _clinical_data(ctx: Context, oid: str) -> str:
    project = ctx.project
    records = visible_records(ctx.tx, ctx.group_id)
    _, rows = flat_rows(project, ctx.tx, records, all_columns(project))
    out = [f'<ClinicalData StudyOID="{oid}" MetaDataVersionOID="Metadata.{oid[8:]}_1">']
    for record in records:
        out.append(f'\t<SubjectData SubjectKey={quoteattr(record)} redcap:RecordIdField="{project.pk}">')
        for row in rows:
            if row[project.pk] != record:
                continue
            event = row.get("redcap_event_name", "")
            out.append(f'\t\t<StudyEventData StudyEventOID="Event.{event}" StudyEventRepeatKey="1">')
            for name, value in row.items():
                if name.startswith("redcap_") or value in ("", None):
                    continue
                out.append(f"\t\t\t<ItemData ItemOID={quoteattr(name)} Value={quoteattr(str(value))}/>")
            out.append("\t\t</StudyEventData>")
        out.append("\t</SubjectData>")
    out.append("</ClinicalData>")
    return "\n".join(out)


def export_project_xml(ctx: Context) -> ApiResponse:
    metadata_only = ctx.params.flag("returnMetadataOnly")
    if not metadata_only and not ctx.user.has("data_export"):
        raise ApiError(403, auth.NO_DATA_EXPORT)
    return ApiResponse(200, build_odm(ctx, include_data=not metadata_only), CONTENT_TYPES["xml"])
