"""``hashmatch hash``: hash image files and folders locally (the agencies' side: images never
leave the machine, only the hashes do)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from hashmatch.cli.common import progress, stderr, write_output
from hashmatch.config import Settings

EXIT_OK = 0
EXIT_FAILURES = 1


def run(args: argparse.Namespace, settings: Settings) -> int:
    from hashmatch.hashsets.batch import default_jobs, hash_files, iter_files
    from hashmatch.hashsets.write import ErrorRecord, Format, HashRecord, RecordWriter
    from hashmatch.signals import parse_many

    algorithms = parse_many(args.algorithms)
    jobs = args.jobs if args.jobs and args.jobs > 0 else default_jobs()
    files = list(iter_files(Path(p) for p in args.paths))
    failed = 0
    low_quality: Counter[str] = Counter()  # signal type -> hashes flagged low quality
    with (
        write_output(args.output) as stream,
        progress(total=len(files), desc="hashing", unit="file") as bar,
    ):
        writer = RecordWriter(stream, Format(args.format))
        for result in hash_files(files, algorithms, settings.media_limits, jobs=jobs):
            bar.update(1)
            if result.error is not None:
                failed += 1
                bar.write(f"hashmatch: {result.path}: {result.error.message}", file=sys.stderr)
                writer.write(ErrorRecord(result.path, result.error))
                continue
            for value in result.hashes:
                if value.low_quality:
                    low_quality[value.algorithm.name] += 1
                writer.write(HashRecord(result.path, value, result.size))
    summary = f"hashed {len(files) - failed} of {len(files)} files"
    if failed:
        summary += f", {failed} failed"
    if low_quality:
        flagged = ", ".join(f"{count} {name}" for name, count in sorted(low_quality.items()))
        summary += f", low-quality hashes flagged: {flagged}"
    if args.summary or failed or low_quality:
        stderr(summary)
    return EXIT_FAILURES if failed else EXIT_OK


def add_parser(commands: Any) -> None:
    from hashmatch.signals import DEFAULT_SIGNALS, all_signals

    names = ", ".join(s.name for s in all_signals())
    default = ",".join(s.name for s in DEFAULT_SIGNALS)
    command = commands.add_parser(
        "hash",
        help="hash image files and folders locally",
        description="Hash image files (folders recursively). Images never leave this machine; "
        "share the output. Exit status 1 if any file failed.",
    )
    command.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    command.add_argument(
        "-a", "--algorithms", default=default, help=f"comma-separated: {names} (default: {default})"
    )
    command.add_argument(
        "-f",
        "--format",
        choices=["jsonl", "csv", "tx"],
        default="jsonl",
        help="jsonl (default), csv with a header row, or tx lines ('pdq <hex>')",
    )
    command.add_argument("-o", "--output", help="write here instead of standard output")
    command.add_argument(
        "-j", "--jobs", type=int, default=0, help="worker processes (default: all cores)"
    )
    command.add_argument(
        "--summary", action="store_true", help="always print a summary line on stderr"
    )
    command.set_defaults(handler=run)
