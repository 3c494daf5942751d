"""``hashmatch match`` and ``hashmatch audit``: the lists asked from a shell, with the same
verdict as the HTTP API (:mod:`hashmatch.matching.lookup`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hashmatch.cli.common import open_store, print_json
from hashmatch.config import Settings
from hashmatch.errors import MediaError


def cmd_match(args: argparse.Namespace, settings: Settings) -> int:
    from hashmatch import fields
    from hashmatch.matching.counts import MatchRecorder
    from hashmatch.matching.follower import Follower
    from hashmatch.matching.lookup import lookup, matchable_lists
    from hashmatch.matching.verdict import verdict_dict
    from hashmatch.signals import Query, parse_hash, query_hashes

    organisation = fields.organisation(args.org, "--org") if args.org else None
    store = open_store(settings)
    follower = Follower(store, settings.data_dir / "snapshots", settings.threshold_bounds)
    follower.load()
    # Matches made for an organisation are counted for the owners' stats like the API's.
    recorder = MatchRecorder(store.outcomes.tokens())
    stamp = recorder.stamp(organisation)
    labels: list[str] = []
    items: list[list[Query]] = []
    for text in args.hash or ():
        labels.append(text)
        items.append([Query(parse_hash(text))])
    for path in args.paths:
        try:
            _, queries = query_hashes(Path(path).read_bytes(), settings.media_limits)
        except MediaError as exc:
            raise type(exc)(f"{path}: {exc.message}") from None
        labels.append(path)
        items.append(queries)
    wanted = [n.strip() for n in args.lists.split(",") if n.strip()] if args.lists else None
    state = follower.state
    names = matchable_lists(state, organisation, wanted)
    verdicts = lookup(state, items, organisation=organisation, lists=names)
    results = [
        {"query": label, **verdict_dict(verdict, organisation, stamp)}
        for label, verdict in zip(labels, verdicts, strict=True)
    ]
    store.outcomes.add_counts(recorder.counter.take())
    if args.json:
        print_json(results)
        return 0
    for result in results:
        print(f"{'MATCH' if result['match'] else 'no match':<8} {result['query']}")
        for m in result["matches"] + result["allowed"]:
            state_text = f" (suppressed by {m['suppressed_by']})" if m["suppressed"] else ""
            distance = m["distance"] if m["distance"] is not None else m["band"]
            print(
                f"         {m['list']} [{m['kind']}] {m['algorithm']} distance={distance} "
                f"entry={m['entry_id']} reference={m['reference']}{state_text}"
            )
    return 0


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings)
    if args.list is not None:
        store.lists.get(args.list)  # a mistyped name is an error, not an empty trail
    print_json(store.audit.log(args.list, limit=args.limit))
    return 0


def add_parser(commands: Any) -> None:
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

    audit = commands.add_parser("audit", help="who changed what")
    audit.add_argument("--list")
    audit.add_argument("--limit", type=int, default=100)
    audit.set_defaults(handler=cmd_audit)
