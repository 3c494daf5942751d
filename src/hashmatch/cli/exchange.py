"""``hashmatch exchange ...``: the peers this instance subscribes to, and the fetcher.

``add`` reads the peer's key from a file (never from the command line, where ``ps`` and shell
history would keep it); no command prints it again.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from typing import Any

from hashmatch.cli.common import actor, open_store, print_json
from hashmatch.config import Settings
from hashmatch.errors import InvalidField


def _read_key(path: str) -> str:
    text = Path(path).read_text(encoding="utf-8", errors="strict").strip()
    if not text:
        raise InvalidField("--key-file", f"{path} is empty")
    return text


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    lists = None if args.lists is None else [n.strip() for n in args.lists.split(",") if n.strip()]
    if (args.url is None) == (args.folder is None):
        raise InvalidField("--url", "give either --url (with --key-file) or --folder")
    if args.folder is not None:
        url, secret = Path(args.folder).resolve().as_uri(), "-"
    elif args.key_file is None:
        raise InvalidField("--key-file", "a peer instance needs the key it gave you")
    else:
        url, secret = args.url, _read_key(args.key_file)
    info = open_store(settings).peers.add(
        args.name,
        url=url,
        secret=secret,
        organisation=args.org,
        actor=actor(args),
        lists=lists,
    )
    print_json(info.as_dict())
    return 0


def cmd_ls(args: argparse.Namespace, settings: Settings) -> int:
    print_json([peer.as_dict() for peer in open_store(settings).peers.all()])
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings)
    info = store.peers.get(args.name)
    mirrors = [m.as_dict() for m in store.mirrors.of_peer(args.name)]
    print_json(
        {**info.as_dict(), "fetcher": store.leases.holder("exchange-fetcher"), "mirrors": mirrors}
    )
    return 0


def cmd_pause(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings)
    print_json(store.peers.set_paused(args.name, args.paused, actor=actor(args)).as_dict())
    return 0


def cmd_remove(args: argparse.Namespace, settings: Settings) -> int:
    open_store(settings).peers.remove(args.name, actor=actor(args))
    return 0


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    from hashmatch.exchange.fetcher import source_for, verify_peer

    store = open_store(settings)
    info = store.peers.get(args.name)
    source = source_for(
        info,
        store.peers.secret(info.name),
        own_instance=store.instance,
        bounds=settings.threshold_bounds,
    )
    try:
        report = verify_peer(store, info, source, repair=not args.no_repair)
    finally:
        getattr(source, "close", lambda: None)()
    print_json(report)
    return 0 if report["equal"] else 1


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """The fetcher in the foreground (for deployments that run it apart from ``serve``)."""
    from hashmatch.exchange.fetcher import start_fetcher

    store = open_store(settings)
    fetcher = start_fetcher(store, settings)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        fetcher.stop()
    return 0


def add_parser(commands: Any, actor_parent: argparse.ArgumentParser) -> None:
    exchange = commands.add_parser("exchange", help="subscribe to other instances' lists")
    sub = exchange.add_subparsers(dest="exchange_command", required=True, metavar="COMMAND")
    add = sub.add_parser("add", parents=[actor_parent], help="subscribe to a peer's feed")
    add.add_argument("name", help="the peer's name here; its mirrors are NAME:LIST")
    add.add_argument("--url", help="the peer instance's address")
    add.add_argument("--key-file", help="a file holding the key it gave you")
    add.add_argument(
        "--folder",
        help="instead of an instance: a folder of hash-set files, NAME.csv|jsonl|tx each the "
        "whole of list NAME (NAME.json beside it may give category, jurisdiction, tlp)",
    )
    add.add_argument("--org", required=True, help="the local organisation the mirrors are for")
    add.add_argument("--lists", help="only these of its lists (comma-separated)")
    add.set_defaults(handler=cmd_add)
    ls = sub.add_parser("ls", help="every peer, with its cursor and last error")
    ls.set_defaults(handler=cmd_ls)
    for name, help_text in (
        ("show", "one peer and its mirrors"),
        ("remove", "stop following a peer (its mirrors stay, no longer updated)"),
    ):
        command = sub.add_parser(name, parents=[actor_parent], help=help_text)
        command.add_argument("name")
        command.set_defaults(handler=cmd_show if name == "show" else cmd_remove)
    for name, paused in (("pause", True), ("resume", False)):
        command = sub.add_parser(name, parents=[actor_parent], help=f"{name} fetching")
        command.add_argument("name")
        command.set_defaults(handler=cmd_pause, paused=paused)
    verify = sub.add_parser("verify", help="compare each mirror with its origin; resync if not")
    verify.add_argument("name")
    verify.add_argument("--no-repair", action="store_true", help="report only")
    verify.set_defaults(handler=cmd_verify)
    run = sub.add_parser("run", help="run the fetcher in the foreground (one per instance)")
    run.set_defaults(handler=cmd_run)
