"""Response bodies as real REDCap 15.7.6 sends them (from /work/shared/reference/redcap-api.md).

Kept verbatim (status, content type, body) so tests replay REDCap's real behaviour, including its
quirks: randomize refusals as HTTP 200 plain text, ``{"count": N}`` with a space, version as text/csv.
"""

from __future__ import annotations

import json

# Tokens: 32 alphanumerics, as REDCap issues them. Distinctive so a leak is easy to find.
TOKEN = "A1B2C3D4E5F6A7B8C9D0E1F2A3B4C5D6"
OTHER_TOKEN = "ZZZZ0000YYYY1111XXXX2222WWWW3333"
API_URL = "https://redcap.example.org/api/"

JSON = "application/json; charset=utf-8"
CSV = "text/csv; charset=utf-8"
XML = "text/xml; charset=utf-8"
HTML = "text/html; charset=UTF-8"


def json_error(message: str) -> str:
    """REDCap's json error envelope (sent only when the status is not 200)."""
    return json.dumps({"error": message})


def csv_error(message: str) -> str:
    return f"ERROR: {message}"


def xml_error(message: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8" ?><hash><error>{message}</error></hash>'


VERSION = "15.7.6"
OLD_VERSION = "14.6.9"

# -- 403 / 429 / 5xx -------------------------------------------------------------------------------
BAD_TOKEN = "You do not have permissions to use the API"
EXPIRED = "You do not have API rights because your privileges have expired for this project as of 2026-01-31."
NO_EXPORT = "You do not have API Export privileges"
NO_IMPORT = "You do not have API Import/Update privileges"
NO_RANDOMIZE = "You do not have Randomize privileges"
NO_DAG_RIGHTS = (
    "Insufficient user privileges: You must have 'API Export' privileges and 'Data Access Groups' "
    "privileges in the project."
)
BANNED = "Your IP address (203.0.113.7) has been banned due to suspected abuse."
OUT_OF_MEMORY = (
    "REDCap ran out of server memory. The request cannot be processed. Please try importing/exporting "
    "a smaller amount of data."
)
CLASSIC_EVENTS = "You cannot export events for classic projects"
BAD_FIELDS = "The following values in the parameter \"fields\" are not valid: 'foo', 'bar'"
ACTION_INVALID = 'The value of the parameter "action" is not valid'

# -- HTML pages in front of the API ------------------------------------------------------------------
SSO_LOGIN_PAGE = """<!DOCTYPE html>
<html lang="en"><head><title>Sign in - University SSO</title>
<style>body{font-family:sans-serif}</style><script>var x = 1;</script></head>
<body><h1>Single sign-on</h1><form method="post"><input name="j_username"></form>
<p>Please log in to continue to REDCap.</p></body></html>"""
MAINTENANCE_PAGE = (
    "<html><head><title>REDCap is offline</title></head><body><div>REDCap is currently "
    "undergoing maintenance &amp; will be back shortly.</div></body></html>"
)
GATEWAY_PAGE = "<html><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"

# -- Randomize (content=record, action=randomize) ---------------------------------------------------
RAND_RECORD_MISSING = "Cannot randomize. Record does not exist."
RAND_ALREADY = "Cannot randomize. Randomization already completed for record."
RAND_NO_DAG = "Cannot randomize. Record not assigned to a DAG"
RAND_MISSING_STRATA = (
    "Cannot randomize. Missing stratification data for fields: sex (event 41),agecat (event 41)"
)
RAND_NO_ALLOCATIONS = "Cannot randomize. No allocations available."
RAND_INVALID_RID = "Invalid data supplied"
RAND_INTERNAL = "Cannot randomize. An error occurred."
RAND_EM_MESSAGE = "Cannot randomize. Eligibility not confirmed by the site PI."

RAND_OPEN_SUCCESS = (
    '{"randomization_id":48213,"record":"1001","target_field":"2","target_field_name":"rand_arm",'
    '"target_field_alt":"R-1005"}'
)
RAND_OPEN_SUCCESS_NO_ALT_VALUE = (
    '{"randomization_id":48213,"record":"1001","target_field":"3","target_field_name":"rand_arm",'
    '"target_field_alt":null}'
)
RAND_CONCEALED_SUCCESS = (
    '{"randomization_id":48297,"record":"1001","target_field":"KIT-0042","target_field_name":"kit_number",'
    '"target_field_alt":"*"}'
)
# As documented (no target_field_name, no returnAlt): some servers answer like this.
RAND_DOCS_SHAPE = '{"randomization_id":48213,"record":"1001","target_field":"1"}'

# -- Import (content=record with data) --------------------------------------------------------------
IMPORT_VALIDATION_LINES = "\n".join(
    [
        '"1001","age","abc","The value of age must be an integer."',
        '"1002","sex","7","The value is not a valid category for sex"',
        '"1003","weight_kg","12,5","The value of weight_kg must be numeric."',
        '"1004","site_note","say ""hi""","The value you provided could not be validated because it does '
        'not follow the expected format. Please try again."',
    ]
)
IMPORT_UNKNOWN_FIELDS = "The following fields were not found in the project as real data fields: foo, bar"
IMPORT_TARGET_FIELD = (
    "This field ('rand_arm') cannot be modified because it has been set as this project's randomization "
    "field,  which can never be modified for any record. This field MUST be removed from the uploaded "
    "data file."
)
IMPORT_BAD_JSON = (
    "The data being imported is not formatted correctly. PHP error from JSON decoder: Syntax error. "
    "The JSON must be in an array, as in [{ ... }]."
)
IMPORT_COUNT = '{"count": 2}'

# -- Exports ----------------------------------------------------------------------------------------
PROJECT_INFO = {
    "project_id": 1742,
    "project_title": "ASTER-3: a multi-site randomized trial (demo)",
    "creation_time": "2026-01-05 09:12:44",
    "production_time": "2026-02-01 10:00:00",
    "in_production": 1,
    "project_language": "English",
    "purpose": 2,
    "purpose_other": "",
    "project_notes": "",
    "custom_record_label": "",
    "secondary_unique_field": "",
    "is_longitudinal": 1,
    "has_repeating_instruments_or_events": 0,
    "surveys_enabled": 0,
    "scheduling_enabled": 0,
    "record_autonumbering_enabled": 0,
    "randomization_enabled": 1,
    "ddp_enabled": 0,
    "project_irb_number": "",
    "project_grant_number": "",
    "project_pi_firstname": "",
    "project_pi_lastname": "",
    "display_today_now_button": 1,
    "missing_data_codes": "",
    "external_modules": "",
    "bypass_branching_erase_field_prompt": 0,
}

_META_KEYS = [
    "field_name",
    "form_name",
    "section_header",
    "field_type",
    "field_label",
    "select_choices_or_calculations",
    "field_note",
    "text_validation_type_or_show_slider_number",
    "text_validation_min",
    "text_validation_max",
    "identifier",
    "branching_logic",
    "required_field",
    "custom_alignment",
    "question_number",
    "matrix_group_name",
    "matrix_ranking",
    "field_annotation",
]


def metadata_row(field_name: str, form_name: str, field_type: str, label: str, choices: str = "", **kw: str):
    row = dict.fromkeys(_META_KEYS, "")
    row.update(field_name=field_name, form_name=form_name, field_type=field_type, field_label=label)
    row["select_choices_or_calculations"] = choices
    row.update(kw)
    return row


METADATA = [
    metadata_row("record_id", "screening", "text", "Record ID"),
    metadata_row("age", "screening", "text", "Age", text_validation_type_or_show_slider_number="integer"),
    metadata_row("sex", "demographics", "radio", "Sex", "0, Female | 1, Male"),
    metadata_row("age_group", "demographics", "dropdown", "Age group", "1, 18-39 | 2, 40-64 | 3, 65+"),
    metadata_row("rand_arm", "randomization", "radio", "Arm", "1, Placebo | 2, Low dose | 3, High dose"),
    metadata_row("kit_number", "randomization", "text", "Kit number"),
]

FIELD_NAMES = [
    {"original_field_name": "record_id", "choice_value": "", "export_field_name": "record_id"},
    {"original_field_name": "conditions", "choice_value": "1", "export_field_name": "conditions___1"},
]
EVENTS = [
    {
        "event_name": "Screening",
        "arm_num": 1,
        "unique_event_name": "screening_arm_1",
        "custom_event_label": "",
        "event_id": 4101,
    },
    {
        "event_name": "Baseline",
        "arm_num": 1,
        "unique_event_name": "baseline_arm_1",
        "custom_event_label": "",
        "event_id": 4102,
    },
]
ARMS = [{"arm_num": 1, "name": "Arm 1"}]
FORM_EVENT_MAPPING = [
    {"arm_num": 1, "unique_event_name": "screening_arm_1", "form": "screening"},
    {"arm_num": 1, "unique_event_name": "baseline_arm_1", "form": "demographics"},
]
REPEATING = [{"event_name": "week_4_arm_1", "form_name": "adverse_events", "custom_form_label": ""}]
DAGS = [
    {"data_access_group_name": "Boston General", "unique_group_name": "boston", "data_access_group_id": 2201},
    {"data_access_group_name": "Denver Health", "unique_group_name": "denver", "data_access_group_id": 2202},
]
LOGGING = [
    {
        "timestamp": "2026-03-02 14:05",
        "username": "data_manager",
        "action": "Randomize record (API)",
        "details": "record_id = '1001'\nrandomization_id = 48213",
        "record": "1001",
    }
]

PROJECT_XML = """<?xml version="1.0" encoding="UTF-8" ?>
<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" xmlns:ds="http://www.w3.org/2000/09/xmldsig#"
     xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:redcap="https://projectredcap.org"
     ODMVersion="1.3.2" FileOID="Project.ASTER3" FileType="Snapshot">
<Study OID="Project.ASTER3">
<GlobalVariables>
  <StudyName>ASTER-3</StudyName>
  <redcap:RandomizationGroup>
    <redcap:Randomization target_field="rand_arm" target_event="randomization_arm_1"
        source_field1="sex" source_event1="baseline_arm_1"
        source_field2="age_group" source_event2="baseline_arm_1"
        source_field3="" source_event3=""
        stratified="1" group_by="DAG" trigger_option="0" trigger_instrument="" trigger_event_id=""
        trigger_logic=""/>
    <redcap:Randomization target_field="kit_number" target_event="randomization_arm_1"
        source_field1="sex" source_event1="baseline_arm_1"
        source_field2="age_group" source_event2="baseline_arm_1"
        stratified="1" group_by="DAG" trigger_option="0"/>
  </redcap:RandomizationGroup>
</GlobalVariables>
</Study>
</ODM>
"""
PROJECT_XML_CLASSIC = """<?xml version="1.0" encoding="UTF-8" ?>
<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" xmlns:redcap="https://projectredcap.org">
<Study OID="Project.X"><GlobalVariables>
  <redcap:RandomizationGroup>
    <redcap:Randomization target_field="arm" target_event="" source_field1="site" source_event1=""
        source_field2="sex" source_event2="" group_by="" stratified="1"/>
  </redcap:RandomizationGroup>
</GlobalVariables></Study></ODM>
"""
PROJECT_XML_NO_RANDOMIZATION = """<?xml version="1.0" encoding="UTF-8" ?>
<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3"><Study OID="Project.X"><GlobalVariables>
<StudyName>X</StudyName></GlobalVariables></Study></ODM>
"""
