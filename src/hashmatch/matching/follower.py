"""One replica kept in step with the change log.

:class:`Follower` loads a :class:`~hashmatch.matching.state.MatchState` (from the newest
snapshot, else from the database), then applies every change committed after the cursor it
reflects: additions and withdrawals in place, list changes by reloading the lists. A
background thread does so as changes arrive (PostgreSQL notifies at commit; SQLite is polled),
so a change made through any replica is matched everywhere within a poll interval. While the
database is out of reach it says why (:meth:`Follower.problem`), logs the outage once and
retries with backoff; matching goes on from memory.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Final

from hashmatch.errors import StoreUnavailable
from hashmatch.matching import snapshots
from hashmatch.matching.policy import DEFAULT_BOUNDS, ThresholdBounds
from hashmatch.matching.state import MatchState
from hashmatch.store import ChangeListener, Store

log = logging.getLogger(__name__)

DEFAULT_POLL_SECONDS: Final = 0.2
#: Longest wait between retries while the database is unreachable.
MAX_BACKOFF_SECONDS: Final = 5.0
#: A follower that has not read the change log for this long is reported not ready.
STALE_SECONDS: Final = 30.0


class Follower:
    def __init__(
        self,
        store: Store,
        snapshot_dir: Path | None = None,
        bounds: ThresholdBounds = DEFAULT_BOUNDS,
    ) -> None:
        self.store = store
        self.snapshot_dir = snapshot_dir
        self.state = MatchState(bounds)
        self.cursor = 0
        self.last_refresh = 0.0
        self._bounds = bounds
        self._apply_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: ChangeListener | None = None
        self._problem: str | None = None

    def load(self) -> None:
        """Fill the state from the latest snapshot (if any), then catch up with the log."""
        with self._apply_lock:
            loaded = (
                None
                if self.snapshot_dir is None
                else snapshots.load(self.snapshot_dir, self._bounds)
            )
            if loaded is None:
                cursor = self.store.changes.latest()
                state = MatchState.build(
                    self.store.entries.live_rows(upto_cursor=cursor), self._bounds
                )
            else:
                state, cursor = loaded
            state.set_lists(self.store.lists.all())
            self.state, self.cursor = state, cursor
        self.refresh()
        if loaded is None:
            self.save_snapshot()  # the next start loads this instead of the whole database

    def refresh(self) -> int:
        """Apply every change committed after our cursor; returns how many were applied."""
        applied = 0
        with self._apply_lock:
            while True:
                changes = self.store.changes.after(self.cursor, limit=1000)
                if not changes:
                    break
                for change in changes:
                    if change.kind == "add":
                        rows = self.store.entries.added_by(change.cursor)
                        if not self.state.knows_lists(row.list_id for row in rows):
                            self.state.set_lists(self.store.lists.all())
                        self.state.add(rows)
                    elif change.kind == "withdraw":
                        self.state.withdraw(self.store.entries.withdrawn_by(change.cursor))
                    else:
                        self.state.set_lists(self.store.lists.all())
                    self.cursor = change.cursor
                    applied += 1
        self.last_refresh = time.monotonic()
        return applied

    def save_snapshot(self) -> Path | None:
        """Write the state and its cursor under the snapshot folder; returns where."""
        if self.snapshot_dir is None:
            return None
        with self._apply_lock:
            return snapshots.save(self.state, self.cursor, self.snapshot_dir)

    def start(self, poll_seconds: float = DEFAULT_POLL_SECONDS) -> None:
        """Follow the change log in a background thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._follow, args=(poll_seconds,), name="hashmatch-follower", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.wake()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def problem(self) -> str | None:
        """Why this replica is not following the change log, or None when it is."""
        if self._problem is not None:
            return self._problem
        if self._thread is not None and time.monotonic() - self.last_refresh > STALE_SECONDS:
            return f"change log not read for over {STALE_SECONDS:.0f} s"
        return None

    def _follow(self, poll_seconds: float) -> None:
        listener = self._listener = self.store.changes.listener()
        delay = poll_seconds
        try:
            while not self._stop.is_set():
                listener.wait(delay)
                if self._stop.is_set():
                    break
                try:
                    self.refresh()
                except Exception as exc:
                    # Once per state change, not every poll: the log must stay readable
                    # through an outage, and matching goes on from memory meanwhile.
                    problem = getattr(exc, "message", None) or type(exc).__name__
                    if self._problem is None:
                        log.warning(
                            "cannot follow the change log (%s); matching goes on from memory, "
                            "retrying with backoff",
                            problem,
                            exc_info=not isinstance(exc, StoreUnavailable),
                        )
                    self._problem = problem
                    delay = min(MAX_BACKOFF_SECONDS, delay * 2)
                    continue
                if self._problem is not None:
                    log.warning("following the change log again, at cursor %d", self.cursor)
                self._problem = None
                delay = poll_seconds
        finally:
            self._listener = None
            listener.close()
