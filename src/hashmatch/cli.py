"""``hashmatch`` commands: thin wrappers over the cores.

Start-up stays light: a command imports what it needs when it runs, so ``hashmatch hash`` on a
handful of files never loads the web framework or FAISS.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final, TextIO

from hashmatch import __version__
from hashmatch.config import Settings
from hashmatch.errors import (
    ConfigError,
    Conflict,
    HashFormatError,
    HashmatchError,
    ImportRejected,
    InvalidList,
    MediaError,
    NotFound,
    StoreUnavailable,
    UnreadableFile,
)

EXIT_OK: Final = 0
EXIT_FAILURES: Final = 1  # the command ran, but some inputs failed
EXIT_USAGE: Final = 2  # argparse's own status for bad arguments

#: Domain errors that end a command, by exit status (sysexits.h where one fits).
EXIT_CODES: Final[tuple[tuple[type[HashmatchError], int], ...]] = (
    (HashFormatError, EXIT_USAGE),
    (InvalidList, EXIT_USAGE),
    (NotFound, 66),  # EX_NOINPUT
    (Conflict, 73),  # EX_CANTCREAT
    (ImportRejected, 65),  # EX_DATAERR
    (ConfigError, 78),  # EX_CONFIG
    (UnreadableFile, 66),  # EX_NOINPUT
    (MediaError, 65),  # EX_DATAERR
    (StoreUnavailable, 69),  # EX_UNAVAILABLE
    (HashmatchError, 70),  # EX_SOFTWARE
)


def exit_code_for(error: HashmatchError) -> int:
    for error_type, code in EXIT_CODES:
        if isinstance(error, error_type):
            return code
    return EXIT_FAILURES


def _stderr(message: str) -> None:
    print(f"hashmatch: {message}", file=sys.stderr)


# --- hashmatch hash -------------------------------------------------------------------------


def _cmd_hash(args: argparse.Namespace, settings: Settings) -> int:
    from hashmatch.batch import default_jobs, hash_files, iter_files
    from hashmatch.formats import ErrorRecord, Format, HashRecord, RecordWriter
    from hashmatch.hashing import parse_algorithms

    algorithms = parse_algorithms(args.algorithms)
    jobs = args.jobs if args.jobs and args.jobs > 0 else default_jobs()
    files = list(iter_files(Path(p) for p in args.paths))
    failed = low_quality = 0
    with _output(args.output) as stream, _progress(len(files), "hashing") as progress:
        writer = RecordWriter(stream, Format(args.format))
        for result in hash_files(files, algorithms, settings.media_limits, jobs=jobs):
            progress.update(1)
            if result.error is not None:
                failed += 1
                progress.write(f"hashmatch: {result.path}: {result.error.message}")
                writer.write(ErrorRecord(result.path, result.error))
                continue
            for value in result.hashes:
                low_quality += value.low_quality
                writer.write(HashRecord(result.path, value, result.size))
    summary = f"hashed {len(files) - failed} of {len(files)} files"
    if failed:
        summary += f", {failed} failed"
    if low_quality:
        summary += f", {low_quality} low-quality PDQ hashes (quality < 50) flagged"
    if args.summary or failed or low_quality:
        _stderr(summary)
    return EXIT_FAILURES if failed else EXIT_OK


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    if path is None or path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    with Path(path).open("w", encoding="utf-8", newline="") as stream:
        yield stream


class _Progress:
    """tqdm on an interactive stderr; otherwise nothing but the messages themselves."""

    def __init__(self, total: int, label: str) -> None:
        self._bar = None
        if sys.stderr.isatty() and total > 1:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=label, unit="file", file=sys.stderr)

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def write(self, message: str) -> None:
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextlib.contextmanager
def _progress(total: int, label: str) -> Iterator[_Progress]:
    progress = _Progress(total, label)
    try:
        yield progress
    finally:
        progress.close()


# --- hashmatch serve ------------------------------------------------------------------------


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from hashmatch.serve import serve

    serve(settings)
    return EXIT_OK


# --- entry point ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hashmatch",
        description="Perceptual-hash matching of known abusive images.",
    )
    parser.add_argument("--version", action="version", version=f"hashmatch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    hash_cmd = commands.add_parser(
        "hash",
        help="hash image files and folders locally",
        description="Hash image files (folders recursively). Images never leave this machine; "
        "share the output. Exit status 1 if any file failed.",
    )
    hash_cmd.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    hash_cmd.add_argument(
        "-a",
        "--algorithms",
        default="pdq,md5",
        help="comma-separated: pdq, phash, md5, sha256 (default: pdq,md5)",
    )
    hash_cmd.add_argument(
        "-f",
        "--format",
        choices=["jsonl", "csv", "tx"],
        default="jsonl",
        help="jsonl (default), csv with a header row, or tx lines ('pdq <hex>')",
    )
    hash_cmd.add_argument("-o", "--output", help="write here instead of standard output")
    hash_cmd.add_argument(
        "-j", "--jobs", type=int, default=0, help="worker processes (default: all cores)"
    )
    hash_cmd.add_argument(
        "--summary", action="store_true", help="always print a summary line on stderr"
    )
    hash_cmd.set_defaults(handler=_cmd_hash)

    serve_cmd = commands.add_parser(
        "serve",
        help="run the HTTP service",
        description="Run the HTTP service. Settings come from HASHMATCH_* environment "
        "variables; the flags below override them.",
    )
    serve_cmd.add_argument("--host", help="bind address (HASHMATCH_HOST, default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, help="port (HASHMATCH_PORT, default 8000)")
    serve_cmd.add_argument("--data-dir", type=Path, help="data directory (HASHMATCH_DATA_DIR)")
    serve_cmd.add_argument(
        "--workers", type=int, help="worker processes, each a replica (HASHMATCH_WORKERS)"
    )
    serve_cmd.set_defaults(handler=_cmd_serve)

    from hashmatch.cli_lists import add_commands

    actor = argparse.ArgumentParser(add_help=False)
    actor.add_argument("--actor", help="who is acting, for the audit log (default: cli:USER)")
    add_commands(commands, actor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env(
            host=getattr(args, "host", None),
            port=getattr(args, "port", None),
            data_dir=getattr(args, "data_dir", None),
            workers=getattr(args, "workers", None),
        )
        status: int = args.handler(args, settings)
    except HashmatchError as exc:
        _stderr(exc.message)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``hashmatch hash ... | head``): not an error of ours. Point
        # stdout at /dev/null so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:
        if exc.filename is None:
            raise
        # A file named on the command line could not be read: say which, without a traceback.
        error = UnreadableFile(f"cannot read {exc.filename}: {exc.strerror or exc}")
        _stderr(error.message)
        return exit_code_for(error)
    return status


if __name__ == "__main__":
    sys.exit(main())
