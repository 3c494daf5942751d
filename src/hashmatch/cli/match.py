"""``hashmatch match`` and ``hashmatch audit``: the lists asked from a shell, with the same
verdict as the HTTP API (:mod:`hashmatch.matching.lookup`)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hashmatch.cli.common import open_store, print_json
from hashmatch.config import Settings
from hashmatch.errors import MediaError, MediaTooLarge

if TYPE_CHECKING:
    from hashmatch.api.videos import HashedVideo
    from hashmatch.signals import Query


def cmd_match(args: argparse.Namespace, settings: Settings) -> int:
    from hashmatch import fields
    from hashmatch.matching.counts import MatchRecorder
    from hashmatch.matching.follower import Follower
    from hashmatch.matching.lookup import lookup, lookup_video, matchable_lists
    from hashmatch.matching.verdict import Verdict, verdict_dict
    from hashmatch.signals import Query, parse_hash

    organisation = fields.organisation(args.org, "--org") if args.org else None
    video_settings = _video_settings(settings, args)
    store = open_store(settings)
    follower = Follower(store, settings.data_dir / "snapshots", settings.threshold_bounds)
    follower.load()
    # Matches made for an organisation are counted for the owners' stats like the API's.
    recorder = MatchRecorder(store.outcomes.tokens())
    stamp = recorder.stamp(organisation)
    labels: list[str] = []
    items: list[list[Query] | HashedVideo] = []
    for text in args.hash or ():
        labels.append(text)
        items.append([Query(parse_hash(text))])
    for path in args.paths:
        labels.append(path)
        items.append(_hash_path(Path(path), settings, video_settings))
    wanted = [n.strip() for n in args.lists.split(",") if n.strip()] if args.lists else None
    state = follower.state
    names = matchable_lists(state, organisation, wanted)
    images = [item for item in items if isinstance(item, list)]
    image_verdicts = iter(lookup(state, images, organisation=organisation, lists=names))
    results = []
    for label, item in zip(labels, items, strict=True):
        verdict: Verdict
        if isinstance(item, list):
            verdict = next(image_verdicts)
        else:
            verdict = lookup_video(
                state,
                item.query,
                item.digest_queries,
                organisation=organisation,
                lists=names,
            )
        result = {"query": label, **verdict_dict(verdict, organisation, stamp)}
        if not isinstance(item, list):
            result["video"] = item.describe().model_dump()
        results.append(result)
    store.outcomes.add_counts(recorder.counter.take())
    if args.json:
        print_json(results)
        return 0
    for result in results:
        print(f"{'MATCH' if result['match'] else 'no match':<8} {result['query']}")
        for m in result["matches"] + result["allowed"]:
            state_text = f" (suppressed by {m['suppressed_by']})" if m["suppressed"] else ""
            distance = m["distance"] if m["distance"] is not None else m["band"]
            video = m.get("video")
            score = (
                f" query={video['query_percent']}% listed={video['listed_percent']}%"
                if video
                else ""
            )
            print(
                f"         {m['list']} [{m['kind']}] {m['algorithm']} distance={distance}{score} "
                f"entry={m['entry_id']} reference={m['reference']}{state_text}"
            )
    return 0


def _video_settings(settings: Settings, args: argparse.Namespace) -> Settings:
    """The service's video settings, with the CLI's byte cap and sampling
    (:func:`hashmatch.cli.hash.video_options`)."""
    from hashmatch.cli.hash import video_options

    options = video_options(
        settings, max_bytes=args.max_video_bytes, seconds_per_hash=args.seconds_per_hash
    )
    # An upload is sampled at one interval, as the service samples it.
    return dataclasses.replace(
        settings,
        max_video_bytes=options.limits.max_bytes,
        video_seconds_per_hash=min(options.seconds_per_hash),
    )


def _hash_path(path: Path, settings: Settings, video: Settings) -> list[Query] | HashedVideo:
    """A local file's queries: an image's (its variants and digests), or a video hashed as
    the service hashes an upload (vPDQ frames and the digests of its bytes)."""
    from hashmatch.api.videos import hash_upload
    from hashmatch.hashsets.batch import HEAD_BYTES
    from hashmatch.media.video import identify_video
    from hashmatch.signals import query_hashes

    try:
        with path.open("rb") as stream:
            head = stream.read(HEAD_BYTES)
            if head and identify_video(head) is not None:
                size = path.stat().st_size
                if size > video.max_video_bytes:
                    raise MediaTooLarge(
                        f"video of {size} bytes is over the limit of {video.max_video_bytes} "
                        "(--max-video-bytes)"
                    )
                stream.seek(0)  # one read, one copy: a video may be gigabytes
                return hash_upload(stream.read(), video)
            data = head + stream.read()
        _, queries = query_hashes(data, settings.media_limits)
    except MediaError as exc:
        raise type(exc)(f"{path}: {exc.message}") from None
    return queries


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings)
    if args.list is not None:
        store.lists.get(args.list)  # a mistyped name is an error, not an empty trail
    print_json(store.audit.log(args.list, limit=args.limit))
    return 0


def add_parser(commands: Any) -> None:
    from hashmatch.cli.hash import CLI_MAX_VIDEO_BYTES, byte_count_arg, seconds_per_hash_arg

    match = commands.add_parser(
        "match",
        help="match local files (images, videos) or hashes against the lists",
        description="Match images, videos and hashes against the lists, with the verdict the "
        "HTTP API gives. A video is told from an image by its bytes and matched by its vPDQ "
        "frames and the digests of its bytes; its result also says what was hashed of it.",
    )
    match.add_argument("paths", nargs="*", metavar="PATH")
    match.add_argument("--hash", action="append", help="ALG:HEX")
    match.add_argument("--lists", help="comma-separated list names (each must exist)")
    match.add_argument(
        "--org",
        help="match as this organisation: its own and accepted lists, distances as it sees "
        "them (default: every list, as the operator)",
    )
    match.add_argument("--json", action="store_true")
    match.add_argument(
        "--seconds-per-hash",
        type=seconds_per_hash_arg,
        help="videos: one frame hashed every this many seconds; 0: every frame (default: "
        "HASHMATCH_VIDEO_SECONDS_PER_HASH, 1)",
    )
    match.add_argument(
        "--max-video-bytes",
        type=byte_count_arg,
        help=f"largest video to match (default: {CLI_MAX_VIDEO_BYTES:_}); it is read into "
        "memory whole",
    )
    match.set_defaults(handler=cmd_match)

    audit = commands.add_parser("audit", help="who changed what")
    audit.add_argument("--list")
    audit.add_argument("--limit", type=int, default=100)
    audit.set_defaults(handler=cmd_audit)
