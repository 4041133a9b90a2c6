"""Classify REDCap responses into data or typed exceptions.

Pure: works on :class:`RawResponse` (status, body text, content type), so the sync (requests) and
async (httpx) hooks share it. REDCap wraps errors in an envelope (json ``{"error": ...}``, csv
``ERROR: ...``, xml ``<hash><error>``) only when the status is not 200; randomize refusals come back
as HTTP 200 plain text; proxies and single sign-on put HTML pages in front of the API. Nothing that
is not a well-formed answer is ever returned as data.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_redcap.exceptions import (
    RedcapAlreadyRandomizedError,
    RedcapAuthError,
    RedcapConnectionError,
    RedcapError,
    RedcapFieldError,
    RedcapInvalidRandomizationIdError,
    RedcapMissingStratificationError,
    RedcapNoAllocationsError,
    RedcapPermissionError,
    RedcapRandomizationError,
    RedcapRandomizationUnsupportedError,
    RedcapRateLimitError,
    RedcapRecordNotFoundError,
    RedcapRecordNotInDagError,
    RedcapRequestError,
    RedcapResponseError,
    RedcapServerError,
    RedcapValidationError,
)
from airflow_provider_redcap.models import RandomizationResult

#: Statuses worth retrying for an idempotent request (REDCap itself only sends 500 among these).
RETRYABLE_STATUS_CODES = frozenset({408, 500, 502, 503, 504})
EXCERPT_LENGTH = 200
MIN_RANDOMIZE_VERSION = (14, 7, 0)

_DEFAULT_MESSAGES = {
    400: "There were errors with your request.",
    401: "The API token was missing or incorrect",
    403: "You do not have permissions to use the API",
    404: "The requested URI was not found.",
    500: "The server encountered an error processing your request.",
    501: "The requested method is not implemented.",
}
_AUTH_MESSAGES = (
    "You do not have permissions to use the API",
    "You do not have API rights because your privileges have expired",
    "The API token was missing or incorrect",
)
_XML_ERROR_RE = re.compile(r"<hash>\s*<error>(?P<msg>.*)</error>\s*</hash>", re.DOTALL)
_IMPORT_LINE_RE = re.compile(
    r'^"(?P<record>(?:[^"]|"")*)","(?P<field>(?:[^"]|"")*)","(?P<value>(?:[^"]|"")*)",'
    r'"(?P<message>(?:[^"]|"")*)"[ \t\r]*$',
    re.MULTILINE,
)
_STRATUM_RE = re.compile(r"^\s*(?P<field>.+?)\s*\(event\s*(?P<event>\d+)?\s*\)\s*$")
_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
_DROP_BLOCKS_RE = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TITLE_RE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_TAG_RE = re.compile(r"<[^>]+>")
_ANY_TAG_RE = re.compile(r"<[a-z!/][^>]*>")

RANDOMIZE_PREFIX = "Cannot randomize."
INVALID_RID_MESSAGE = "Invalid data supplied"


@dataclass(frozen=True)
class RawResponse:
    """A transport-neutral HTTP response.

    :param status_code: HTTP status.
    :param text: the decoded body.
    :param content_type: the ``Content-Type`` header ("" when absent).
    :param location: the ``Location`` header of a redirect, if any.
    """

    status_code: int
    text: str
    content_type: str = ""
    location: str | None = None


def excerpt(text: str, limit: int = EXCERPT_LENGTH) -> str:
    """A short, tag-stripped, whitespace-collapsed excerpt of a body for error messages."""
    title = _TITLE_RE.search(text)
    body = _DROP_BLOCKS_RE.sub(" ", text)
    stripped = html.unescape(_TAG_RE.sub(" ", body))
    if title:
        stripped = f"{html.unescape(_TAG_RE.sub(' ', title.group(1)))} | {stripped}"
    collapsed = " ".join(stripped.split())
    return collapsed if len(collapsed) <= limit else collapsed[: limit - 1].rstrip() + "…"


#: OpenSSL's words for a handshake answered by something that is not TLS (plain http, usually).
_NOT_TLS_MARKERS = ("wrong_version_number", "wrong version number", "record layer failure", "http_request")


def tls_hint(error_text: str) -> str:
    """What to check after a TLS failure: the URL when the server does not speak TLS, else the CA."""
    lowered = error_text.lower()
    if any(marker in lowered for marker in _NOT_TLS_MARKERS):
        return "It looks like the server does not answer https on this port; check the URL's scheme and port."
    return "Check the connection's verify_ssl / ca_bundle extras."


def looks_like_html(response: RawResponse) -> bool:
    """Whether the body is a web page (login, maintenance, firewall) rather than API output."""
    head = response.text.lstrip()[:1024].lower()
    if head.startswith(("<!doctype html", "<html")) or any(t in head for t in ("<body", "<head", "<title")):
        return True
    # PHP's default content type is text/html, so plain-text answers (next record name) carry it too:
    # only a body with markup is a page.
    return "html" in response.content_type.lower() and _ANY_TAG_RE.search(head) is not None


def unwrap_error(text: str) -> str | None:
    """REDCap's message from a json/csv/xml error envelope, or ``None`` if the body is not one."""
    body = text.strip()
    if body.startswith("{"):
        try:
            data = json.loads(body)
        except ValueError:
            return None
        if isinstance(data, dict) and "error" in data:
            return str(data["error"])
        return None
    if body.startswith("ERROR:"):
        return body[len("ERROR:") :].strip()
    match = _XML_ERROR_RE.search(body)
    if match and body.lstrip().startswith(("<?xml", "<hash")):
        return match.group("msg").strip()
    return None


def error_message(response: RawResponse) -> str:
    """The error text REDCap sent (unwrapped), an excerpt of any other body, or the status default."""
    message = unwrap_error(response.text)
    if message is not None:
        return message
    if response.text.strip():
        return excerpt(response.text)
    return _DEFAULT_MESSAGES.get(response.status_code, f"HTTP {response.status_code} with an empty body")


def parse_import_errors(message: str) -> list[RedcapFieldError]:
    """Parse the ``"record","field","value","message"`` lines of an import refusal (quotes doubled)."""

    def unquote(value: str) -> str:
        return value.replace('""', '"')

    return [
        RedcapFieldError(
            record=unquote(m.group("record")),
            field=unquote(m.group("field")),
            value=unquote(m.group("value")),
            message=unquote(m.group("message")),
        )
        for m in _IMPORT_LINE_RE.finditer(message)
    ]


def _what(content: str, action: str | None) -> str:
    return f"content={content}" + (f", action={action}" if action else "")


def _redirect_error(response: RawResponse, what: str) -> RedcapResponseError:
    target = ""
    if response.location:
        parts = urlsplit(response.location)
        target = f" to {parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else ""
    return RedcapResponseError(
        f"REDCap answered the API request ({what}) with HTTP {response.status_code}, a redirect{target}. "
        "The API URL is probably wrong or behind a single sign-on login page; set the URL the API "
        "answers at directly (it is not followed, so the token is never re-sent elsewhere).",
        status_code=response.status_code,
    )


def _html_error(response: RawResponse, what: str) -> RedcapResponseError:
    return RedcapResponseError(
        f"REDCap answered the API request ({what}) with an HTML page (HTTP {response.status_code}) "
        "instead of API output - a single sign-on login, maintenance or firewall page? "
        f"Excerpt: {excerpt(response.text)!r}",
        status_code=response.status_code,
        redcap_message=excerpt(response.text),
    )


def status_error(response: RawResponse, *, content: str, action: str | None = None) -> RedcapError:
    """The typed exception for a response whose status is not 200 (the caller checked that)."""
    status = response.status_code
    what = _what(content, action)
    if 300 <= status < 400:
        return _redirect_error(response, what)
    if status >= 500 or status == 408:
        detail = excerpt(response.text) if looks_like_html(response) else error_message(response)
        # REDCap sends 501 only for a request that is not a POST to its API folder: a wrong URL.
        hint = " REDCap's API URL ends in /api/ - check the connection's host." if status == 501 else ""
        return RedcapServerError(
            f"REDCap server error HTTP {status} ({what}): {detail}{hint}",
            status_code=status,
            redcap_message=detail,
        )
    if looks_like_html(response):
        return _html_error(response, what)
    message = error_message(response)
    if status == 429:
        return RedcapRateLimitError(
            f"HTTP 429: REDCap has banned this client's IP address ({message}). The ban is permanent "
            "until a REDCap administrator lifts it; the request was not retried.",
            status_code=status,
            redcap_message=message,
        )
    if status in (401, 403) and message.startswith(_AUTH_MESSAGES):
        return RedcapAuthError(
            f"REDCap refused the API token (HTTP {status}, {what}): {message}",
            status_code=status,
            redcap_message=message,
        )
    if status == 403 or (status == 400 and message.startswith("Insufficient user privileges")):
        return RedcapPermissionError(
            f"The API token's user lacks a privilege (HTTP {status}, {what}): {message}",
            status_code=status,
            redcap_message=message,
        )
    if status == 400 and content == "record" and action == "import":
        errors = parse_import_errors(message)
        return RedcapValidationError(
            f"REDCap refused the import (HTTP 400); nothing from this request was saved: {message}",
            errors=errors,
            status_code=status,
            redcap_message=message,
        )
    return RedcapRequestError(
        f"REDCap refused the request (HTTP {status}, {what}): {message}",
        status_code=status,
        redcap_message=message,
    )


def check_response(response: RawResponse, *, content: str, action: str | None = None) -> None:
    """Raise for anything that is not a 200 answer from the API itself (error status, HTML page)."""
    if response.status_code != 200:
        raise status_error(response, content=content, action=action)
    if looks_like_html(response):
        raise _html_error(response, _what(content, action))


def parse_json(response: RawResponse, *, content: str, action: str | None = None) -> Any:
    """Decode a 200 JSON body; an unparsable body or an error envelope is an exception, not data."""
    check_response(response, content=content, action=action)
    what = _what(content, action)
    try:
        data = json.loads(response.text)
    except ValueError:
        raise RedcapResponseError(
            f"REDCap's answer ({what}) is not valid JSON. Excerpt: {excerpt(response.text)!r}",
            status_code=response.status_code,
            redcap_message=excerpt(response.text),
        ) from None
    if isinstance(data, dict) and set(data) == {"error"}:
        message = str(data["error"])
        raise RedcapRequestError(
            f"REDCap returned an error ({what}): {message}", status_code=200, redcap_message=message
        )
    return data


def parse_text(response: RawResponse, *, content: str, action: str | None = None) -> str:
    """A 200 non-JSON body (csv, xml, plain text); error envelopes in it still raise."""
    check_response(response, content=content, action=action)
    message = unwrap_error(response.text)
    if message is not None:
        raise RedcapRequestError(
            f"REDCap returned an error ({_what(content, action)}): {message}",
            status_code=200,
            redcap_message=message,
        )
    return response.text


def classify_response(
    response: RawResponse, *, content: str, action: str | None = None, format: str = "json"
) -> Any:
    """Data from a response: parsed JSON for ``format="json"``, text otherwise; raises on errors."""
    if format == "json":
        return parse_json(response, content=content, action=action)
    return parse_text(response, content=content, action=action)


def expect_list(data: Any, *, content: str) -> list[Any]:
    """Guard for methods that must answer a JSON array."""
    if not isinstance(data, list):
        raise RedcapResponseError(
            f"REDCap's answer to content={content} is a JSON {type(data).__name__}, expected an array."
        )
    return data


def expect_dict(data: Any, *, content: str) -> dict[str, Any]:
    """Guard for methods that must answer a JSON object."""
    if not isinstance(data, dict):
        raise RedcapResponseError(
            f"REDCap's answer to content={content} is a JSON {type(data).__name__}, expected an object."
        )
    return data


def parse_version(text: str) -> tuple[int, ...]:
    """``"15.7.6"`` -> ``(15, 7, 6)``; anything else raises :class:`RedcapResponseError`."""
    value = text.strip()
    if not _VERSION_RE.match(value):
        raise RedcapResponseError(
            f"REDCap's version answer is not a version number: {excerpt(value)!r}", status_code=200
        )
    return tuple(int(part) for part in value.split("."))


def parse_missing_strata(text: str) -> list[tuple[str, int | None]]:
    """``"...fields: sex (event 41),agecat (event 41)"`` -> ``[("sex", 41), ("agecat", 41)]``."""
    _, _, tail = text.partition(":")
    missing: list[tuple[str, int | None]] = []
    for entry in tail.split(","):
        entry = entry.strip().rstrip(".")
        if not entry:
            continue
        match = _STRATUM_RE.match(entry)
        if match:
            event = match.group("event")
            missing.append((match.group("field"), int(event) if event else None))
        else:
            missing.append((entry, None))
    return missing


def randomize_refusal(
    text: str, *, record: str, randomization_id: int, status_code: int | None = 200
) -> RedcapRandomizationError | None:
    """The typed error for a randomize refusal body, or ``None`` if the body is not one."""
    body = text.strip()
    if body != INVALID_RID_MESSAGE and not body.startswith(RANDOMIZE_PREFIX):
        return None
    reason = body[len(RANDOMIZE_PREFIX) :].strip() if body.startswith(RANDOMIZE_PREFIX) else body
    kwargs: dict[str, Any] = {
        "record": record,
        "randomization_id": randomization_id,
        "status_code": status_code,
        "redcap_message": body,
    }
    prefix = f"REDCap refused to randomize record {record!r} in randomization {randomization_id}: "
    lowered = reason.lower()
    if body == INVALID_RID_MESSAGE:
        return RedcapInvalidRandomizationIdError(
            prefix + f"{body} (randomization_id {randomization_id} is not a randomization model of "
            "this project, or randomization is not enabled).",
            **kwargs,
        )
    if lowered.startswith("record does not exist"):
        return RedcapRecordNotFoundError(
            prefix + f"{body} (it must exist in the arm of the model's target event).", **kwargs
        )
    if lowered.startswith("randomization already completed"):
        return RedcapAlreadyRandomizedError(prefix + body, **kwargs)
    if lowered.startswith("record not assigned to a dag"):
        return RedcapRecordNotInDagError(prefix + body, **kwargs)
    if lowered.startswith("missing stratification data"):
        missing = parse_missing_strata(reason)
        return RedcapMissingStratificationError(prefix + body, missing=missing, **kwargs)
    if lowered.startswith("no allocations available"):
        return RedcapNoAllocationsError(
            prefix + f"{body} (the allocation table has no free row left for this record's stratum).",
            **kwargs,
        )
    return RedcapRandomizationError(prefix + body, **kwargs)


def parse_randomize_response(
    response: RawResponse, *, record: str, randomization_id: int
) -> RandomizationResult:
    """Turn a Randomize Record answer into a result, or raise the matching randomization error.

    REDCap sends every refusal except its internal error as HTTP 200 plain text, even for
    ``format=json`` with an ``application/json`` content type.
    """
    what = {"content": "record", "action": "randomize"}
    if response.status_code == 200 and not looks_like_html(response):
        refusal = randomize_refusal(response.text, record=record, randomization_id=randomization_id)
        if refusal is not None:
            raise refusal
    if response.status_code == 400 and not looks_like_html(response):
        message = error_message(response)
        refusal = randomize_refusal(
            message, record=record, randomization_id=randomization_id, status_code=400
        )
        if refusal is not None:
            raise refusal
        if 'parameter "action" is not valid' in message:
            raise RedcapRandomizationUnsupportedError(
                f"This REDCap server has no Randomize Record API method ({message}); it needs "
                "REDCap 14.7.0 or later.",
                record=record,
                randomization_id=randomization_id,
                status_code=400,
                redcap_message=message,
            )
    data = expect_dict(parse_json(response, **what), content="record (randomize)")
    return randomization_result(data, record=record, randomization_id=randomization_id)


def randomization_result(data: dict[str, Any], *, record: str, randomization_id: int) -> RandomizationResult:
    """Build a :class:`RandomizationResult` from REDCap's success object (keys validated)."""
    value = data.get("target_field")
    if value is None or str(value) == "":
        raise RedcapResponseError(
            "REDCap's randomize answer has no target_field value; the allocation is unknown. Check the "
            f"record's target field in REDCap before retrying. Keys received: {sorted(data)}",
            status_code=200,
        )
    try:
        rid = int(data.get("randomization_id", randomization_id))
    except (TypeError, ValueError):
        raise RedcapResponseError(
            "REDCap's randomize answer has a randomization_id that is not an integer.", status_code=200
        ) from None
    alternate = data.get("target_field_alt")
    alternate_value = None if alternate is None else str(alternate)
    return RandomizationResult(
        randomization_id=rid,
        record=str(data.get("record", record)),
        # Servers before the undocumented key existed do not name the field; callers may fill it in.
        target_field=str(data.get("target_field_name") or ""),
        value=str(value),
        alternate_value=alternate_value,
        concealed=alternate_value == "*",
    )


def parse_import_ids(data: Any, *, auto_ids: bool) -> tuple[list[str], dict[str, str]]:
    """Parse ``returnContent=ids`` (``["1","2"]``) or ``auto_ids`` (``["323,10"]``: new, original).

    :return: saved record ids (new ids when auto-numbering) and, for ``auto_ids``, original -> new.
    """
    items: Sequence[Any] = expect_list(data, content="record (import)")
    ids: list[str] = []
    mapping: dict[str, str] = {}
    for item in items:
        if not isinstance(item, str | int):
            raise RedcapResponseError(f"REDCap's import answer holds a {type(item).__name__}, not an id.")
        text = str(item)
        if auto_ids:
            new, sep, original = text.partition(",")
            if not sep:
                raise RedcapResponseError(
                    f"REDCap's auto_ids answer item {excerpt(text)!r} is not a 'new,original' pair."
                )
            ids.append(new)
            mapping[original] = new
        else:
            ids.append(text)
    return ids, mapping


def parse_count(data: Any, *, content: str) -> int:
    """``{"count": N}`` -> N; a count that is not an integer raises."""
    count = expect_dict(data, content=content).get("count")
    if isinstance(count, bool) or not isinstance(count, int | str) or not str(count).strip().isdigit():
        raise RedcapResponseError(f"REDCap's count answer (content={content}) is not an integer: {count!r}")
    return int(count)


def should_retry(exc: BaseException, *, idempotent: bool) -> bool:
    """The retry policy shared by both hooks.

    Idempotent calls retry connection failures, timeouts and 408/500/502/503/504. Calls that are not
    safe to repeat (randomize, auto-numbered import) retry only failures that certainly happened
    before the request was sent. Nothing else (429, other 4xx, refusals) is ever retried.
    """
    if isinstance(exc, RedcapConnectionError):
        return idempotent or not exc.may_have_reached_server
    if isinstance(exc, RedcapServerError):
        return idempotent and exc.status_code in RETRYABLE_STATUS_CODES
    return False
