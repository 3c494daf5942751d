"""``hashmatch users ...``: staff accounts for the console. The operator creates the first
admin of each organisation here; admins invite the rest from the console's people page."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hashmatch.cli.common import actor, open_store, print_json
from hashmatch.config import Settings


def _password(args: argparse.Namespace) -> str | None:
    if not getattr(args, "password_stdin", False):
        return None
    return sys.stdin.readline().rstrip("\r\n")


def cmd_create(args: argparse.Namespace, settings: Settings) -> int:
    from hashmatch.store.users import staff_role

    info, password, totp_secret = open_store(settings).users.create(
        args.org,
        args.login,
        staff_role(args.role),
        actor=actor(args),
        name=args.name,
        password=_password(args),
        totp=args.totp,
    )
    print_json({**info.as_dict(), "password": password, "totp_secret": totp_secret})
    if not args.password_stdin:
        print(
            "hashmatch: hand this password over now; it is not shown again and must be changed"
            " at the first sign-in",
            file=sys.stderr,
        )
    return 0


def cmd_ls(args: argparse.Namespace, settings: Settings) -> int:
    print_json([info.as_dict() for info in open_store(settings).users.all(args.org)])
    return 0


def cmd_disable(args: argparse.Namespace, settings: Settings) -> int:
    print_json(open_store(settings).users.disable(args.login, actor=actor(args)).as_dict())
    return 0


def cmd_enable(args: argparse.Namespace, settings: Settings) -> int:
    print_json(open_store(settings).users.enable(args.login, actor=actor(args)).as_dict())
    return 0


def cmd_reset(args: argparse.Namespace, settings: Settings) -> int:
    only_totp = args.totp_only
    info, password = open_store(settings).users.reset(
        args.login,
        actor=actor(args),
        password=not only_totp,
        totp=True,
        new_password=None if only_totp else _password(args),
    )
    print_json({**info.as_dict(), "password": password})
    return 0


def add_parser(commands: Any, actor_parent: argparse.ArgumentParser) -> None:
    users = commands.add_parser(
        "users", help="staff accounts for the console: create, list, disable, enable, reset"
    )
    sub = users.add_subparsers(dest="users_command", required=True, metavar="COMMAND")
    create = sub.add_parser(
        "create",
        parents=[actor_parent],
        help="create an account (its first password is shown once)",
    )
    create.add_argument("login", help="a-z 0-9 . _ @ -, unique on this instance")
    create.add_argument("--org", required=True, help="the organisation the person works for")
    create.add_argument("--role", required=True, choices=["viewer", "analyst", "admin"])
    create.add_argument("--name", default="", help="the person's name, as pages show it")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin instead of generating one",
    )
    create.add_argument(
        "--totp", action="store_true", help="also create a TOTP second factor (its secret is shown)"
    )
    create.set_defaults(handler=cmd_create)
    ls = sub.add_parser("ls", help="list accounts (never their passwords)")
    ls.add_argument("--org", default=None, help="only this organisation's")
    ls.set_defaults(handler=cmd_ls)
    disable = sub.add_parser("disable", parents=[actor_parent], help="disable an account")
    disable.add_argument("login")
    disable.set_defaults(handler=cmd_disable)
    enable = sub.add_parser("enable", parents=[actor_parent], help="enable a disabled account")
    enable.add_argument("login")
    enable.set_defaults(handler=cmd_enable)
    reset = sub.add_parser(
        "reset",
        parents=[actor_parent],
        help="new password (shown once), second factor removed, lockout cleared, sessions ended",
    )
    reset.add_argument("login")
    reset.add_argument("--password-stdin", action="store_true")
    reset.add_argument(
        "--totp-only", action="store_true", help="keep the password; only remove the second factor"
    )
    reset.set_defaults(handler=cmd_reset)
