"""Hash-set files: the records ``hashmatch hash`` writes, in JSON lines, CSV and ``tx`` lines,
and a video's frames in Meta's vPDQ text form.

Pure: records in, text out. The same shapes are what list imports read back, so an agency's
pipeline is ``hashmatch hash DIR --format csv | hashmatch lists import NAME -``.

A video is one record: in JSON lines ``{"path": ..., "algorithm": "vpdq", "hash": "<SHA-256 of
its packed frames>", "frames": ["frame_number,quality,pdq_hex,timestamp", ...], "fps": ...,
"duration": ..., "bytes": ...}``, which list imports read as they are. The ``vpdq`` format is
Meta's own text form of one video's frames (what Meta's tools write and read). CSV and ``tx``
hold one hash a row and cannot carry frames: a writer skips videos' frame sets there and counts
them (:attr:`_Writer.skipped_videos`), for the caller to say so; its digests still go out.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol, TextIO

from hashmatch.errors import HashmatchError
from hashmatch.signals import Hash
from hashmatch.signals.vpdq import FrameHash, format_frames, unpack_frames


class Format(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    TX = "tx"
    #: Meta's vPDQ text form: one video's frames, one ``frame_number,quality,pdq_hex,timestamp``
    #: line each.
    VPDQ = "vpdq"


CSV_COLUMNS: Final = ("path", "algorithm", "hash", "quality", "low_quality", "bytes", "error")


@dataclass(frozen=True, slots=True)
class HashRecord:
    """One hash of one file."""

    path: str
    hash: Hash
    size: int

    def as_dict(self) -> dict[str, object]:
        record: dict[str, object] = {
            "path": self.path,
            "algorithm": self.hash.algorithm.name,
            "hash": self.hash.hex,
            "quality": self.hash.quality,
            "bytes": self.size,
        }
        if self.hash.quality is not None:  # signal types with a quality rule (PDQ)
            record["low_quality"] = self.hash.low_quality
        return record


@dataclass(frozen=True, slots=True)
class VideoRecord:
    """A video's vPDQ hash: its frames, and their digest as the one hash of its entry."""

    path: str
    hash: Hash  # the frames' digest (:func:`hashmatch.signals.vpdq.frames_digest`)
    frames: tuple[FrameHash, ...]
    size: int
    fps: float | None = None
    duration: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "algorithm": self.hash.algorithm.name,
            "hash": self.hash.hex,
            "frames": frame_lines(self.frames),
            "fps": self.fps,
            "duration": self.duration,
            "bytes": self.size,
        }


def frame_lines(frames: Iterable[FrameHash]) -> list[str]:
    """Meta's text form of frames, a line each (how JSON lines carry a video)."""
    return format_frames(tuple(frames)).splitlines()


@dataclass(frozen=True, slots=True)
class ErrorRecord:
    """A file that could not be hashed, and why."""

    path: str
    error: HashmatchError

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "error": self.error.as_dict()}


Record = HashRecord | VideoRecord | ErrorRecord


class _Writer:
    """One format on a text stream, the CSV header first."""

    columns: tuple[str, ...] = ()

    def __init__(self, stream: TextIO, output_format: Format) -> None:
        self._stream = stream
        self._format = output_format
        #: Videos whose frames this format could not carry, and so were left out.
        self.skipped_videos = 0
        self._csv: csv.DictWriter[str] | None = None
        if output_format is Format.CSV:
            self._csv = csv.DictWriter(stream, fieldnames=self.columns, lineterminator="\n")
            self._csv.writeheader()

    def _emit(self, record: dict[str, object], csv_row: dict[str, object], tx: str | None) -> None:
        if self._format is Format.JSONL:
            self._stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        elif self._format is Format.CSV:
            assert self._csv is not None
            self._csv.writerow(csv_row)
        elif self._format is Format.TX and tx is not None:
            self._stream.write(tx + "\n")

    def _frames(self, frames: tuple[FrameHash, ...], record: dict[str, object]) -> None:
        """A video: its record in JSON lines, its frames alone in Meta's form, and skipped
        (counted) in CSV and ``tx``."""
        if self._format is Format.JSONL:
            self._stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        elif self._format is Format.VPDQ:
            self._stream.write(format_frames(frames))  # a line a frame, each ended
        else:
            self.skipped_videos += 1


class RecordWriter(_Writer):
    """Writes hashing results to a text stream in one format.

    In the ``vpdq`` format only videos' frames are written (it holds one video: the caller
    gives each video a stream of its own); other records are dropped there.
    """

    columns = CSV_COLUMNS

    def write(self, record: Record) -> None:
        if isinstance(record, VideoRecord):
            self._frames(record.frames, record.as_dict())
            return
        if self._format is Format.VPDQ:
            return
        # tx lines carry hashes only; failures go to stderr and the exit status.
        tx = None
        if isinstance(record, HashRecord):
            tx = f"{record.hash.algorithm.name} {record.hash.hex}"
        self._emit(record.as_dict(), _csv_row(record), tx)

    def write_all(self, records: Iterable[Record]) -> None:
        for record in records:
            self.write(record)


def _csv_row(record: Record) -> dict[str, object]:
    if isinstance(record, ErrorRecord):
        return {"path": record.path, "error": f"{record.error.code}: {record.error.message}"}
    row = record.as_dict()
    row["quality"] = "" if record.hash.quality is None else record.hash.quality
    row["low_quality"] = "true" if row.get("low_quality") else ""
    return row


def render(records: Iterable[Record], output_format: Format) -> str:
    """All records as one string, for tests and small outputs."""
    buffer = io.StringIO()
    RecordWriter(buffer, output_format).write_all(records)
    return buffer.getvalue()


EXPORT_CSV_COLUMNS: Final = ("algorithm", "hash", "reference", "labels", "added_at", "withdrawn_at")


class Exported(Protocol):
    """One list entry as exported (the store's :class:`~hashmatch.store.EntryRow` is one)."""

    @property
    def hash(self) -> Hash: ...
    @property
    def reference(self) -> str | None: ...
    @property
    def labels(self) -> tuple[str, ...]: ...
    @property
    def added_at(self) -> dt.datetime: ...
    @property
    def withdrawn_at(self) -> dt.datetime | None: ...
    @property
    def frames(self) -> bytes | None: ...


class ExportWriter(_Writer):
    """List entries out, in a form ``hashmatch lists import`` reads back unchanged.

    A video entry goes out whole in JSON lines (its frames as Meta's lines, beside its
    digest); CSV and ``tx`` cannot carry its frames and skip it (:attr:`skipped_videos`).
    """

    columns = EXPORT_CSV_COLUMNS

    def write(self, row: Exported) -> None:
        withdrawn_at = row.withdrawn_at.isoformat() if row.withdrawn_at else None
        record: dict[str, object] = {
            "algorithm": row.hash.algorithm.name,
            "hash": row.hash.hex,
            "reference": row.reference,
            "labels": list(row.labels),
            "added_at": row.added_at.isoformat(),
            "withdrawn_at": withdrawn_at,
        }
        if row.frames is not None:
            frames = unpack_frames(row.frames)
            self._frames(frames, {**record, "frames": frame_lines(frames)})
            return
        csv_row = {
            **record,
            "reference": row.reference or "",
            "labels": ";".join(row.labels),
            "withdrawn_at": withdrawn_at or "",
        }
        reference = f" {row.reference}" if row.reference else ""
        self._emit(record, csv_row, f"{row.hash.algorithm.name} {row.hash.hex}{reference}")
