"""What a match response stamps on each hit: its match id, and one count for the owner's stats.

Nothing is written while matching. :class:`MatchCounter` adds one to an in-memory tally per
hit, keyed by (list, entry, UTC day); :class:`CountFlusher` moves the tally to the database
every few seconds and at shutdown with an additive upsert, so any number of worker processes
and instances on one database add up. Counts taken while the database is unreachable are kept
and flushed later.

Matches made by the operator (no organisation: ``hashmatch match`` without ``--org``) get a
match id no key can report on, and are not counted: they are checks, not platform uploads.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from hashmatch.errors import StoreUnavailable
from hashmatch.matching.tokens import OPERATOR, MatchTokens

if TYPE_CHECKING:
    from hashmatch.matching.state import Match

log = logging.getLogger(__name__)

#: (list id, entry id, UTC day)
CountKey = tuple[int, int, dt.date]
Counts = dict[CountKey, int]

DEFAULT_FLUSH_SECONDS: Final = 5.0


class MatchCounter:
    """Matches per (list, entry, day) since the last :meth:`take`. Thread-safe: small batches
    are answered on the event loop, large ones in worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counts = {}

    def add(self, key: CountKey) -> None:
        with self._lock:
            counts = self._counts
            counts[key] = counts.get(key, 0) + 1

    def take(self) -> Counts:
        """Everything counted so far; the tally starts again from nothing."""
        with self._lock:
            taken, self._counts = self._counts, {}
        return taken

    def give_back(self, counts: Mapping[CountKey, int]) -> None:
        """Counts a flush could not write: they go out with the next one."""
        with self._lock:
            for key, value in counts.items():
                self._counts[key] = self._counts.get(key, 0) + value

    def pending(self) -> int:
        with self._lock:
            return sum(self._counts.values())


class Stamp:
    """One response's stamper: the match time (whole seconds, once per response) and who
    matched."""

    __slots__ = ("_at", "_counter", "_day", "_organisation", "_tokens")

    def __init__(
        self,
        tokens: MatchTokens,
        counter: MatchCounter | None,
        organisation: str | None,
        now: float,
    ) -> None:
        self._tokens = tokens
        self._organisation = OPERATOR if organisation is None else organisation
        self._counter = None if organisation is None else counter
        self._at = int(now)
        self._day = dt.datetime.fromtimestamp(self._at, dt.UTC).date()

    def match_id(self, match: Match) -> str:
        """The id of this hit, counted once for its list's stats."""
        if self._counter is not None:
            self._counter.add((match.list_id, match.entry_id, self._day))
        return self._tokens.issue(match.entry_id, match.list_id, self._organisation, self._at)


class MatchRecorder:
    """The tokens and the counter of one process."""

    def __init__(self, tokens: MatchTokens, counter: MatchCounter | None = None) -> None:
        self.tokens = tokens
        self.counter = counter if counter is not None else MatchCounter()

    def stamp(self, organisation: str | None, now: float | None = None) -> Stamp:
        return Stamp(self.tokens, self.counter, organisation, time.time() if now is None else now)


class CountFlusher:
    """A thread writing the counter's tally every ``interval`` seconds, and once more at
    :meth:`stop`."""

    def __init__(
        self,
        counter: MatchCounter,
        write: Callable[[Mapping[CountKey, int]], None],
        interval: float = DEFAULT_FLUSH_SECONDS,
    ) -> None:
        self._counter = counter
        self._write = write
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def flush(self) -> int:
        """Write what was counted; the number of matches written (0 when it must wait)."""
        counts = self._counter.take()
        if not counts:
            return 0
        try:
            self._write(counts)
        except StoreUnavailable:
            self._counter.give_back(counts)
            log.warning("match counts kept in memory: database unavailable")
            return 0
        except Exception:
            self._counter.give_back(counts)
            raise
        return sum(counts.values())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hashmatch-counts", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.flush()
            except Exception:
                log.exception("could not write match counts; they are kept for the next try")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            self.flush()
        except Exception:
            log.exception("match counts lost at shutdown: %d", self._counter.pending())
