"""An iterator run ahead in a thread of its own, so that producing and consuming overlap.

A video's frames are decoded (FFmpeg's threads, the GIL released) and hashed (PDQ, the GIL
released too): one after the other, a 720p video takes decode + hash time; overlapped, the
larger of the two where the cores allow. The producer runs at most ``depth`` items ahead, so a
few decoded frames are held, never the video. Whatever the producer raises is raised to the
consumer at the point it was reached; a consumer that stops early stops the producer, which
closes its iterator (and so the video's container) in its own thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Final, Generic, TypeVar

T = TypeVar("T")

#: Items the producer may run ahead: enough to ride out a slow frame, a bounded memory.
DEFAULT_DEPTH: Final = 4


class _Done:
    """End of the items."""


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Prefetched(Generic[T]):
    """Iterate ``source`` in a background thread, ``depth`` items ahead."""

    def __init__(self, source: Iterator[T], depth: int = DEFAULT_DEPTH) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self._source = source
        self._items: queue.Queue[T | _Done | _Failed] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="prefetch", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        try:
            for item in self._source:
                if not self._put(item):
                    return
            self._put(_Done())
        except BaseException as exc:
            self._put(_Failed(exc))
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()

    def _put(self, item: T | _Done | _Failed) -> bool:
        while not self._stop.is_set():
            try:
                self._items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        try:
            while True:
                item = self._items.get()
                if isinstance(item, _Done):
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Stop the producer and wait for it to close its iterator."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._items.get_nowait()
            except queue.Empty:
                self._thread.join(timeout=0.05)


def prefetched(source: Iterator[T], depth: int = DEFAULT_DEPTH) -> Iterator[T]:
    return iter(Prefetched(source, depth))
