"""``hashmatch lists ...``, ``hashmatch match`` and ``hashmatch audit``: the store from a shell.

Each command opens the store the settings name (SQLite in the data directory unless
``HASHMATCH_DATABASE_URL`` is set), does one thing and prints JSON or a table.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from hashmatch.config import Settings
from hashmatch.errors import ImportRejected, MediaError

if TYPE_CHECKING:
    from hashmatch.hashing import Hash
    from hashmatch.store import Store


def _store(settings: Settings) -> Store:
    # Imported here: `hashmatch hash` builds this parser too and must not load SQLAlchemy.
    from hashmatch.store import Store, database_url

    return Store.open(
        database_url(settings.data_dir, settings.database_url), bounds=settings.threshold_bounds
    )


def _actor(args: argparse.Namespace) -> str:
    if args.actor:
        return str(args.actor)
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


@contextlib.contextmanager
def _input(path: str) -> Iterator[BinaryIO]:
    if path == "-":
        yield sys.stdin.buffer
        return
    with Path(path).open("rb") as stream:
        yield stream


class _CountingReader:
    """Passes reads through and advances a progress bar by the bytes read."""

    def __init__(self, stream: BinaryIO, progress: Any) -> None:
        self._stream = stream
        self._progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._progress.update(len(data))
        return data


def cmd_create(args: argparse.Namespace, settings: Settings) -> int:
    thresholds = {
        name: value
        for name, value in (("pdq", args.pdq_threshold), ("phash", args.phash_threshold))
        if value is not None
    }
    info = _store(settings).create_list(
        args.name,
        owner=args.owner,
        category=args.category,
        actor=_actor(args),
        kind=args.kind,
        source=args.source,
        jurisdiction=args.jurisdiction,
        description=args.description,
        thresholds=thresholds,
        shared_with=args.share or (),
    )
    _print_json(info.as_dict())
    return 0


def cmd_ls(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    infos = store.lists()
    if args.json:
        _print_json([info.as_dict() for info in infos])
        return 0
    print(f"{'NAME':<24} {'KIND':<6} {'CATEGORY':<10} {'OWNER':<16} {'ENABLED':<7} JURISDICTION")
    for info in infos:
        print(
            f"{info.name:<24} {info.kind:<6} {info.category:<10} {info.owner:<16} "
            f"{'yes' if info.enabled else 'no':<7} {info.jurisdiction}"
        )
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    info = store.get_list(args.name)
    live = sum(1 for _ in store.entries(args.name))
    _print_json({**info.as_dict(), "live_entries": live})
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from hashmatch.formats_in import InputFormat, read_hash_set
    from hashmatch.hashing import parse_algorithm

    store = _store(settings)
    store.get_list(args.name)  # fail before reading a byte of a large file
    input_format = InputFormat(args.format) if args.format else None
    algorithm = parse_algorithm(args.algorithm) if args.algorithm else None
    with _input(args.file) as raw, _bytes_progress(args.file) as progress:
        stream: Any = raw if progress is None else _CountingReader(raw, progress)
        rows = read_hash_set(stream, input_format=input_format, default_algorithm=algorithm)
        try:
            report = store.import_rows(args.name, rows, actor=_actor(args), strict=args.strict)
        except ImportRejected as rejected:
            if rejected.report is not None:
                _print_json(rejected.report.as_dict())
            raise
    _print_json(report.as_dict())
    return 0


@contextlib.contextmanager
def _bytes_progress(path: str) -> Iterator[Any]:
    if path == "-" or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    with tqdm(
        total=Path(path).stat().st_size,
        unit="B",
        unit_scale=True,
        desc="importing",
        file=sys.stderr,
    ) as bar:
        yield bar


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from hashmatch.formats import ExportRow, ExportWriter, Format

    store = _store(settings)
    entries = store.entries(args.name, include_withdrawn=args.include_withdrawn)
    with contextlib.ExitStack() as stack:
        stream = sys.stdout
        if args.output and args.output != "-":
            stream = stack.enter_context(Path(args.output).open("w", encoding="utf-8"))
        if sys.stderr.isatty():
            from tqdm import tqdm

            entries = stack.enter_context(
                tqdm(entries, desc="exporting", unit=" entries", file=sys.stderr)
            )
        writer = ExportWriter(stream, Format(args.format))
        for entry in entries:
            writer.write(
                ExportRow(
                    entry.hash,
                    entry.reference,
                    entry.labels,
                    entry.added_at.isoformat(),
                    entry.withdrawn_at.isoformat() if entry.withdrawn_at else None,
                )
            )
    return 0


def _named_entries(args: argparse.Namespace) -> tuple[list[str], list[Hash]]:
    from hashmatch.formats_in import HashRow, RowError, read_hash_set
    from hashmatch.hashing import parse_hash

    hashes = [parse_hash(text) for text in args.hash or ()]
    references = list(args.reference or ())
    if args.file:
        with _input(args.file) as stream:
            for row in read_hash_set(stream):
                if isinstance(row, RowError):
                    raise ImportRejected(f"line {row.line}: {row.reason}; nothing changed")
                assert isinstance(row, HashRow)
                hashes.append(row.hash)
    if not hashes and not references:
        raise ImportRejected("name the entries: --reference, --hash or --file")
    return references, hashes


def _entry_command(args: argparse.Namespace, settings: Settings, revive: bool) -> int:
    from hashmatch import withdrawals

    references, hashes = _named_entries(args)
    act = withdrawals.revive if revive else withdrawals.withdraw
    report = act(
        _store(settings),
        args.name,
        actor=_actor(args),
        reason=args.reason,
        references=references,
        hashes=hashes,
    )
    _print_json(report.as_dict())
    if report.unmatched:
        # A mistyped reference must not look like a done withdrawal.
        print(
            f"hashmatch: {len(report.unmatched)} of the names given match no entry of "
            f"{args.name!r}",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_withdraw(args: argparse.Namespace, settings: Settings) -> int:
    return _entry_command(args, settings, revive=False)


def cmd_revive(args: argparse.Namespace, settings: Settings) -> int:
    return _entry_command(args, settings, revive=True)


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    if args.list is not None:
        store.get_list(args.list)  # a mistyped name is an error, not an empty trail
    _print_json(store.audit_log(args.list, limit=args.limit))
    return 0


def cmd_match(args: argparse.Namespace, settings: Settings) -> int:
    from hashmatch import fields
    from hashmatch.hashing import parse_hash, query_hashes
    from hashmatch.lookup import lookup, matchable_lists
    from hashmatch.matcher import Matcher
    from hashmatch.verdict import verdict_dict

    organisation = fields.organisation(args.org, "--org") if args.org else None
    matcher = Matcher(_store(settings), settings.data_dir / "snapshots", settings.threshold_bounds)
    matcher.load()
    labels: list[str] = []
    items: list[list[tuple[Hash, str | None]]] = []
    for text in args.hash or ():
        labels.append(text)
        items.append([(parse_hash(text), None)])
    for path in args.paths:
        try:
            _, variants = query_hashes(Path(path).read_bytes(), settings.media_limits)
        except MediaError as exc:
            raise type(exc)(f"{path}: {exc.message}") from None
        labels.append(path)
        items.append(variants)
    wanted = [n.strip() for n in args.lists.split(",") if n.strip()] if args.lists else None
    names = matchable_lists(matcher, organisation, wanted)
    verdicts = lookup(matcher, items, organisation=organisation, lists=names)
    results = [
        {"query": label, **verdict_dict(verdict, organisation)}
        for label, verdict in zip(labels, verdicts, strict=True)
    ]
    if args.json:
        _print_json(results)
        return 0
    for result in results:
        print(f"{'MATCH' if result['match'] else 'no match':<8} {result['query']}")
        for m in result["matches"] + result["allowed"]:
            state = " (suppressed by " + m["suppressed_by"] + ")" if m["suppressed"] else ""
            distance = m["distance"] if m["distance"] is not None else m["band"]
            print(
                f"         {m['list']} [{m['kind']}] {m['algorithm']} distance={distance} "
                f"entry={m['entry_id']} reference={m['reference']}{state}"
            )
    return 0


def cmd_share(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    info = store.get_list(args.name)
    offers = list(info.shared_with)
    if args.unshare:
        offers = [org for org in offers if org not in {o.lower() for o in args.orgs}]
    else:
        offers += [org for org in args.orgs if org.lower() not in offers]
    _print_json(store.update_list(args.name, actor=_actor(args), shared_with=offers).as_dict())
    return 0


def cmd_shares_ls(args: argparse.Namespace, settings: Settings) -> int:
    from hashmatch import fields

    organisation = fields.organisation(args.org, "--org")
    offers = [info for info in _store(settings).lists() if organisation in info.shared_with]
    _print_json([info.offer_to(organisation) for info in offers])
    return 0


def cmd_shares_answer(args: argparse.Namespace, settings: Settings) -> int:
    accept = args.shares_command == "accept"
    info = _store(settings).answer_offer(
        args.name,
        args.org,
        actor=_actor(args),
        accept=accept,
        trust=bool(getattr(args, "trust", False)),
    )
    _print_json(info.as_dict())
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    _store(settings).close()  # opening migrates, once, under the writers' lock
    print("hashmatch: database schema is up to date", file=sys.stderr)
    return 0


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from hashmatch.keys import create_key, parse_roles

    info, secret = create_key(
        _store(settings), args.org, parse_roles(args.role), actor=_actor(args), name=args.name
    )
    _print_json({**info.as_dict(), "key": secret})
    print("hashmatch: store this key now; it is not shown again", file=sys.stderr)
    return 0


def cmd_keys_ls(args: argparse.Namespace, settings: Settings) -> int:
    from hashmatch.keys import list_keys

    _print_json([info.as_dict() for info in list_keys(_store(settings))])
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from hashmatch.keys import revoke_key

    _print_json(revoke_key(_store(settings), args.id, actor=_actor(args)).as_dict())
    return 0


def cmd_keys_reinstate(args: argparse.Namespace, settings: Settings) -> int:
    from hashmatch.keys import reinstate_key

    key = reinstate_key(_store(settings), args.id, actor=_actor(args), reason=args.reason)
    _print_json(key.as_dict())
    return 0


def add_commands(commands: Any, actor_parent: argparse.ArgumentParser) -> None:
    keys_cmd = commands.add_parser("keys", help="API keys: create, list, revoke")
    keys_sub = keys_cmd.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    kc = keys_sub.add_parser("create", parents=[actor_parent], help="create a key (shown once)")
    kc.add_argument("--org", required=True, help="the organisation the key acts for")
    kc.add_argument(
        "--role", action="append", required=True, choices=["match", "contribute", "admin"]
    )
    kc.add_argument("--name", default="", help="a note, e.g. what uses the key")
    kc.set_defaults(handler=cmd_keys_create)
    kl = keys_sub.add_parser("ls", help="list keys (never their secrets)")
    kl.set_defaults(handler=cmd_keys_ls)
    kr = keys_sub.add_parser("revoke", parents=[actor_parent], help="revoke a key by id")
    kr.add_argument("id", type=int)
    kr.set_defaults(handler=cmd_keys_revoke)
    ki = keys_sub.add_parser(
        "reinstate", parents=[actor_parent], help="lift a key's suspension (e.g. for probing)"
    )
    ki.add_argument("id", type=int)
    ki.add_argument("--reason", required=True, help="why, for the audit log")
    ki.set_defaults(handler=cmd_keys_reinstate)

    shares_cmd = commands.add_parser(
        "shares", help="offers of lists to an organisation: list, accept, leave"
    )
    shares_sub = shares_cmd.add_subparsers(dest="shares_command", required=True, metavar="COMMAND")
    sl = shares_sub.add_parser("ls", help="lists offered to an organisation, and their state")
    sl.add_argument("--org", required=True)
    sl.set_defaults(handler=cmd_shares_ls)
    sa = shares_sub.add_parser(
        "accept", parents=[actor_parent], help="accept an offered list into the org's matches"
    )
    sa.add_argument("name")
    sa.add_argument("--org", required=True, help="the organisation accepting")
    sa.add_argument(
        "--trust",
        action="store_true",
        help="an allow-list only: let its hits suppress the org's own block lists",
    )
    sa.set_defaults(handler=cmd_shares_answer)
    sv = shares_sub.add_parser("leave", parents=[actor_parent], help="stop matching a list")
    sv.add_argument("name")
    sv.add_argument("--org", required=True, help="the organisation leaving")
    sv.set_defaults(handler=cmd_shares_answer)

    migrate = commands.add_parser(
        "migrate", help="bring the database schema up to date (a one-off deployment step)"
    )
    migrate.set_defaults(handler=cmd_migrate)

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
    create.add_argument("--pdq-threshold", type=int)
    create.add_argument("--phash-threshold", type=int)
    create.set_defaults(handler=cmd_create)

    ls = sub.add_parser("ls", help="list the lists")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=cmd_ls)

    show = sub.add_parser("show", help="one list's settings and size")
    show.add_argument("name")
    show.set_defaults(handler=cmd_show)

    imp = sub.add_parser("import", parents=[actor_parent], help="import a hash-set file")
    imp.add_argument("name")
    imp.add_argument("file", help="a file, or - for standard input")
    imp.add_argument("--format", choices=["csv", "jsonl", "tx"], help="default: detected")
    imp.add_argument("--algorithm", help="for bare hex lines")
    imp.add_argument("--strict", action="store_true", help="import nothing if any row is bad")
    imp.set_defaults(handler=cmd_import)

    exp = sub.add_parser("export", help="export a list's entries")
    exp.add_argument("name")
    exp.add_argument("--format", choices=["csv", "jsonl", "tx"], default="csv")
    exp.add_argument("-o", "--output")
    exp.add_argument("--include-withdrawn", action="store_true")
    exp.set_defaults(handler=cmd_export)

    wd = sub.add_parser("withdraw", parents=[actor_parent], help="withdraw entries")
    wd.add_argument("name")
    wd.add_argument("--reference", action="append", help="the source's reference id")
    wd.add_argument("--hash", action="append", help="ALG:HEX")
    wd.add_argument("--file", help="a hash-set file of hashes to withdraw")
    wd.add_argument("--reason", required=True)
    wd.set_defaults(handler=cmd_withdraw)

    rv = sub.add_parser(
        "revive", parents=[actor_parent], help="bring withdrawn entries back (with a reason)"
    )
    rv.add_argument("name")
    rv.add_argument("--reference", action="append", help="the source's reference id")
    rv.add_argument("--hash", action="append", help="ALG:HEX")
    rv.add_argument("--file", help="a hash-set file of hashes to revive")
    rv.add_argument("--reason", required=True)
    rv.set_defaults(handler=cmd_revive)

    for command, unshare in (("share", False), ("unshare", True)):
        sh = sub.add_parser(
            command,
            parents=[actor_parent],
            help="withdraw a list's offer from organisations"
            if unshare
            else "offer a list to organisations (each must accept)",
        )
        sh.add_argument("name")
        sh.add_argument("orgs", nargs="+", metavar="ORG")
        sh.set_defaults(handler=cmd_share, unshare=unshare)

    match = commands.add_parser("match", help="match local files or hashes against the lists")
    match.add_argument("paths", nargs="*", metavar="PATH")
    match.add_argument("--hash", action="append", help="ALG:HEX")
    match.add_argument("--lists", help="comma-separated list names (each must exist)")
    match.add_argument(
        "--org",
        help="match as this organisation: its own and accepted lists, distances as it sees "
        "them (default: every list, as the operator)",
    )
    match.add_argument("--json", action="store_true")
    match.set_defaults(handler=cmd_match)

    audit_cmd = commands.add_parser("audit", help="who changed what")
    audit_cmd.add_argument("--list")
    audit_cmd.add_argument("--limit", type=int, default=100)
    audit_cmd.set_defaults(handler=cmd_audit)
