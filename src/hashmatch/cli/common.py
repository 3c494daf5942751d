"""What every command shares: opening the store, who is acting, reading and writing, and
progress bars on an interactive terminal (tqdm, silent otherwise)."""

from __future__ import annotations

import contextlib
import getpass
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from hashmatch.config import Settings

if TYPE_CHECKING:
    from hashmatch.store import Store


def open_store(settings: Settings) -> Store:
    # Imported here: `hashmatch hash` builds the parser too and must not load SQLAlchemy.
    from hashmatch.store import Store, database_url

    return Store.open(
        database_url(settings.data_dir, settings.database_url),
        bounds=settings.threshold_bounds,
        instance=settings.instance_name,
    )


def actor(args: Any) -> str:
    if args.actor:
        return str(args.actor)
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def stderr(message: str) -> None:
    print(f"hashmatch: {message}", file=sys.stderr)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


@contextlib.contextmanager
def read_input(path: str) -> Iterator[BinaryIO]:
    if path == "-":
        yield sys.stdin.buffer
        return
    with Path(path).open("rb") as stream:
        yield stream


@contextlib.contextmanager
def write_output(path: str | None, newline: str | None = "") -> Iterator[TextIO]:
    if path is None or path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    with Path(path).open("w", encoding="utf-8", newline=newline) as stream:
        yield stream


def progress(**options: Any) -> Any:
    """A tqdm bar on stderr, shown only when stderr is a terminal; its ``write`` prints
    either way."""
    from tqdm import tqdm

    return tqdm(file=sys.stderr, disable=not sys.stderr.isatty(), **options)
