"""``hashmatch serve`` and ``hashmatch migrate``: the HTTP service, and its one-off schema
step."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hashmatch.cli.common import open_store
from hashmatch.config import Settings


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    from hashmatch.api.server import serve

    serve(settings)
    return 0


def run_migrate(args: argparse.Namespace, settings: Settings) -> int:
    open_store(settings).close()  # opening migrates, once, under the writers' lock
    print("hashmatch: database schema is up to date", file=sys.stderr)
    return 0


def add_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the HTTP service",
        description="Run the HTTP service. Settings come from HASHMATCH_* environment "
        "variables; the flags below override them.",
    )
    serve.add_argument("--host", help="bind address (HASHMATCH_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (HASHMATCH_PORT, default 8000)")
    serve.add_argument("--data-dir", type=Path, help="data directory (HASHMATCH_DATA_DIR)")
    serve.add_argument(
        "--workers", type=int, help="worker processes, each a replica (HASHMATCH_WORKERS)"
    )
    serve.set_defaults(handler=run_serve)

    migrate = commands.add_parser(
        "migrate", help="bring the database schema up to date (a one-off deployment step)"
    )
    migrate.set_defaults(handler=run_migrate)
