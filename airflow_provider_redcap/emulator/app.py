"""The Starlette app: REDCap's ``POST /api/`` plus the emulator's ``/_emulator/`` admin routes.

Anything else, including any other HTTP method on ``/api/``, answers 501 with REDCap's body; ``/api``
without the slash is redirected the way Apache does it in front of REDCap.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from airflow_provider_redcap.emulator.faults import Fault
from airflow_provider_redcap.emulator.formats import HTML_CONTENT_TYPE, ApiResponse, error_response
from airflow_provider_redcap.emulator.ratelimit import banned_message

if TYPE_CHECKING:
    from airflow_provider_redcap.emulator.server import RedcapEmulator


class DroppedConnection(Exception):
    """Raised after the headers are sent to make the server cut the connection (a fault, on purpose)."""


class _DropFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection)


logging.getLogger("uvicorn.error").addFilter(_DropFilter())


class DroppingResponse(Response):
    """Sends the status line and headers, half of the body, then aborts the connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send(
            {"type": "http.response.body", "body": self.body[: len(self.body) // 2], "more_body": True}
        )
        raise DroppedConnection("connection dropped by fault injection")


def _to_response(resp: ApiResponse, drop: bool = False) -> Response:
    cls = DroppingResponse if drop else Response
    response = cls(resp.body.encode("utf-8"), status_code=resp.status, headers=resp.headers)
    response.headers["content-type"] = resp.content_type
    return response


def _not_implemented() -> Response:
    resp = error_response(501, "", "xml")
    return _to_response(resp)


async def _pairs(request: Request) -> list[tuple[str, str]]:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_fields=1_000_000, max_part_size=256 * 1024 * 1024)
        return [
            (k, v if isinstance(v, str) else (await v.read()).decode("utf-8", "replace"))
            for k, v in form.multi_items()
        ]
    body = (await request.body()).decode("utf-8", "replace")
    return parse_qsl(body, keep_blank_values=True)


def build_app(emulator: RedcapEmulator) -> Starlette:
    async def api(request: Request) -> Response:
        if request.method != "POST":
            return _not_implemented()
        ip = request.client.host if request.client else "127.0.0.1"
        if not emulator.rate_limiter.check(ip):
            return Response(banned_message(ip), status_code=429, headers={"content-type": HTML_CONTENT_TYPE})
        pairs = await _pairs(request)
        outcome = await run_in_threadpool(emulator.api.handle, pairs, ip)
        return _to_response(outcome.response, outcome.drop)

    async def redirect(request: Request) -> Response:
        # Apache answers a directory URL without its slash with a 301; clients that follow it turn the
        # POST into a GET and get the 501, exactly what happens against a real REDCap server.
        return Response(status_code=301, headers={"location": str(request.url.replace(path="/api/"))})

    async def fallback(request: Request) -> Response:
        return _not_implemented()

    async def allocations(request: Request) -> Response:
        rid = request.query_params.get("randomization_id")
        rows = await run_in_threadpool(emulator.admin.allocations, int(rid) if rid else None)
        return JSONResponse(rows)

    async def records(request: Request) -> Response:
        fields = [f for f in request.query_params.get("fields", "").split(",") if f] or None
        return JSONResponse(await run_in_threadpool(emulator.admin.records, fields))

    async def log(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(emulator.admin.log))

    async def reset(request: Request) -> Response:
        await run_in_threadpool(emulator.admin.reset)
        return JSONResponse({"reset": True})

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            emulator.admin.clear_faults()
            return JSONResponse({"faults": []})
        if request.method == "POST":
            try:
                payload: Any = json.loads(await request.body() or b"{}")
                for item in payload if isinstance(payload, list) else [payload]:
                    emulator.admin.add_fault(Fault.from_dict(item))
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"faults": emulator.admin.faults()})

    async def remove_randomization(request: Request) -> Response:
        try:
            payload = json.loads(await request.body() or b"{}")
            await run_in_threadpool(
                emulator.admin.remove_randomization, int(payload["randomization_id"]), str(payload["record"])
            )
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"removed": True})

    async def status(request: Request) -> Response:
        payload = json.loads(await request.body() or b"{}")
        try:
            await run_in_threadpool(emulator.admin.set_project_status, int(payload["status"]))
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"status": int(payload["status"])})

    every = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
    routes = [
        Route("/api/", api, methods=every),
        Route("/api", redirect, methods=every),
        Route("/_emulator/allocations", allocations, methods=["GET"]),
        Route("/_emulator/records", records, methods=["GET"]),
        Route("/_emulator/log", log, methods=["GET"]),
        Route("/_emulator/reset", reset, methods=["POST"]),
        Route("/_emulator/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_emulator/remove_randomization", remove_randomization, methods=["POST"]),
        Route("/_emulator/project_status", status, methods=["POST"]),
        Route("/{path:path}", fallback, methods=every),
    ]
    return Starlette(routes=routes)
