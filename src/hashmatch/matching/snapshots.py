"""Snapshots of a replica's live state, so that a restart loads fast and replays only the
change-log tail: the indexes, the entry table and the cursor they reflect, under the data
directory (``snapshots/snapshot-<cursor>/``), written to a staging folder and renamed into
place, so a reader never sees half of one. The two newest are kept."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Final

from hashmatch.index import CodeIndex, ExactIndex, HammingIndex
from hashmatch.matching.entry_table import EntryTable
from hashmatch.matching.frames import VideoTable
from hashmatch.matching.policy import DEFAULT_BOUNDS, ThresholdBounds
from hashmatch.matching.state import MatchState
from hashmatch.signals import SignalType
from hashmatch.signals.registry import indexed_signals

log = logging.getLogger(__name__)

#: 3: listed videos (``videos.table``) and their frames in the PDQ index.
SNAPSHOT_VERSION: Final = 3
KEPT: Final = 2


def save(state: MatchState, cursor: int, directory: Path) -> Path:
    """Write ``state`` at ``cursor``; returns the snapshot folder."""
    folder = directory / f"snapshot-{cursor:012d}"
    if (folder / "manifest.json").is_file():
        return folder  # this cursor is saved already; the state cannot differ
    # Several workers may snapshot the same cursor at once: each stages its own copy.
    staging = directory / f".staging-{cursor:012d}-{os.getpid()}"
    staging.mkdir(parents=True, exist_ok=True)
    for signal, index in state.indexes.items():
        index.save(str(staging / f"{signal.name}.index"))
    state.entries.save(str(staging / "entries.table"))
    state.videos.save(str(staging / "videos.table"))
    manifest = {"version": SNAPSHOT_VERSION, "cursor": cursor}
    (staging / "manifest.json").write_text(json.dumps(manifest))
    try:
        staging.replace(folder)
    except OSError:  # another worker got there first with the same state
        _remove_tree(staging)
    for old in sorted(directory.glob("snapshot-*"))[:-KEPT]:
        _remove_tree(old)
    return folder


def load(
    directory: Path, bounds: ThresholdBounds = DEFAULT_BOUNDS
) -> tuple[MatchState, int] | None:
    """The newest readable snapshot's state (without its lists, which the caller loads) and
    cursor; ``None`` when there is none."""
    if not directory.is_dir():
        return None
    for folder in sorted(directory.glob("snapshot-*"), reverse=True):
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
            if manifest.get("version") != SNAPSHOT_VERSION:
                continue
            # Every registered signal type's index must be there: a snapshot taken before a
            # signal type was registered is passed over for a full load, never half used.
            indexes = {
                signal: _load_index(signal, folder / f"{signal.name}.index")
                for signal in indexed_signals()
            }
            entries = EntryTable.load(str(folder / "entries.table"))
            videos = VideoTable.load(str(folder / "videos.table"))
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable snapshot %s: %s", folder.name, exc)
            continue
        return MatchState(bounds, indexes, entries, videos), int(manifest["cursor"])
    return None


def _load_index(signal: SignalType, path: Path) -> CodeIndex:
    loader: type[HammingIndex] | type[ExactIndex] = (
        HammingIndex if signal.perceptual else ExactIndex
    )
    return loader.load(str(path))


def _remove_tree(folder: Path) -> None:
    for child in folder.iterdir():
        child.unlink(missing_ok=True)
    folder.rmdir()
