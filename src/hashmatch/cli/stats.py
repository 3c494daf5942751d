"""``hashmatch stats LIST``: a list's matches, outcomes, time to removal and false positives,
as JSON or CSV for a transparency report (the operator's view: any list)."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
from typing import Any

from hashmatch.cli.common import open_store, print_json
from hashmatch.config import Settings


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    from hashmatch.store.stats import CSV_COLUMNS

    stats = open_store(settings).reviews.stats(args.list, args.since, args.until)
    if args.format == "json":
        print_json(stats.as_dict(args.per_entry))
        return 0
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(stats.csv_rows(args.per_entry))
    return 0


def add_parser(commands: Any) -> None:
    stats = commands.add_parser(
        "stats", help="a list's matches, outcomes and time to removal (JSON or CSV)"
    )
    stats.add_argument("list")
    stats.add_argument("--format", choices=["json", "csv"], default="json")
    stats.add_argument("--since", type=_day, help="first UTC day (YYYY-MM-DD), inclusive")
    stats.add_argument("--until", type=_day, help="last UTC day (YYYY-MM-DD), inclusive")
    stats.add_argument("--per-entry", action="store_true", help="a row per entry as well")
    stats.set_defaults(handler=cmd_stats)
