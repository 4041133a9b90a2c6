"""import_records / export_records / iter_records: batching by record, failures, missing records."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from common import payloads as p
from hook_testing import content_is, form_of, forms, json_response

from airflow_provider_redcap.exceptions import (
    RedcapFieldError,
    RedcapImportError,
    RedcapMissingRecordsError,
    RedcapPermissionError,
    RedcapValidationError,
)
from airflow_provider_redcap.hooks.redcap import RedcapHook

IMPORT = content_is("record", returnContent="ids")


def _rows_sent(request: Any) -> list[dict[str, str]]:
    return json.loads(form_of(request)["data"])


def _import_requests(mocker: Any) -> list[Any]:
    return [r for r in mocker.request_history if "data" in form_of(r)]


def _ids_echo(request: Any, context: Any) -> str:
    """Answer an import like REDCap with returnContent=ids: the distinct record ids, in order."""
    context.headers["Content-Type"] = p.JSON
    ids = list(dict.fromkeys(row["record_id"] for row in _rows_sent(request)))
    return json.dumps(ids)


ROWS = [
    {
        "record_id": "1001",
        "redcap_event_name": "screening_arm_1",
        "age": 44,
        "screen_date": dt.date(2026, 3, 2),
    },
    {"record_id": "1002", "redcap_event_name": "screening_arm_1", "age": 51, "eligible": True},
    {"record_id": "1001", "redcap_event_name": "baseline_arm_1", "sex": 0, "weight_kg": 71.5},
    {"record_id": "1003", "redcap_event_name": "screening_arm_1", "age": None},
]


def test_import_batches_whole_records(hook: RedcapHook, requests_mock: Any) -> None:
    requests_mock.post(p.API_URL, additional_matcher=content_is("metadata"), **json_response(p.METADATA))
    requests_mock.post(p.API_URL, additional_matcher=IMPORT, text=_ids_echo)
    result = hook.import_records(ROWS, batch_size=2)
    assert result.record_ids == ("1001", "1002", "1003")
    assert result.count == 3
    assert result.auto_ids == {}
    first, second = _import_requests(requests_mock)
    # Both rows of record 1001 travel in the same batch, although they were not adjacent.
    assert _rows_sent(first) == [
        {
            "record_id": "1001",
            "redcap_event_name": "screening_arm_1",
            "age": "44",
            "screen_date": "2026-03-02",
        },
        {"record_id": "1001", "redcap_event_name": "baseline_arm_1", "sex": "0", "weight_kg": "71.5"},
        {"record_id": "1002", "redcap_event_name": "screening_arm_1", "age": "51", "eligible": "1"},
    ]
    assert _rows_sent(second) == [{"record_id": "1003", "redcap_event_name": "screening_arm_1", "age": ""}]
    form = form_of(first)
    assert (form["type"], form["overwriteBehavior"], form["forceAutoNumber"], form["dateFormat"]) == (
        "flat",
        "normal",
        "false",
        "YMD",
    )
    assert (form["returnContent"], form["format"], form["returnFormat"]) == ("ids", "json", "json")


def test_import_options(hook: RedcapHook, requests_mock: Any) -> None:
    requests_mock.post(p.API_URL, text=_ids_echo)
    hook.import_records(
        [{"record_id": "1001", "screen_date": "03/02/2026"}],
        overwrite=True,
        date_format="MDY",
        record_id_field="record_id",
    )
    form = form_of(requests_mock.last_request)
    assert (form["overwriteBehavior"], form["dateFormat"]) == ("overwrite", "MDY")
    assert requests_mock.call_count == 1  # record_id_field given: no metadata lookup


def test_import_auto_numbering_maps_supplied_to_new_ids(hook: RedcapHook, requests_mock: Any) -> None:
    requests_mock.post(p.API_URL, text=json.dumps(["323,x1", "324,x2"]), headers={"Content-Type": p.JSON})
    result = hook.import_records(
        [{"record_id": "x1", "age": 40}, {"record_id": "x2", "age": 41}],
        force_auto_number=True,
        record_id_field="record_id",
    )
    assert result.record_ids == ("323", "324")
    assert result.auto_ids == {"x1": "323", "x2": "324"}
    form = form_of(requests_mock.last_request)
    assert (form["forceAutoNumber"], form["returnContent"]) == ("true", "auto_ids")


def test_failing_batch_raises_with_imported_and_pending(hook: RedcapHook, requests_mock: Any) -> None:
    rows = [{"record_id": str(n), "age": "x"} for n in range(1001, 1006)]
    requests_mock.post(
        p.API_URL,
        [
            {"text": json.dumps(["1001", "1002"]), "headers": {"Content-Type": p.JSON}},
            {
                "status_code": 400,
                "text": p.json_error(p.IMPORT_VALIDATION_LINES),
                "headers": {"Content-Type": p.JSON},
            },
        ],
    )
    with pytest.raises(RedcapImportError) as info:
        hook.import_records(rows, batch_size=2, record_id_field="record_id")
    exc = info.value
    assert exc.imported_records == ["1001", "1002"]
    assert exc.pending_records == ["1003", "1004", "1005"]
    assert exc.status_code == 400
    assert requests_mock.call_count == 2  # a 400 is not retried, and later batches are not sent
    cause = exc.__cause__
    assert isinstance(cause, RedcapValidationError)
    assert cause.errors == [
        RedcapFieldError("1001", "age", "abc", "The value of age must be an integer."),
        RedcapFieldError("1002", "sex", "7", "The value is not a valid category for sex"),
        RedcapFieldError("1003", "weight_kg", "12,5", "The value of weight_kg must be numeric."),
        RedcapFieldError(
            "1004",
            "site_note",
            'say "hi"',
            "The value you provided could not be validated because it does not follow the expected "
            "format. Please try again.",
        ),
    ]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (p.csv_error(p.IMPORT_VALIDATION_LINES), p.CSV),
        (p.xml_error(p.IMPORT_VALIDATION_LINES), p.XML),
    ],
)
def test_validation_lines_parsed_from_csv_and_xml_envelopes(
    hook: RedcapHook, requests_mock: Any, body: str, content_type: str
) -> None:
    requests_mock.post(p.API_URL, status_code=400, text=body, headers={"Content-Type": content_type})
    with pytest.raises(RedcapImportError) as info:
        hook.import_records([{"record_id": "1001"}], record_id_field="record_id")
    assert isinstance(info.value.__cause__, RedcapValidationError)
    assert [e.record for e in info.value.__cause__.errors] == ["1001", "1002", "1003", "1004"]


@pytest.mark.parametrize("message", [p.IMPORT_UNKNOWN_FIELDS, p.IMPORT_TARGET_FIELD, p.IMPORT_BAD_JSON])
def test_whole_request_import_errors(hook: RedcapHook, requests_mock: Any, message: str) -> None:
    requests_mock.post(
        p.API_URL, status_code=400, text=p.json_error(message), headers={"Content-Type": p.JSON}
    )
    with pytest.raises(RedcapImportError) as info:
        hook.import_records([{"record_id": "1001", "foo": "1"}], record_id_field="record_id")
    cause = info.value.__cause__
    assert isinstance(cause, RedcapValidationError)
    assert cause.redcap_message == message
    assert cause.errors == []
    assert info.value.pending_records == ["1001"]


def test_import_without_privilege(hook: RedcapHook, requests_mock: Any) -> None:
    requests_mock.post(
        p.API_URL, status_code=403, text=p.json_error(p.NO_IMPORT), headers={"Content-Type": p.JSON}
    )
    with pytest.raises(RedcapImportError) as info:
        hook.import_records([{"record_id": "1001"}], record_id_field="record_id")
    assert isinstance(info.value.__cause__, RedcapPermissionError)
    assert (info.value.imported_records, info.value.pending_records) == ([], ["1001"])


def test_import_only_token_falls_back_to_first_column(hook: RedcapHook, requests_mock: Any) -> None:
    requests_mock.post(
        p.API_URL,
        additional_matcher=content_is("metadata"),
        status_code=403,
        text=p.json_error(p.NO_EXPORT),
        headers={"Content-Type": p.JSON},
    )
    requests_mock.post(p.API_URL, additional_matcher=IMPORT, text=_ids_echo)
    result = hook.import_records([{"redcap_event_name": "screening_arm_1", "record_id": "1001"}])
    assert result.record_ids == ("1001",)


def test_blank_record_id_fails_before_sending(hook: RedcapHook, requests_mock: Any) -> None:
    with pytest.raises(RedcapValidationError, match="no value in the record id field"):
        hook.import_records([{"record_id": "1001"}, {"record_id": " "}], record_id_field="record_id")
    assert requests_mock.call_count == 0


def test_empty_import_sends_nothing(hook: RedcapHook, requests_mock: Any) -> None:
    assert hook.import_records([]).record_ids == ()
    assert requests_mock.call_count == 0


def test_import_rejects_unknown_date_format(hook: RedcapHook) -> None:
    with pytest.raises(ValueError, match="date_format"):
        hook.import_records([{"record_id": "1"}], date_format="ISO")


def test_import_count_answer_is_not_accepted_as_ids(hook: RedcapHook, requests_mock: Any) -> None:
    requests_mock.post(p.API_URL, text=p.IMPORT_COUNT, headers={"Content-Type": p.JSON})
    with pytest.raises(RedcapImportError):
        hook.import_records([{"record_id": "1001"}], record_id_field="record_id")


# -- export --------------------------------------------------------------------------------------------

EXPORT = content_is("record")
STORED = {
    "1001": [
        {"record_id": "1001", "redcap_event_name": "screening_arm_1", "age": "44"},
        {"record_id": "1001", "redcap_event_name": "baseline_arm_1", "age": ""},
    ],
    "1002": [{"record_id": "1002", "redcap_event_name": "screening_arm_1", "age": "51"}],
    "1003": [{"record_id": "1003", "redcap_event_name": "screening_arm_1", "age": "29"}],
}


def _export_like_redcap(request: Any, context: Any) -> str:
    """Export from STORED: unknown records are silently absent, as in REDCap."""
    context.headers["Content-Type"] = p.JSON
    form = form_of(request)
    asked = [v for k, v in form.items() if k.startswith("records[")]
    fields = [v for k, v in form.items() if k.startswith("fields[")]
    rows = [row for rid, rows in STORED.items() if not asked or rid in asked for row in rows]
    if fields:
        keep = [*fields, "redcap_event_name"]
        rows = [{k: v for k, v in row.items() if k in keep} for row in rows]
    return json.dumps(rows)


@pytest.fixture
def redcap_records(requests_mock: Any) -> Any:
    requests_mock.post(p.API_URL, additional_matcher=content_is("metadata"), **json_response(p.METADATA))
    requests_mock.post(p.API_URL, additional_matcher=EXPORT, text=_export_like_redcap)
    return requests_mock


def _exports(mocker: Any) -> list[dict[str, str]]:
    return [f for f in forms(mocker) if f["content"] == "record"]


def test_plain_export_is_one_request(hook: RedcapHook, redcap_records: Any) -> None:
    rows = hook.export_records(
        fields=["record_id", "age"], filter_logic="[age] > 30", export_data_access_groups=True
    )
    assert len(rows) == 4
    (form,) = forms(redcap_records)
    assert (form["type"], form["rawOrLabel"], form["exportDataAccessGroups"], form["filterLogic"]) == (
        "flat",
        "raw",
        "true",
        "[age] > 30",
    )
    assert not any(k.startswith("records") for k in form)


def test_batched_export_fetches_ids_first(hook: RedcapHook, redcap_records: Any) -> None:
    rows = hook.export_records(batch_size=2, events=["screening_arm_1"])
    assert [r["record_id"] for r in rows] == ["1001", "1001", "1002", "1003"]
    id_export, batch1, batch2 = _exports(redcap_records)
    assert (id_export["fields[0]"], id_export["events[0]"]) == ("record_id", "screening_arm_1")
    assert [v for k, v in batch1.items() if k.startswith("records[")] == ["1001", "1002"]
    assert [v for k, v in batch2.items() if k.startswith("records[")] == ["1003"]


def test_requested_records_that_do_not_come_back_are_reported(
    hook: RedcapHook, redcap_records: Any, hook_logs: list[dict[str, Any]]
) -> None:
    rows = hook.export_records(records=["1001", "9999", "1003", "8888"], fields=["age"])
    assert {r["record_id"] for r in rows} == {"1001", "1003"}
    assert hook.last_missing_records == ["9999", "8888"]
    (warning,) = [e for e in hook_logs if e["log_level"] == "warning"]
    assert "'9999', '8888'" in warning["event"]
    # The record id field was added so that missing records can be detected.
    (export,) = _exports(redcap_records)
    assert (export["fields[0]"], export["fields[1]"]) == ("record_id", "age")


def test_missing_records_can_raise(hook: RedcapHook, redcap_records: Any) -> None:
    with pytest.raises(RedcapMissingRecordsError) as info:
        hook.export_records(records=["1001", "9999"], on_missing="raise")
    assert info.value.records == ["9999"]


def test_missing_records_can_be_left_to_the_caller(
    hook: RedcapHook, redcap_records: Any, hook_logs: list[dict[str, Any]]
) -> None:
    hook.export_records(records=["1001", "9999"], on_missing="ignore")
    assert hook.last_missing_records == ["9999"]
    assert [e for e in hook_logs if e["log_level"] == "warning"] == []


def test_filter_logic_disables_the_missing_check(hook: RedcapHook, redcap_records: Any) -> None:
    hook.export_records(records=["1001", "9999"], filter_logic="[age] > 30")
    assert hook.last_missing_records == []
    assert [f["content"] for f in forms(redcap_records)] == ["record"]


def test_empty_record_list_exports_nothing(hook: RedcapHook, redcap_records: Any) -> None:
    assert hook.export_records(records=[]) == []
    assert redcap_records.call_count == 0


def test_long_record_lists_are_always_batched(hook: RedcapHook, redcap_records: Any) -> None:
    ids = [str(n) for n in range(1, 1202)]
    hook.export_records(records=ids)
    sizes = [len([k for k in f if k.startswith("records[")]) for f in _exports(redcap_records)]
    assert sizes == [500, 500, 201]


def test_iter_records_streams_batch_by_batch(hook: RedcapHook, redcap_records: Any) -> None:
    iterator = hook.iter_records(records=["1001", "1002", "1003"], batch_size=1)
    first = next(iterator)
    assert first["record_id"] == "1001"
    assert len(_exports(redcap_records)) == 1
    assert [r["record_id"] for r in iterator] == ["1001", "1002", "1003"]
    assert len(_exports(redcap_records)) == 3
