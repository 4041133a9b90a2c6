"""``redcap-emulator serve``: run the emulator for a project folder until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from airflow_provider_redcap.emulator.faults import Fault
from airflow_provider_redcap.emulator.project import ProjectError
from airflow_provider_redcap.emulator.server import RedcapEmulator, demo_project_dir


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="redcap-emulator", description="A local REDCap API emulator.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a project folder's REDCap API")
    serve.add_argument("--project", required=True, help='project folder, or "demo" for the packaged demo')
    serve.add_argument("--db", help="SQLite state file (reused if present; a temporary file if omitted)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    serve.add_argument("--port", type=int, default=0, help="port (0 picks a free one)")
    serve.add_argument("--ready-file", help="write the URL, tokens and pid here as JSON once serving")
    serve.add_argument("--rate-limit", type=int, help="ban client IPs above N requests a minute")
    serve.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="METHOD:KIND[:PROBABILITY[:SEED]]",
        help="inject a fault, e.g. record.randomize:drop_after_commit:0.2:7 (repeatable)",
    )
    return parser


def serve(args: argparse.Namespace) -> int:
    project = demo_project_dir() if args.project == "demo" else Path(args.project)
    try:
        faults = [Fault.parse(spec) for spec in args.fault]
        emulator = RedcapEmulator(
            project, db_path=args.db, rate_limit_per_minute=args.rate_limit, faults=faults
        )
    except (ProjectError, ValueError) as exc:
        print(f"redcap-emulator: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        with emulator.serve(host=args.host, port=args.port) as server:
            print(f"API URL: {server.url}", flush=True)
            for username, token in server.tokens.items():
                print(f"token {username}: {token}", flush=True)
            if args.ready_file:
                ready = {
                    "url": server.url,
                    "admin_url": server.admin_url,
                    "tokens": server.tokens,
                    "pid": os.getpid(),
                }
                tmp = Path(f"{args.ready_file}.tmp")
                tmp.write_text(json.dumps(ready), encoding="utf-8")
                tmp.replace(args.ready_file)  # readers never see a half-written file
            while not stop.wait(0.2):
                pass
    finally:
        emulator.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
