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

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from hashmatch.errors import InvalidField
from hashmatch.hashing import Algorithm

if TYPE_CHECKING:
    from hashmatch.store import ListInfo

#: New lists' thresholds, measured by ``benchmarks/bench_robustness.py`` on real photographs.
#: PDQ: precision stays at 99.99% on every transform up to 77 bits, and the extrapolated tail
#: of distances between distinct photos reaches one in 10^12 pairs at 44; 31 (Meta's
#: recommendation) keeps two decades of that margin for uploads that are not photographs.
#: pHash: precision falls below 99.99% above 7 bits (a 4 degree turn), so one bit under it.
DEFAULT_THRESHOLDS: Final = {Algorithm.PDQ.value: 31, Algorithm.PHASH.value: 6}


@dataclass(frozen=True)
class ThresholdBounds:
    """The largest threshold any list may use, per perceptual algorithm.

    A list's owner chooses its thresholds, but every organisation that accepts the list lives
    with its false matches, so the instance caps them where the measured tail of distances
    between distinct photographs (``benchmarks/bench_robustness.py``, ``tail_fit``: one false
    match in 10^12 pairs at 45 bits, ten times as many every 6 bits) predicts at most one false
    match per 10,000 queries against a 10-million-entry list: 10^-11 a pair, 51 bits for PDQ.
    pHash's tail is three times as heavy (ten times as many every 3 bits, distinct photos as
    close as 14 bits): no threshold meets that budget on a list of millions, so its bound is
    where the benchmark still measures 99.99% precision on every transform, 7 bits; large
    lists belong on PDQ. Operators may move the bounds (``HASHMATCH_MAX_THRESHOLD_PDQ``,
    ``HASHMATCH_MAX_THRESHOLD_PHASH``); lists over a lowered bound are matched at the bound.
    """

    pdq: int = 51
    phash: int = 7

    def __post_init__(self) -> None:
        for algorithm in (Algorithm.PDQ, Algorithm.PHASH):
            value = self.maximum(algorithm)
            if not 0 <= value <= algorithm.bits // 2:
                raise ValueError(
                    f"{algorithm} threshold bound must be 0-{algorithm.bits // 2}, got {value}"
                )

    def maximum(self, algorithm: Algorithm) -> int:
        if algorithm is Algorithm.PDQ:
            return self.pdq
        if algorithm is Algorithm.PHASH:
            return self.phash
        return 0

    def clamp(self, algorithm: Algorithm, threshold: int) -> int:
        return min(threshold, self.maximum(algorithm))

    def defaults(self) -> dict[str, int]:
        """New lists' thresholds, lowered to the bounds where an operator set them lower."""
        return {
            name: self.clamp(Algorithm(name), value) for name, value in DEFAULT_THRESHOLDS.items()
        }

    def check(self, thresholds: object, field: str = "thresholds") -> dict[str, int]:
        """``{"pdq": 31, ...}`` validated: perceptual algorithms only, integers within bounds."""
        if not isinstance(thresholds, dict):
            raise InvalidField(field, "must be an object of algorithm -> threshold")
        checked: dict[str, int] = {}
        for name, value in thresholds.items():
            if name not in DEFAULT_THRESHOLDS:
                raise InvalidField(
                    f"{field}.{str(name)[:32]}",
                    "only pdq and phash have thresholds (digests match exactly)",
                )
            top = self.maximum(Algorithm(name))
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
