"""Who may see, match and change a list, and how far a list's threshold may reach.

Pure rules over :class:`~hashmatch.store.ListInfo` values, used by the store (to refuse what an
organisation may not do), the matcher (to search only what a caller may match) and every front
end, so that the HTTP API, the CLI and the console cannot disagree.

Sharing is by consent: a list shared with an organisation is an *offer*. The organisation sees
the offer (the list's name, owner, kind and category), and the list reaches its matches only
once it accepts; it may leave again at any time. Nothing another organisation does changes what
an organisation's matches say unless that organisation has accepted it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from hashmatch.errors import InvalidField
from hashmatch.signals import SignalType, hamming_signals

if TYPE_CHECKING:
    from hashmatch.store import ListInfo


#: A list's rule for listed videos, beside the distance at which two frames match (its ``vpdq``
#: threshold): the share of the query's distinct frames that must find a frame of the listed
#: video, and the share of the listed video's that must be found, in percent. vPDQ's own
#: matcher (python-threatexchange) asks 80 and 0. Ours asks less of the query because a query
#: sampled at other instants than the listed video (another frame rate, a clip cut anywhere)
#: meets frames up to half a second away from the listed ones; ``benchmarks/bench_video.py``
#: measures recall and the distinct-video tail at these values. 0 of the listed video lets a
#: clip match. A listed video shown whole inside a longer upload (a compilation) leaves most of
#: the query unmatched: it matches instead when ``vpdq_contained_percent`` of the listed video's
#: frames are found (Meta's README example asks 80 of the listed side; 0 turns it off).
VIDEO_PERCENTS: Final = {
    "vpdq_query_percent": 50,
    "vpdq_listed_percent": 0,
    "vpdq_contained_percent": 80,
}


def is_tightened(name: str, value: int, than: int) -> bool:
    """Whether threshold ``name`` at ``value`` is stricter than at ``than``: a lower distance,
    a higher video percentage (the containment share off, at 0, strictest of all)."""
    if name == "vpdq_contained_percent" and 0 in (value, than):
        return value == 0
    return value >= than if name in VIDEO_PERCENTS else value <= than


@dataclass(frozen=True)
class ThresholdBounds:
    """The largest threshold any list may use, per signal type matched by distance.

    A list's owner chooses its thresholds, but every organisation that accepts the list lives
    with its false matches, so the instance caps them: by default at each signal type's own
    ``max_threshold``, which its module derives from the measured tail of distances between
    distinct photographs (PDQ 51, pHash 7; see :mod:`hashmatch.signals.pdq`). Operators may
    move them (``HASHMATCH_MAX_THRESHOLDS=pdq=45,phash=6``); a list over a lowered bound is
    matched at the bound.
    """

    overrides: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, overrides: Mapping[str, int]) -> ThresholdBounds:
        return cls(tuple(sorted(overrides.items())))

    def __post_init__(self) -> None:
        known = {signal.name: signal for signal in hamming_signals()}
        for name, value in self.overrides:
            if name not in known:
                raise ValueError(f"no signal type matched by distance is named {name!r}")
            if not 0 <= value <= known[name].bits // 2:
                raise ValueError(f"{name} bound must be 0-{known[name].bits // 2}, got {value}")

    def maximum(self, algorithm: SignalType) -> int:
        if not algorithm.perceptual:
            return 0
        return dict(self.overrides).get(algorithm.name, algorithm.max_threshold)

    def clamp(self, algorithm: SignalType, threshold: int) -> int:
        return min(threshold, self.maximum(algorithm))

    def defaults(self) -> dict[str, int]:
        """New lists' thresholds, lowered to the bounds where an operator set them lower."""
        distances = {s.name: self.clamp(s, s.default_threshold) for s in hamming_signals()}
        return {**distances, **VIDEO_PERCENTS}

    def check(self, thresholds: object, field: str = "thresholds") -> dict[str, int]:
        """``{"pdq": 31, ...}`` validated: signal types matched by distance only, integers
        within their bounds."""
        if not isinstance(thresholds, dict):
            raise InvalidField(field, "must be an object of algorithm -> threshold")
        known = {signal.name: signal for signal in hamming_signals()}
        checked: dict[str, int] = {}
        for name, value in thresholds.items():
            if name in VIDEO_PERCENTS:
                if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
                    raise InvalidField(f"{field}.{name}", "must be a percentage from 0 to 100")
                checked[name] = value
                continue
            if name not in known:
                raise InvalidField(
                    f"{field}.{str(name)[:32]}",
                    f"only {', '.join([*known, *VIDEO_PERCENTS])} are thresholds (digests "
                    "match exactly)",
                )
            top = self.maximum(known[name])
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
                raise InvalidField(
                    f"{field}.{name}",
                    f"must be an integer from 0 to {top} (this instance's bound, from the "
                    f"measured false-match tail; see the README)",
                )
            checked[name] = value
        return checked


DEFAULT_BOUNDS: Final = ThresholdBounds()


def owns(info: ListInfo, organisation: str) -> bool:
    return info.owner == organisation


def can_see(info: ListInfo, organisation: str) -> bool:
    """The list's owner, and organisations it is offered to (to decide on the offer)."""
    return info.owner == organisation or organisation in info.shared_with


def can_match(info: ListInfo, organisation: str) -> bool:
    """The list's owner, and organisations that accepted its offer."""
    return info.owner == organisation or organisation in info.accepted_by


def may_suppress(allow: ListInfo, block_owner: str) -> bool:
    """Whether hits in allow-list ``allow`` may suppress block hits of lists owned by
    ``block_owner``: its own owner's, or those of owners that accepted it as trusted."""
    return allow.owner == block_owner or block_owner in allow.trusted_by
