"""One API request from parameters to answer: rate limit, faults, token, dispatch, transaction.

REDCap's order: token and rights, then ``content``, then ``action``, then the method's privilege, then
the project's state, then the method itself. Each request's reads and writes share one transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from airflow_provider_redcap.emulator import auth
from airflow_provider_redcap.emulator.context import Context
from airflow_provider_redcap.emulator.faults import BAD_GATEWAY_PAGE, HTML_PAGE, FaultSet
from airflow_provider_redcap.emulator.formats import (
    HTML_CONTENT_TYPE,
    ApiError,
    ApiResponse,
    error_response,
)
from airflow_provider_redcap.emulator.methods import KNOWN_CONTENTS, METHODS, Method
from airflow_provider_redcap.emulator.params import Params
from airflow_provider_redcap.emulator.project import Project
from airflow_provider_redcap.emulator.storage import Storage

log = logging.getLogger(__name__)

_PRIVILEGES = {
    "export": ("api_export", auth.NO_EXPORT),
    "import": ("api_import", auth.NO_IMPORT),
    "randomize": ("random_perform", auth.NO_RANDOMIZE),
}


@dataclass
class Outcome:
    response: ApiResponse
    drop: bool = False  # cut the connection after the headers (drop_after_commit)


def method_key(params: Params) -> str:
    """The fault-injection key of a request, from its parameters alone."""
    content = params.get("content")
    if content == "record":
        action = params.get("action") or ("import" if params.has("data") else "export")
        return f"record.{action}"
    return content


def _action(content: str, params: Params) -> str:
    action = params.get("action")
    if content == "record" and action in ("delete", "rename", "randomize", "export", "import"):
        return action
    if action:
        return action
    return "import" if params.has("data") else "export"


def _project_state(project: Project) -> None:
    info = project.info
    if info.get("deleted"):
        raise ApiError(400, "The REDCap project no longer exists because it was deleted.")
    if info.get("completed"):
        raise ApiError(400, "The REDCap project is no longer accessible because it was marked as Completed.")
    if info.get("offline"):
        raise ApiError(400, "This project is currently OFFLINE and is not accessible to normal users.")


def _check(method: Method, ctx: Context) -> None:
    user = ctx.user
    if method.privilege in _PRIVILEGES:
        right, message = _PRIVILEGES[method.privilege]
        auth.require(user, right, message)
    elif method.privilege == "delete":
        auth.require(user, "record_delete", auth.NO_DELETE)
        auth.require(user, "api_import", auth.NO_IMPORT)
    elif method.privilege == "rename":
        auth.require(user, "api_import", auth.NO_IMPORT)
        auth.require(user, "record_rename", "You do not have Rename Record privileges")


class Api:
    """The REDCap API of one emulated project.

    :param project: the loaded project folder.
    :param storage: its database.
    :param faults: the active fault injections.
    """

    def __init__(self, project: Project, storage: Storage, faults: FaultSet) -> None:
        self.project = project
        self.storage = storage
        self.faults = faults

    def status(self) -> int:
        value = self.storage.get_meta("project_status")
        return int(value) if value is not None else self.project.status

    def handle(self, pairs: Iterable[tuple[str, str]], client_ip: str = "127.0.0.1") -> Outcome:
        params = Params(pairs)
        fired = self.faults.draw(method_key(params))
        for fault in fired:
            if fault.kind == "delay":
                time.sleep(fault.seconds)
        for fault in fired:
            if fault.kind == "error_before_commit":
                return Outcome(self._fault_error(fault.status, params))
            if fault.kind == "html_200":
                return Outcome(ApiResponse(200, HTML_PAGE, HTML_CONTENT_TYPE))
        response = self._run(params, client_ip)
        for fault in fired:
            if fault.kind == "error_after_commit":
                return Outcome(self._fault_error(fault.status, params))
            if fault.kind == "drop_after_commit":
                return Outcome(response, drop=True)
        return Outcome(response)

    def _fault_error(self, status: int, params: Params) -> ApiResponse:
        if status == 502:
            return ApiResponse(502, BAD_GATEWAY_PAGE, "text/html")
        return error_response(500, "", params.return_format)

    def _run(self, params: Params, client_ip: str) -> ApiResponse:
        return_format = params.return_format
        try:
            if self.project.info.get("api_enabled", True) is False:
                raise ApiError(400, "The REDCap API is not enabled.")
            with self.storage.transaction() as tx:
                try:
                    user = auth.authenticate(self.project, params.get("token"))
                except ApiError as exc:
                    if exc.message == auth.NO_PERMISSION:
                        tx.log(
                            "[unknown]",
                            "Failed API request (invalid token)",
                            f"IP {client_ip}",
                            logtype="manage",
                        )
                        return error_response(exc.status, exc.message, return_format)
                    raise
                content = params.get("content")
                if content not in METHODS:
                    if content in KNOWN_CONTENTS:
                        raise ApiError(400, f'The REDCap emulator does not implement content "{content}"')
                    raise ApiError(400, 'The value of the parameter "content" is not valid')
                method = METHODS[content].get(_action(content, params))
                if method is None:
                    raise ApiError(400, 'The value of the parameter "action" is not valid')
                ctx = Context(self.project, tx, user, params, self.status(), client_ip)
                _check(method, ctx)
                _project_state(self.project)
                return method.handler(ctx)
        except ApiError as exc:
            return error_response(exc.status, exc.message, return_format)
        except Exception:
            log.exception("REDCap emulator: internal error")
            return error_response(500, "", return_format)
