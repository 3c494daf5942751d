"""``hashmatch lists ...``: create, list, show, import, export, withdraw, revive, offer."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hashmatch.cli.common import actor, open_store, print_json, progress, read_input
from hashmatch.config import Settings
from hashmatch.errors import ImportRejected

if TYPE_CHECKING:
    from collections.abc import Iterator

    from hashmatch.hashsets.read import HashRow, InputFormat, RowError
    from hashmatch.signals import Hash, SignalType


def cmd_create(args: argparse.Namespace, settings: Settings) -> int:
    from hashmatch.matching.policy import VIDEO_PERCENTS
    from hashmatch.signals import hamming_signals

    thresholds = {
        signal.name: getattr(args, f"{signal.name}_threshold")
        for signal in hamming_signals()
        if getattr(args, f"{signal.name}_threshold", None) is not None
    }
    thresholds |= {
        name: getattr(args, name) for name in VIDEO_PERCENTS if getattr(args, name) is not None
    }
    info = open_store(settings).lists.create(
        args.name,
        owner=args.owner,
        category=args.category,
        actor=actor(args),
        kind=args.kind,
        source=args.source,
        jurisdiction=args.jurisdiction,
        description=args.description,
        thresholds=thresholds,
        shared_with=args.share or (),
        tlp=args.tlp,
    )
    print_json(info.as_dict())
    return 0


def cmd_ls(args: argparse.Namespace, settings: Settings) -> int:
    infos = open_store(settings).lists.all()
    if args.json:
        print_json([info.as_dict() for info in infos])
        return 0
    columns = (("NAME", 24), ("KIND", 6), ("CATEGORY", 10), ("OWNER", 16), ("ENABLED", 7))
    rows = [[title for title, _ in columns] + ["JURISDICTION"]]
    for info in infos:
        enabled = "yes" if info.enabled else "no"
        rows.append([info.name, info.kind, info.category, info.owner, enabled, info.jurisdiction])
    for row in rows:
        cells = zip(row[:-1], columns, strict=True)
        print(" ".join(f"{cell:<{width}}" for cell, (_, width) in cells), row[-1])
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings)
    info = store.lists.get(args.name)
    live = sum(1 for _ in store.entries.listed(args.name))
    print_json({**info.as_dict(), "live_entries": live})
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """Every file named, in one import (one transaction: ``--strict`` rejects them all
    together); a video in Meta's text form is one entry, its reference the file's name."""
    from hashmatch import signals
    from hashmatch.errors import InvalidField
    from hashmatch.hashsets.read import InputFormat

    store = open_store(settings)
    store.lists.get(args.name)  # fail before reading a byte of a large file
    files: list[str] = args.files
    if files.count("-") > 1:
        raise InvalidField("FILE", "standard input (-) can be read once")
    if args.reference is not None and len(files) > 1:
        raise InvalidField("--reference", "names the video of a single file")
    input_format = InputFormat(args.format) if args.format else None
    algorithm = signals.get(args.algorithm) if args.algorithm else None
    sizes = [None if name == "-" else Path(name).stat().st_size for name in files]
    total = None if None in sizes else sum(size or 0 for size in sizes)
    with progress(total=total, unit="B", unit_scale=True, desc="importing") as bar:
        rows = _file_rows(files, bar, input_format, algorithm, args.reference)
        try:
            report = store.entries.import_rows(
                args.name, rows, actor=actor(args), strict=args.strict
            )
        except ImportRejected as rejected:
            if rejected.report is not None:
                print_json(rejected.report.as_dict())
            raise
    print_json(report.as_dict())
    return 0


def _file_rows(
    files: list[str],
    bar: Any,
    input_format: InputFormat | None,
    algorithm: SignalType | None,
    reference: str | None,
) -> Iterator[HashRow | RowError]:
    """The rows of every file in turn, each file read as it is reached. With several files a
    row error names its file (line numbers are each file's own)."""
    from tqdm.utils import CallbackIOWrapper

    from hashmatch.hashsets.read import RowError, read_hash_set

    for name in files:
        video_reference = reference if reference is not None else _video_reference(name)
        with read_input(name) as raw:
            stream: Any = CallbackIOWrapper(bar.update, raw, "read")
            rows = read_hash_set(
                stream,
                input_format=input_format,
                default_algorithm=algorithm,
                reference=video_reference,
            )
            for row in rows:
                if isinstance(row, RowError) and len(files) > 1:
                    row = RowError(row.line, f"{name}: {row.reason}")
                yield row


def _video_reference(name: str) -> str | None:
    """A video's reference by default: its file's name without ``.txt`` and ``.vpdq``
    (``clip.vpdq.txt`` as ``hashmatch hash -f vpdq`` writes it, Meta's ``clip.txt``)."""
    if name == "-":
        return None
    stem = Path(name).name
    for suffix in (".txt", ".vpdq"):
        stem = stem.removesuffix(suffix)
    return stem or None


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from hashmatch.cli.common import stderr, write_output
    from hashmatch.hashsets.write import ExportWriter, Format

    store = open_store(settings)
    entries = store.entries.listed(args.name, include_withdrawn=args.include_withdrawn)
    with (
        write_output(args.output, newline=None) as stream,
        progress(desc="exporting", unit=" entries") as bar,
    ):
        writer = ExportWriter(stream, Format(args.format))
        for entry in entries:
            writer.write(entry)
            bar.update(1)
    if writer.skipped_videos:
        stderr(
            f"{writer.skipped_videos} video entries (vpdq) were left out: {args.format} cannot "
            "carry their frames; export with --format jsonl to keep them"
        )
    return 0


def _named_entries(args: argparse.Namespace) -> tuple[list[str], list[Hash]]:
    from hashmatch.hashsets.read import HashRow, RowError, read_hash_set
    from hashmatch.signals import parse_hash

    hashes = [parse_hash(text) for text in args.hash or ()]
    references = list(args.reference or ())
    if args.file:
        with read_input(args.file) as stream:
            for row in read_hash_set(stream):
                if isinstance(row, RowError):
                    raise ImportRejected(f"line {row.line}: {row.reason}; nothing changed")
                assert isinstance(row, HashRow)
                hashes.append(row.hash)
    if not hashes and not references:
        raise ImportRejected("name the entries: --reference, --hash or --file")
    return references, hashes


def cmd_entries(args: argparse.Namespace, settings: Settings) -> int:
    """``withdraw`` or ``revive``: every name accounted for; exit 1 when some matched nothing
    (a mistyped reference must not look like a done withdrawal)."""
    references, hashes = _named_entries(args)
    store = open_store(settings)
    act = store.withdrawals.revive if args.revive else store.withdrawals.withdraw
    extra = {} if args.revive else {"reason_class": args.reason_class}
    report = act(
        args.name,
        actor=actor(args),
        reason=args.reason,
        references=references,
        hashes=hashes,
        **extra,
    )
    print_json(report.as_dict())
    if report.unmatched:
        print(
            f"hashmatch: {len(report.unmatched)} of the names given match no entry of "
            f"{args.name!r}",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_share(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings)
    offers = list(store.lists.get(args.name).shared_with)
    named = [org.lower() for org in args.orgs]
    if args.unshare:
        offers = [org for org in offers if org not in named]
    else:
        offers += [org for org in named if org not in offers]
    print_json(store.lists.update(args.name, actor=actor(args), shared_with=offers).as_dict())
    return 0


def add_parser(commands: Any, actor_parent: argparse.ArgumentParser) -> None:
    from hashmatch.matching.policy import VIDEO_PERCENTS
    from hashmatch.signals import hamming_signals

    lists_cmd = commands.add_parser("lists", help="create, import, export and withdraw lists")
    sub = lists_cmd.add_subparsers(dest="lists_command", required=True, metavar="COMMAND")

    create = sub.add_parser("create", parents=[actor_parent], help="create a list")
    create.add_argument("name")
    create.add_argument("--category", required=True, help="csam, ncii, other, ...")
    create.add_argument("--source", default="", help="who supplied the hashes")
    create.add_argument("--jurisdiction", default="", help="e.g. TW, KR")
    create.add_argument("--kind", choices=["block", "allow"], default="block")
    create.add_argument("--description", default="")
    create.add_argument(
        "--owner", required=True, help="owning organisation (the one its keys act for)"
    )
    create.add_argument(
        "--share", action="append", help="organisation offered the list (it must accept)"
    )
    create.add_argument(
        "--tlp",
        choices=["CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED"],
        help="TLP label: how far the list may travel to other instances (default AMBER)",
    )
    for signal in hamming_signals():
        create.add_argument(
            f"--{signal.name}-threshold",
            type=int,
            help=f"{signal.name} distance threshold (default {signal.default_threshold})",
        )
    meanings = {
        "vpdq_query_percent": "share of the query's distinct frames a video match needs",
        "vpdq_listed_percent": "share of the listed video's distinct frames it needs as well",
        "vpdq_contained_percent": "or: share of the listed video's frames found inside a "
        "longer upload (0: off)",
    }
    for name, default in VIDEO_PERCENTS.items():
        create.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=int,
            metavar="PERCENT",
            help=f"{meanings[name]} (default {default})",
        )
    create.set_defaults(handler=cmd_create)

    ls = sub.add_parser("ls", help="list the lists")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=cmd_ls)

    show = sub.add_parser("show", help="one list's settings and size")
    show.add_argument("name")
    show.set_defaults(handler=cmd_show)

    imp = sub.add_parser(
        "import",
        parents=[actor_parent],
        help="import hash-set files",
        description="Import hash-set files into a list, in one transaction: what hashmatch "
        "hash writes (jsonl, csv, tx; videos in jsonl), exports, and Meta's vPDQ text files "
        "(one video each, its reference the file's name without .txt/.vpdq.txt).",
    )
    imp.add_argument("name")
    imp.add_argument("files", nargs="+", metavar="FILE", help="files, or - for standard input")
    imp.add_argument(
        "--format", choices=["csv", "jsonl", "tx", "vpdq"], help="default: detected, per file"
    )
    imp.add_argument("--algorithm", help="for bare hex lines")
    imp.add_argument(
        "--reference", help="the reference of the video in a single Meta vPDQ text file"
    )
    imp.add_argument("--strict", action="store_true", help="import nothing if any row is bad")
    imp.set_defaults(handler=cmd_import)

    exp = sub.add_parser("export", help="export a list's entries")
    exp.add_argument("name")
    exp.add_argument(
        "--format",
        choices=["csv", "jsonl", "tx"],
        default="csv",
        help="csv (default), jsonl (the only one that carries videos' frames) or tx",
    )
    exp.add_argument("-o", "--output")
    exp.add_argument("--include-withdrawn", action="store_true")
    exp.set_defaults(handler=cmd_export)

    for command, revive, text in (
        ("withdraw", False, "withdraw entries"),
        ("revive", True, "bring withdrawn entries back (with a reason)"),
    ):
        entries = sub.add_parser(command, parents=[actor_parent], help=text)
        entries.add_argument("name")
        entries.add_argument("--reference", action="append", help="the source's reference id")
        entries.add_argument("--hash", action="append", help="ALG:HEX")
        entries.add_argument("--file", help=f"a hash-set file of hashes to {command}")
        entries.add_argument("--reason", required=True)
        if not revive:
            entries.add_argument(
                "--reason-class",
                choices=["victim_request", "listed_in_error", "legal", "expired", "other"],
                default="other",
                help="why, as mirrors and platforms learn it (the reason stays here)",
            )
        entries.set_defaults(handler=cmd_entries, revive=revive)

    for command, unshare in (("share", False), ("unshare", True)):
        share = sub.add_parser(
            command,
            parents=[actor_parent],
            help="withdraw a list's offer from organisations"
            if unshare
            else "offer a list to organisations (each must accept)",
        )
        share.add_argument("name")
        share.add_argument("orgs", nargs="+", metavar="ORG")
        share.set_defaults(handler=cmd_share, unshare=unshare)
