"""Finding the picture inside a frame: letterbox bars, padding, and screenshot-like canvases.

Reposting a known image inside bars or on a larger canvas moves every PDQ bit: the hash sees a
different picture. Cutting the frame away before hashing gives back (nearly) the original, so
the picture inside is queried as extra variants beside the image as submitted.

A frame is found by peeling lines off the edges: a line is peeled while it is flat (nearly all
of its pixels within a few luma levels of its median) and of the frame's colour (that of the
outermost flat lines). Matching the colour is what keeps a black bar from eating into the clear
sky below it. A window on a desktop has two bands (the canvas, then a title bar of another colour),
so a bounded peel of one more band of any colour, above or below, gives further candidates.
Any of them can be wrong about a photograph with flat edges of its own; that costs an extra
query, never a missed match, because the untrimmed image is queried too.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from PIL import Image

#: How far (in luma levels) a frame pixel may stray from its line's median: JPEG noise and the
#: ringing next to the picture's edge stay within it.
FLAT_SPREAD: Final = 10
#: Share of a line's pixels that must lie within ``FLAT_SPREAD``: text in a title bar or a
#: logo on a bar leaves some out.
FLAT_SHARE: Final = 0.85
#: A frame thinner than this share of the side is left alone: PDQ shrugs it off anyway.
MIN_TRIM: Final = 0.03
#: What is left must be at least this share of each side, or it was not a frame around a
#: picture but a near-flat image.
MIN_KEEP: Final = 0.2
#: The second band (a title bar, a caption strip) is at most this share of the side, and its
#: lines need only this share of flat pixels: a title's letters cover much of a thin bar.
MAX_BAND: Final = 0.15
BAND_FLAT_SHARE: Final = 0.6
#: A band may start a line or two in: resampling blends the frame's edge into it.
_BAND_LEAD: Final = 3
#: Lines are judged this many at a time from each edge inward: most images have no frame, and
#: the first block ends the search.
_BLOCK: Final = 16

Box = tuple[int, int, int, int]  # left, top, right, bottom


def _peel(lines: np.ndarray, limit: int, colour: float | None, share: float) -> int:
    """How many of the first rows of ``lines`` are flat (``share`` of their pixels near the
    median) and of ``colour`` (None: of the first row's colour)."""
    for start in range(0, min(lines.shape[0], limit), _BLOCK):
        block = lines[start : min(start + _BLOCK, limit)]
        median = np.median(block, axis=1, keepdims=True)
        flat = (np.abs(block - median) <= FLAT_SPREAD).mean(axis=1) >= share
        if colour is None:
            if not flat[0]:
                return 0
            colour = float(median[0, 0])
        same = flat & (np.abs(median[:, 0] - colour) <= FLAT_SPREAD)
        stops = np.flatnonzero(~same)
        if stops.size:
            return start + int(stops[0])
    return min(int(lines.shape[0]), limit)


def _band(lines: np.ndarray, limit: int) -> int:
    """How many of the first rows of ``lines`` make one flat band of any colour."""
    best = 0
    for lead in range(_BAND_LEAD):
        found = _peel(lines[lead:], limit - lead, None, BAND_FLAT_SHARE)
        if found:
            best = max(best, lead + found)
    return best


def _frame_colour(luma: np.ndarray) -> float | None:
    """The colour of the frame: the median of the outermost flat lines, or None."""
    edges = [luma[0], luma[-1], luma[:, 0], luma[:, -1]]
    medians = [float(np.median(line)) for line in edges]
    flat = [
        m
        for line, m in zip(edges, medians, strict=True)
        if (np.abs(line - m) <= FLAT_SPREAD).mean() >= FLAT_SHARE
    ]
    return float(np.median(flat)) if flat else None


def _peel_box(luma: np.ndarray, colour: float) -> Box | None:
    """The whole image with flat lines of the frame's ``colour`` peeled off each side, rows and
    columns in turn until neither changes."""
    left, top, right, bottom = 0, 0, luma.shape[1], luma.shape[0]
    while True:
        region = luma[top:bottom, left:right]
        new_top = top + _peel(region, region.shape[0], colour, FLAT_SHARE)
        new_bottom = bottom - _peel(region[::-1], region.shape[0], colour, FLAT_SHARE)
        if new_bottom - new_top < MIN_KEEP * luma.shape[0]:
            return None
        region = luma[new_top:new_bottom, left:right].T
        new_left = left + _peel(region, region.shape[0], colour, FLAT_SHARE)
        new_right = right - _peel(region[::-1], region.shape[0], colour, FLAT_SHARE)
        if new_right - new_left < MIN_KEEP * luma.shape[1]:
            return None
        peeled = (new_left, new_top, new_right, new_bottom)
        if peeled == (left, top, right, bottom):
            return peeled
        left, top, right, bottom = peeled


def _bands(luma: np.ndarray, box: Box) -> list[Box]:
    """``box`` with one more horizontal band (a title bar above, a caption strip below: any
    colour, at most ``MAX_BAND`` of the height) peeled off the top, or off the bottom. Each
    side is its own candidate: a band found on the other side may be the photo's own sky."""
    left, top, right, bottom = box
    region = luma[top:bottom, left:right]
    rows = int(MAX_BAND * region.shape[0])
    above, below = _band(region, rows), _band(region[::-1], rows)
    candidates = [(left, top + above, right, bottom)] if above else []
    return candidates + ([(left, top, right, bottom - below)] if below else [])


def _worth_cutting(box: Box, width: int, height: int) -> bool:
    left, top, right, bottom = box
    return max(top, height - bottom) >= MIN_TRIM * height or (
        max(left, width - right) >= MIN_TRIM * width
    )


def content_boxes(image: Image.Image) -> list[Box]:
    """Candidate ``(left, top, right, bottom)`` boxes of the picture inside a frame, best
    first: the frame of one colour peeled, then one more band peeled too. Empty when the image
    has no frame worth cutting (or is nearly all frame)."""
    luma = np.asarray(image if image.mode == "L" else image.convert("L"), dtype=np.int16)
    height, width = luma.shape
    boxes: list[Box] = []
    colour = _frame_colour(luma)
    if colour is None:
        return boxes
    frame = _peel_box(luma, colour)
    if frame is None:
        return boxes
    if not _worth_cutting(frame, width, height):
        return boxes  # no frame, so no window inside one either
    return [frame, *_bands(luma, frame)]


def trimmed_pictures(image: Image.Image) -> list[Image.Image]:
    """The picture cut out of its frame, one per candidate box (none without a frame)."""
    return [image.crop(box) for box in content_boxes(image)]
