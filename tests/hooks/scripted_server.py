"""A loopback HTTP server that answers POSTs from a script, so real urllib3/requests code paths
(and their DEBUG logging) run in tests. Not a REDCap emulator: it only replays canned answers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Answer:
    """One scripted reply. ``truncate``: promise more bytes than sent, then close; ``drop``: close
    the connection without answering."""

    status: int = 200
    body: str = ""
    content_type: str = "application/json; charset=utf-8"
    truncate: bool = False
    drop: bool = False


@dataclass
class Script:
    answers: list[Answer] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)

    def next(self) -> Answer:
        return self.answers.pop(0) if self.answers else Answer(500, '{"error":"script exhausted"}')


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    script: Script

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.script.bodies.append(self.rfile.read(length).decode())
        answer = self.script.next()
        if answer.drop:
            self.close_connection = True
            self.connection.close()
            return
        data = answer.body.encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(data) + (50 if answer.truncate else 0)))
        if answer.truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        if answer.truncate:
            self.wfile.flush()
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def scripted_server() -> Iterator[tuple[str, Script]]:
    """Yield ``(api_url, script)``; append :class:`Answer` objects to ``script.answers``."""
    script = Script()
    handler = type("Handler", (_Handler,), {"script": script})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/", script
    finally:
        server.shutdown()
        server.server_close()
