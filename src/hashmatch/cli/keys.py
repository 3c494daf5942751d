"""``hashmatch keys ...``: API keys, which only the operator creates, lists, revokes and
reinstates."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hashmatch.cli.common import actor, open_store, print_json
from hashmatch.config import Settings


def cmd_create(args: argparse.Namespace, settings: Settings) -> int:
    from hashmatch.store.keys import parse_roles

    info, secret = open_store(settings).keys.create(
        args.org, parse_roles(args.role), actor=actor(args), name=args.name
    )
    print_json({**info.as_dict(), "key": secret})
    print("hashmatch: store this key now; it is not shown again", file=sys.stderr)
    return 0


def cmd_ls(args: argparse.Namespace, settings: Settings) -> int:
    print_json([info.as_dict() for info in open_store(settings).keys.all()])
    return 0


def cmd_revoke(args: argparse.Namespace, settings: Settings) -> int:
    print_json(open_store(settings).keys.revoke(args.id, actor=actor(args)).as_dict())
    return 0


def cmd_reinstate(args: argparse.Namespace, settings: Settings) -> int:
    key = open_store(settings).keys.reinstate(args.id, actor=actor(args), reason=args.reason)
    print_json(key.as_dict())
    return 0


def add_parser(commands: Any, actor_parent: argparse.ArgumentParser) -> None:
    keys = commands.add_parser("keys", help="API keys: create, list, revoke, reinstate")
    sub = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    create = sub.add_parser("create", parents=[actor_parent], help="create a key (shown once)")
    create.add_argument("--org", required=True, help="the organisation the key acts for")
    create.add_argument(
        "--role",
        action="append",
        required=True,
        choices=["match", "contribute", "admin", "exchange"],
    )
    create.add_argument("--name", default="", help="a note, e.g. what uses the key")
    create.set_defaults(handler=cmd_create)
    ls = sub.add_parser("ls", help="list keys (never their secrets)")
    ls.set_defaults(handler=cmd_ls)
    revoke = sub.add_parser("revoke", parents=[actor_parent], help="revoke a key by id")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(handler=cmd_revoke)
    reinstate = sub.add_parser(
        "reinstate", parents=[actor_parent], help="lift a key's suspension (e.g. for probing)"
    )
    reinstate.add_argument("id", type=int)
    reinstate.add_argument("--reason", required=True, help="why, for the audit log")
    reinstate.set_defaults(handler=cmd_reinstate)
