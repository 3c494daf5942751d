"""``hashmatch shares ...``: the operator answering offers for an organisation (its admin keys
can do the same over HTTP)."""

from __future__ import annotations

import argparse
from typing import Any

from hashmatch import fields
from hashmatch.cli.common import actor, open_store, print_json
from hashmatch.config import Settings


def cmd_ls(args: argparse.Namespace, settings: Settings) -> int:
    organisation = fields.organisation(args.org, "--org")
    offers = [info for info in open_store(settings).lists.all() if organisation in info.shared_with]
    print_json([info.offer_to(organisation).model_dump() for info in offers])
    return 0


def cmd_answer(args: argparse.Namespace, settings: Settings) -> int:
    info = open_store(settings).lists.answer_offer(
        args.name, args.org, actor=actor(args), accept=args.accept, trust=args.trust
    )
    print_json(info.as_dict())
    return 0


def add_parser(commands: Any, actor_parent: argparse.ArgumentParser) -> None:
    shares = commands.add_parser("shares", help="offers of lists to an organisation")
    sub = shares.add_subparsers(dest="shares_command", required=True, metavar="COMMAND")
    ls = sub.add_parser("ls", help="lists offered to an organisation, and their state")
    ls.add_argument("--org", required=True)
    ls.set_defaults(handler=cmd_ls)
    accept = sub.add_parser(
        "accept", parents=[actor_parent], help="accept an offered list into the org's matches"
    )
    accept.add_argument("name")
    accept.add_argument("--org", required=True, help="the organisation accepting")
    accept.add_argument(
        "--trust",
        action="store_true",
        help="an allow-list only: let its hits suppress the org's own block lists",
    )
    accept.set_defaults(handler=cmd_answer, accept=True)
    leave = sub.add_parser("leave", parents=[actor_parent], help="stop matching a list")
    leave.add_argument("name")
    leave.add_argument("--org", required=True, help="the organisation leaving")
    leave.set_defaults(handler=cmd_answer, accept=False, trust=False)
