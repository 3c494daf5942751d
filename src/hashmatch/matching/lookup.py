"""A caller's match question answered: the lists it may match, the search, the probe check and
one verdict per item. The HTTP routes and ``hashmatch match`` both come through here.

A filter fails closed: a list name the caller cannot match is an error, never a silent "no
match" (a typo in ``lists=`` must not look like a clean upload).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from hashmatch import fields
from hashmatch.errors import InvalidField, NotFound
from hashmatch.matching.policy import can_match, can_see
from hashmatch.matching.probes import ProbeGuard
from hashmatch.matching.state import MatchState
from hashmatch.matching.verdict import Hit, Verdict, decide
from hashmatch.signals import Query

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
