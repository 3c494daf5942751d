"""The overview's chart of matches and removals per day, as geometry for an inline SVG (drawn
by the template: no script, no image fetched, readable as a table beside it)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

WIDTH: Final = 720
HEIGHT: Final = 180
TOP: Final = 10
BOTTOM: Final = 24
LEFT: Final = 40


@dataclass(frozen=True)
class Bar:
    day: dt.date
    matches: int
    removals: int
    x: float
    width: float
    match_height: float
    removal_height: float


@dataclass(frozen=True)
class Chart:
    bars: tuple[Bar, ...]
    peak: int
    width: int = WIDTH
    height: int = HEIGHT
    baseline: float = HEIGHT - BOTTOM
    left: int = LEFT

    @property
    def empty(self) -> bool:
        return self.peak == 0


def _nice(peak: int) -> int:
    """The axis maximum: 1, 2 or 5 times a power of ten, at least ``peak``."""
    if peak <= 0:
        return 1
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= peak:
                return step * scale
        scale *= 10


def chart(daily: Sequence[tuple[dt.date, int, int]]) -> Chart:
    peak = max((max(m, r) for _, m, r in daily), default=0)
    top = _nice(peak)
    plot = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT) / max(len(daily), 1)
    bar = max(slot / 2 - 1, 1)
    bars = tuple(
        Bar(
            day,
            matches,
            removals,
            LEFT + i * slot,
            bar,
            plot * matches / top,
            plot * removals / top,
        )
        for i, (day, matches, removals) in enumerate(daily)
    )
    return Chart(bars, top if peak else 0)
