"""Stopping an organisation from rebuilding another's hash values through matching.

A match answer is a comparison with a hidden hash, and comparisons leak. With exact distances,
one near-duplicate and its 256 one-bit flips give the listed PDQ hash in one batch; so other
organisations' lists report a band, not a distance (:func:`.verdict.shown_distance`).
But every threshold is itself an edge: standing exactly on it (``max_distance`` puts it
anywhere), a flip of bit *i* turns the answer to "match" exactly when bit *i* disagrees with
the listed hash. Exact matching at the threshold is a contract, so the edge cannot be blurred;
instead the pattern is recognised and the key stopped before it has learned much.

The pattern, per probing organisation and probed entry: a *boundary hit* (a hit in a list the
organisation does not own, in the outer quarter of the threshold it was judged against), then
queries within a few bits of it that vary bit positions one after another. Re-uploads of one
image vary only its few unstable bits, wherever they land; a probe has to vary every position
it wants to learn. So each organisation's boundary hits are kept as anchors (in memory, for a
day, never stored), every query of that organisation is compared with its anchors, and the bit
positions in which nearby queries differ from an anchor are accumulated per entry. When they
cover a quarter of the hash (64 of PDQ's 256 bits; divided among worker processes, each of which
sees only its share), :class:`ProbeDetected` is raised and the service suspends the key (and
audits it under the probed list); other keys of the organisation trip at their next probe.

Owners are never limited on their own lists: they can export them anyway.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import numpy as np

from hashmatch.signals import Hash, SignalType

if TYPE_CHECKING:
    from hashmatch.matching.state import Match

_POPCOUNT: Final = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


class ProbeDetected(Exception):
    """An organisation's queries vary too many bit positions around a boundary hit."""

    def __init__(self, organisation: str, list_name: str, entry_id: int, positions: int) -> None:
        super().__init__(
            f"organisation {organisation!r} varied {positions} bit positions of queries "
            f"around a boundary hit on entry {entry_id} of list {list_name!r}"
        )
        self.organisation = organisation
        self.list_name = list_name
        self.entry_id = entry_id
        self.positions = positions


@dataclass(frozen=True)
class ProbeRules:
    """How near a query must come to an anchor to count, and how much may vary."""

    #: Queries within this fraction of the hash's bits of an anchor count (PDQ: 8 bits).
    radius_fraction: float = 1 / 32
    #: Positions that may vary around one entry's anchors, as a fraction of the bits (64).
    budget_fraction: float = 1 / 4
    #: How long anchors and accumulated positions are kept.
    window_seconds: float = 24 * 3600
    #: Anchors kept per organisation and algorithm (oldest dropped first).
    max_anchors: int = 256
    #: Worker processes sharing the traffic: each enforces its share of the budget.
    workers: int = 1

    def radius(self, algorithm: SignalType) -> int:
        return max(1, int(algorithm.bits * self.radius_fraction))

    def budget(self, algorithm: SignalType) -> int:
        whole = int(algorithm.bits * self.budget_fraction)
        return max(algorithm.bits // 16, whole // max(1, self.workers))


def boundary_zone(threshold: int) -> int:
    """Hits farther than ``threshold - boundary_zone(threshold)`` are boundary hits."""
    return max(2, threshold // 4)


def is_boundary_hit(match: Match, organisation: str) -> bool:
    return (
        match.algorithm.perceptual
        and match.owner != organisation
        and match.distance > match.threshold - boundary_zone(match.threshold)
    )


@dataclass
class _Anchors:
    codes: np.ndarray  # (n, nbytes) uint8
    entries: list[tuple[int, str]]  # (entry id, list name) of each anchor
    times: list[float]


@dataclass
class _Varied:
    mask: int
    since: float


@dataclass
class _OrganisationState:
    anchors: dict[SignalType, _Anchors] = field(default_factory=dict)
    varied: dict[tuple[SignalType, int], _Varied] = field(default_factory=dict)
    last_seen: float = 0.0
    started: float = field(default_factory=time.time)  # wall clock, to compare with the store


class ProbeGuard:
    """In-memory, per process; thread-safe."""

    def __init__(self, rules: ProbeRules | None = None) -> None:
        self.rules = rules or ProbeRules()
        self._lock = threading.Lock()
        self._states: dict[str, _OrganisationState] = {}

    def observe(
        self,
        organisation: str,
        queries: Sequence[Hash],
        found: Sequence[Sequence[Match]],
        now: float | None = None,
    ) -> None:
        """Account one request's query hashes and their matches; raise
        :class:`ProbeDetected` when they complete a probe pattern."""
        moment = time.monotonic() if now is None else now
        boundary = [
            (query, match)
            for query, matches in zip(queries, found, strict=True)
            for match in matches
            if is_boundary_hit(match, organisation)
        ]
        with self._lock:
            state = self._states.get(organisation)
            if state is None and not boundary:
                return  # the common case: no anchors, nothing to remember
            if state is None:
                state = self._states[organisation] = _OrganisationState()
            self._expire(state, moment)
            state.last_seen = moment
            for query in queries:
                if query.algorithm.perceptual and query.algorithm in state.anchors:
                    self._accumulate(state, organisation, query, moment)
            for query, match in boundary:
                self._anchor(state, query, match, moment)
            if len(self._states) > 10_000:
                self._forget_idle(moment)

    def forgive(self, organisation: str, reviewed_at: float) -> None:
        """Forget what was seen of ``organisation`` before ``reviewed_at`` (a wall-clock
        time): the operator reinstated its key after looking at it."""
        with self._lock:
            state = self._states.get(organisation)
            if state is not None and state.started < reviewed_at:
                del self._states[organisation]

    def _accumulate(
        self, state: _OrganisationState, organisation: str, query: Hash, moment: float
    ) -> None:
        algorithm = query.algorithm
        anchors = state.anchors[algorithm]
        code = np.frombuffer(query.value, dtype=np.uint8)
        distances = _POPCOUNT[np.bitwise_xor(anchors.codes, code)].sum(axis=1, dtype=np.int32)
        radius = self.rules.radius(algorithm)
        budget = self.rules.budget(algorithm)
        query_bits = int.from_bytes(query.value, "big")
        for row in np.flatnonzero((distances > 0) & (distances <= radius)):
            entry_id, list_name = anchors.entries[int(row)]
            anchor_bits = int.from_bytes(anchors.codes[int(row)].tobytes(), "big")
            varied = state.varied.setdefault((algorithm, entry_id), _Varied(0, moment))
            varied.mask |= query_bits ^ anchor_bits
            positions = varied.mask.bit_count()
            if positions >= budget:
                raise ProbeDetected(organisation, list_name, entry_id, positions)

    def _anchor(self, state: _OrganisationState, query: Hash, match: Match, moment: float) -> None:
        code = np.frombuffer(query.value, dtype=np.uint8)[np.newaxis, :]
        anchors = state.anchors.get(query.algorithm)
        if anchors is None:
            state.anchors[query.algorithm] = _Anchors(
                code.copy(), [(match.entry_id, match.list)], [moment]
            )
            return
        same = np.flatnonzero((anchors.codes == code).all(axis=1))
        for row in same:
            if anchors.entries[int(row)][0] == match.entry_id:
                anchors.times[int(row)] = moment
                return
        anchors.codes = np.concatenate([anchors.codes, code])[-self.rules.max_anchors :]
        anchors.entries = [*anchors.entries, (match.entry_id, match.list)][
            -self.rules.max_anchors :
        ]
        anchors.times = [*anchors.times, moment][-self.rules.max_anchors :]

    def _expire(self, state: _OrganisationState, moment: float) -> None:
        oldest = moment - self.rules.window_seconds
        for algorithm, anchors in list(state.anchors.items()):
            keep = [i for i, at in enumerate(anchors.times) if at >= oldest]
            if not keep:
                del state.anchors[algorithm]
            elif len(keep) < len(anchors.times):
                anchors.codes = anchors.codes[keep]
                anchors.entries = [anchors.entries[i] for i in keep]
                anchors.times = [anchors.times[i] for i in keep]
        state.varied = {k: v for k, v in state.varied.items() if v.since >= oldest}

    def _forget_idle(self, moment: float) -> None:
        oldest = moment - self.rules.window_seconds
        self._states = {k: s for k, s in self._states.items() if s.last_seen >= oldest}
