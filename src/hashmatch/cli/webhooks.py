"""``hashmatch webhooks ...``: register a platform's withdrawal webhook (its secret printed
once), and see how the notices fare."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hashmatch.cli.common import actor, open_store, print_json
from hashmatch.config import Settings


def cmd_set(args: argparse.Namespace, settings: Settings) -> int:
    info, secret = open_store(settings).webhooks.set(args.org, args.url, actor=actor(args))
    print_json({**info, "secret": secret})
    print("hashmatch: give this secret to the platform now; it is not shown again", file=sys.stderr)
    return 0


def cmd_ls(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings)
    if args.deliveries:
        print_json(store.webhooks.deliveries(args.org, status=args.status, limit=args.limit))
    else:
        print_json(store.webhooks.all(args.org))
    return 0


def add_parser(commands: Any, actor_parent: argparse.ArgumentParser) -> None:
    webhooks = commands.add_parser("webhooks", help="platforms' withdrawal webhooks")
    sub = webhooks.add_subparsers(dest="webhooks_command", required=True, metavar="COMMAND")
    set_cmd = sub.add_parser(
        "set", parents=[actor_parent], help="register ORG's webhook (prints a new secret once)"
    )
    set_cmd.add_argument("org")
    set_cmd.add_argument("--url", required=True)
    set_cmd.set_defaults(handler=cmd_set)
    ls = sub.add_parser("ls", help="webhooks and their deliveries by status")
    ls.add_argument("--org")
    ls.add_argument("--deliveries", action="store_true", help="the latest deliveries instead")
    ls.add_argument("--status", choices=["pending", "delivered", "failed"])
    ls.add_argument("--limit", type=int, default=100)
    ls.set_defaults(handler=cmd_ls)
