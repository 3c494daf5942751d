"""A caller's match question answered: the lists it may match, the search, the probe check and
one verdict per item. The HTTP routes and ``hashmatch match`` both come through here.

A filter fails closed: a list name the caller cannot match is an error, never a silent "no
match" (a typo in ``lists=`` must not look like a clean upload).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import numpy as np

from hashmatch import fields
from hashmatch.errors import InvalidField, NotFound
from hashmatch.matching.policy import can_match, can_see
from hashmatch.matching.probes import ProbeGuard
from hashmatch.matching.state import MatchState
from hashmatch.matching.verdict import Hit, Verdict, decide
from hashmatch.matching.video import QueryFrames, search_video
from hashmatch.signals import Hash, Query

#: One item: the hashes asked about together (an image's variants and digests, or one hash).
Item = Sequence[Query]

MAX_LIST_FILTER: Final = 1_000
NO_MATCH: Final = Verdict(False, (), ())


def matchable_lists(
    matcher: MatchState, organisation: str | None, wanted: Iterable[str] | None = None
) -> frozenset[str]:
    """Names of the lists ``organisation`` may match (``None``: the operator, every list),
    narrowed to ``wanted`` when given. A wanted name that does not exist, or that the caller
    may not see, is :class:`NotFound` (the same answer for both: another organisation's list
    is never confirmed); an offer not yet accepted is :class:`InvalidField`."""
    infos = matcher.lists()
    allowed = frozenset(
        info.name for info in infos if organisation is None or can_match(info, organisation)
    )
    if wanted is None:
        return allowed
    names = list(dict.fromkeys(wanted))
    if len(names) > MAX_LIST_FILTER:
        raise InvalidField("lists", f"at most {MAX_LIST_FILTER} list names")
    missing: list[str] = []
    for position, name in enumerate(names):
        if not isinstance(name, str) or not fields.is_list_name(name):
            raise InvalidField(f"lists[{position}]", "not a list name")
        if name in allowed:
            continue
        info = matcher.get_list(name)
        if info is not None and organisation is not None and can_see(info, organisation):
            raise InvalidField(
                f"lists[{position}]",
                f"list {name!r} is offered to {organisation!r} but not accepted",
            )
        missing.append(name)
    if missing:
        shown = ", ".join(repr(name) for name in missing[:5])
        raise NotFound(f"no list named {shown}" + (" (and more)" if len(missing) > 5 else ""))
    return frozenset(names)


def lookup(
    matcher: MatchState,
    items: Sequence[Item],
    *,
    organisation: str | None,
    lists: frozenset[str],
    max_distance: int | None = None,
    guard: ProbeGuard | None = None,
) -> list[Verdict]:
    """One verdict per item, from one search over all their hashes.

    ``guard`` sees every query hash of the request with its hits first, and may raise
    :class:`hashmatch.matching.probes.ProbeDetected` before anything is answered."""
    flat = [query for item in items for query in item]
    found = matcher.match_queries(flat, lists=lists, max_distance=max_distance)
    if guard is not None and organisation is not None:
        guard.observe(organisation, [query.hash for query in flat], found)
    by_id = matcher.list_map()
    verdicts = []
    start = 0
    for item in items:
        stop = start + len(item)
        hits = [
            Hit(match, query.variant, position)
            for position, (query, matches) in enumerate(zip(item, found[start:stop], strict=True))
            for match in matches
        ]
        # Most items of a batch hit nothing: they share one verdict.
        verdicts.append(decide(hits, by_id) if hits else NO_MATCH)
        start = stop
    return verdicts


def lookup_video(
    matcher: MatchState,
    frames: QueryFrames,
    digests: Sequence[Query] = (),
    *,
    organisation: str | None,
    lists: frozenset[str],
    max_distance: int | None = None,
    guard: ProbeGuard | None = None,
) -> Verdict:
    """The verdict on one video: its frames against listed videos and images
    (:mod:`.video`), and the digests of its bytes against listed digests.

    The probe guard sees each distinct frame that hit something, with its frame-level hits,
    after frames within the guard's radius of an earlier one are folded into it: a video's own
    near-identical frames (a still scene) must not read as bit positions varied around a
    boundary hit."""
    found = search_video(matcher, frames, lists=lists, max_distance=max_distance)
    hits = list(found.hits)
    if digests:
        digest_found = matcher.match_queries(digests, lists=lists, max_distance=max_distance)
        hits += [
            Hit(match, query.variant, 0)
            for query, matches in zip(digests, digest_found, strict=True)
            for match in matches
        ]
    hit_frames = [i for i, matches in enumerate(found.frame_matches) if matches]
    if guard is not None and organisation is not None and hit_frames:
        radius = guard.rules.radius(found.frame_hashes[0].algorithm)
        shown = _spread([found.frame_hashes[i] for i in hit_frames], radius)
        guard.observe(
            organisation,
            [found.frame_hashes[hit_frames[i]] for i in shown],
            [found.frame_matches[hit_frames[i]] for i in shown],
        )
    return decide(hits, matcher.list_map()) if hits else NO_MATCH


def _spread(hashes: Sequence[Hash], radius: int) -> list[int]:
    """Positions of ``hashes`` each further than ``radius`` from every earlier one kept."""
    if not hashes:
        return []
    codes = np.frombuffer(b"".join(h.value for h in hashes), dtype=np.uint8).reshape(
        len(hashes), -1
    )
    bits = np.unpackbits(codes, axis=1)
    kept: list[int] = []
    for position in range(len(hashes)):
        if kept:
            nearest = int(np.min(np.count_nonzero(bits[kept] != bits[position], axis=1)))
            if nearest <= radius:
                continue
        kept.append(position)
    return kept
