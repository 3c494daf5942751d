"""``hashmatch`` commands: thin wrappers over the cores, one module per command group.

Start-up stays light: a command imports what it needs when it runs, so ``hashmatch hash`` on a
handful of files never loads the web framework, the database layer or FAISS.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Final

from hashmatch import __version__
from hashmatch.cli import exchange, keys, lists, match, serve, shares, stats, users, webhooks
from hashmatch.cli import hash as hash_command
from hashmatch.cli.common import stderr
from hashmatch.config import Settings
from hashmatch.errors import (
    ConfigError,
    Conflict,
    DecodeTimeout,
    HashFormatError,
    HashmatchError,
    ImportRejected,
    InvalidList,
    MediaError,
    NotFound,
    StoreUnavailable,
    TooManyFrames,
    UnreadableFile,
    VideoTooLong,
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
    (VideoTooLong, 65),  # EX_DATAERR: a video over a limit is bad input, as any media error
    (TooManyFrames, 65),  # EX_DATAERR
    (DecodeTimeout, 65),  # EX_DATAERR
    (MediaError, 65),  # EX_DATAERR
    (StoreUnavailable, 69),  # EX_UNAVAILABLE
    (HashmatchError, 70),  # EX_SOFTWARE
)


def exit_code_for(error: HashmatchError) -> int:
    for error_type, code in EXIT_CODES:
        if isinstance(error, error_type):
            return code
    return EXIT_FAILURES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hashmatch",
        description="Perceptual-hash matching of known abusive images.",
    )
    parser.add_argument("--version", action="version", version=f"hashmatch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    actor = argparse.ArgumentParser(add_help=False)
    actor.add_argument("--actor", help="who is acting, for the audit log (default: cli:USER)")
    hash_command.add_parser(commands)
    serve.add_parser(commands)
    keys.add_parser(commands, actor)
    shares.add_parser(commands, actor)
    lists.add_parser(commands, actor)
    match.add_parser(commands)
    stats.add_parser(commands)
    webhooks.add_parser(commands, actor)
    exchange.add_parser(commands, actor)
    users.add_parser(commands, actor)
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
        stderr(exc.message)
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
        stderr(error.message)
        return exit_code_for(error)
    return status


if __name__ == "__main__":
    sys.exit(main())
