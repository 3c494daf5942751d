"""Reading hash sets back: the files ``hashmatch hash`` writes (and hand-made ones) -> rows.

Pure: bytes in from a binary stream, one :class:`HashRow` or :class:`RowError` out per
non-blank line, in order, never an exception for bad input. The stream is read in 64 KiB
chunks and no line is held beyond ``max_line_bytes``: a longer line (a 2 GB file without a
newline, say) is one :class:`RowError` and is skipped up to its newline.

Formats (:class:`~hashmatch.hashsets.write.Format`, detected from the first non-blank line unless
given):

* ``jsonl``: one object a line, ``{"algorithm": "pdq", "hash": "<hex>", "reference": "...",
  "labels": ["..."]}``; ``value`` is accepted for ``hash``. ``hashmatch hash`` error records
  (``{"path": ..., "error": {...}}``) become row errors.
* ``csv``: a header row, then one hash a row. Columns are matched case-insensitively: ``hash``
  (required), ``algorithm``, ``reference`` (or ``ref`` / ``id``), ``labels`` (separated by
  ``;`` or ``|``, or a JSON list); others (``path``, ``quality``, ...) are ignored. A non-empty
  ``error`` column is a file ``hashmatch hash`` failed on. Each line is parsed on its own, so
  quoted fields spanning lines are not supported; a header row repeated later (``cat a.csv
  b.csv``) is skipped.
* ``tx`` (python-threatexchange's convention): ``ALG HEX [REFERENCE...]``, ``ALG:HEX``, or a
  bare ``HEX`` when a default algorithm is given; ``#`` comments.
* ``vpdq`` (Meta's vPDQ text form, detected from a first line ``frame_number,quality,pdq_hex,
  timestamp``): the whole file is ONE video, one row, its reference given by the caller. A
  video is all or nothing: one bad line is one row error for the file, naming the line.

Videos (``vpdq``) are one entry each: its ``hash`` is the SHA-256 of its packed frames
(:func:`hashmatch.signals.vpdq.frames_digest`) and the frames travel beside it
(:attr:`HashRow.frames`). In JSON lines a video is ``{"algorithm": "vpdq", "frames": [Meta's
lines] or "one string of lines", "hash": optional digest hex, "reference": ..., "labels": [...]}``
(what ``hashmatch hash`` and ``lists export`` write), or python-threatexchange's form, whose
``hash`` is its JSON text of the frames. CSV and ``tx`` rows cannot carry frames: a ``vpdq``
row there is a row error.

Hashes are parsed by :meth:`hashmatch.hashing.Hash.from_hex`, so the error texts are the
project's own; the ``quality`` a hash set may carry is not imported.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Final

from hashmatch import fields, signals
from hashmatch.errors import HashFormatError, InvalidField
from hashmatch.hashsets.lines import BOM, split_lines
from hashmatch.hashsets.write import Format
from hashmatch.signals import VPDQ, Hash, IndexKind, SignalType, all_signals
from hashmatch.signals.vpdq import (
    MAX_FRAMES,
    FrameHash,
    frames_digest,
    pack_frames,
    parse_frames,
    parse_threatexchange,
)

#: The input formats are the output formats of ``hashmatch hash``.
InputFormat = Format

MAX_REFERENCE_CHARS: Final = fields.MAX_REFERENCE_CHARS
MAX_LABEL_CHARS: Final = fields.MAX_LABEL_CHARS
MAX_LABELS: Final = fields.MAX_LABELS
#: A video's frames are one JSON line: 14,400 frames (4 hours at one hash a second) are about
#: 1.3 MB. 16 MiB bounds what one line may hold (and the memory a reader takes) well above it.
DEFAULT_MAX_LINE_BYTES: Final = 16 << 20
#: Frames one video may carry, in any form (:data:`hashmatch.signals.vpdq.MAX_FRAMES`): it
#: bounds what reading Meta's text form (a whole file held as one row) may take.
MAX_VIDEO_FRAMES: Final = MAX_FRAMES
#: Meta's text form, one line a frame: ``frame_number,quality,pdq_hex,timestamp``.
_META_LINE: Final = re.compile(r"\s*\d+\s*,\s*\d+\s*,\s*[0-9a-fA-F]{64}\s*,\s*[-+0-9.eE]+\s*")
#: ``line N: ...`` as :func:`hashmatch.signals.vpdq.parse_frames` reports a bad line.
_PARSED_LINE: Final = re.compile(r"line (\d+): (.*)", re.DOTALL)

_LABEL_SEPARATORS: Final = re.compile(r"[;|]")
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_REFERENCE_COLUMNS: Final = ("reference", "ref", "id")


@dataclass(frozen=True, slots=True)
class HashRow:
    """One hash to import."""

    line: int  # 1-based line number in the input
    hash: Hash
    reference: str | None = None  # the source's own id for the entry
    labels: tuple[str, ...] = ()  # free-form tags
    #: A video's frames, packed (:func:`hashmatch.signals.vpdq.pack_frames`); ``hash`` is
    #: then their digest.
    frames: bytes | None = None


@dataclass(frozen=True, slots=True)
class RowError:
    """A line that holds no importable hash, and why."""

    line: int
    reason: str


class _Invalid(Exception):
    """This line is not a valid row; the message says why."""


def detect_format(first_line: bytes) -> InputFormat:
    """``{`` or ``[`` -> JSON lines; a CSV header with a ``hash`` column -> CSV; a line of
    Meta's vPDQ text form -> ``vpdq``; else ``tx``."""
    text = first_line.removeprefix(BOM).decode("utf-8", errors="replace")
    return _detect(text)


def read_hash_set(
    stream: BinaryIO,
    *,
    input_format: InputFormat | None = None,
    default_algorithm: SignalType | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    reference: str | None = None,
) -> Iterator[HashRow | RowError]:
    """Every non-blank line of ``stream`` as a row or a row error, in order.

    ``default_algorithm`` stands in where a line names none (a CSV without an ``algorithm``
    column, a JSON object without the key, a bare ``tx`` hash). Lines that cannot be read
    (too long, not UTF-8) before the format is known are reported, and detection moves on to
    the next line; for CSV the header is the first readable non-blank line.

    Meta's vPDQ text form is one video, so one row (or one row error) for the whole stream;
    ``reference`` is that video's reference (other formats carry their own, per row).
    """
    fmt = input_format
    csv_header: _CsvHeader | _Invalid | None = None
    lines = split_lines(stream, max_line_bytes)
    for number, raw in lines:
        if raw is None:
            yield RowError(number, f"line longer than {max_line_bytes} bytes")
            continue
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield RowError(number, _not_utf8(raw, exc))
            continue
        if fmt is None:
            fmt = _detect(text)
        if fmt is Format.VPDQ:
            yield _video_text(number, text, lines, reference, max_line_bytes)
            return
        try:
            if fmt is Format.CSV:
                if csv_header is None:
                    try:
                        csv_header = _CsvHeader.parse(text, number)
                    except _Invalid as exc:
                        csv_header = exc
                        raise
                    continue
                if isinstance(csv_header, _Invalid):
                    raise _Invalid(f"no usable CSV header ({csv_header})")
                row = csv_header.row(text, number, default_algorithm)
            elif fmt is Format.JSONL:
                row = _json_row(text, number, default_algorithm)
            else:
                row = _tx_row(text, number, default_algorithm)
        except _Invalid as exc:
            yield RowError(number, str(exc))
        except HashFormatError as exc:
            yield RowError(number, exc.message)
        else:
            if row is not None:
                yield row


def _not_utf8(raw: bytes, exc: UnicodeDecodeError) -> str:
    return f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"


# --- detection and shared field checks ------------------------------------------------------


def _detect(text: str) -> InputFormat:
    stripped = text.strip().removeprefix("\ufeff")
    if stripped.startswith(("{", "[")):
        return Format.JSONL
    if _META_LINE.fullmatch(stripped):
        return Format.VPDQ
    try:
        fields = _csv_fields(stripped)
    except _Invalid:
        return Format.TX
    return Format.CSV if "hash" in (f.strip().lower() for f in fields) else Format.TX


def _clip(text: str, limit: int = 40) -> str:
    clipped = text if len(text) <= limit else text[:limit] + "..."
    return fields.printable(clipped)


def _algorithm(name: str | None, default: SignalType | None) -> SignalType:
    if name is None or not name.strip():
        if default is None:
            raise _Invalid("missing algorithm (give an algorithm column/key or --algorithm)")
        return default
    # The error message quotes the name: clip a long one (clipped, it is no algorithm's name).
    return signals.get(_clip(name))


def _hash(algorithm: SignalType, text: str | None) -> Hash:
    if text is None or not text.strip():
        raise _Invalid("missing hash")
    return Hash.from_hex(algorithm, text)


def _reference(value: object) -> str | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, str | int)):
        raise _Invalid(f"reference must be a string, got {type(value).__name__}")
    try:
        return fields.reference(value)
    except InvalidField as exc:
        raise _Invalid(exc.message) from None


def _labels(values: Sequence[object]) -> tuple[str, ...]:
    for value in values:
        if not isinstance(value, str):
            raise _Invalid(f"labels must be strings, got {type(value).__name__}")
    try:
        return fields.labels(values)
    except InvalidField as exc:
        raise _Invalid(exc.message) from None


def entry_row(
    line: int,
    algorithm: str,
    value: str | None,
    reference: object = None,
    labels: Sequence[object] = (),
    frames: Sequence[str] | str | None = None,
) -> HashRow | RowError:
    """One entry given as fields (a JSON API body) as a row, by the same rules as a file's;
    the reason names the entry's position. A video (``vpdq``) comes with its ``frames``
    (Meta's lines), ``value`` being then its digest, optional; anything else needs ``value``."""
    try:
        signal = _algorithm(algorithm, None)
        if _is_video(signal):
            return _video_row(line, signal, frames, value, _reference(reference), _labels(labels))
        if frames is not None:
            raise _Invalid(f"frames are only for videos, not {signal.name}")
        return HashRow(line, _hash(signal, value), _reference(reference), _labels(labels))
    except _Invalid as exc:
        return RowError(line, f"entries[{line - 1}]: {exc}")
    except HashFormatError as exc:
        return RowError(line, f"entries[{line - 1}]: {exc.message}")


def _label_text(text: str) -> tuple[str, ...]:
    """``a;b|c`` or a JSON list ``["a", "b"]``."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            values = json.loads(stripped)
        except (ValueError, RecursionError) as exc:
            raise _Invalid(f"labels: invalid JSON list: {exc}") from None
        return _labels(values)  # valid JSON starting with "[" is a list
    return _labels(_LABEL_SEPARATORS.split(stripped))


def _withdrawn(when: str) -> _Invalid:
    """An exported tombstone: a withdrawn hash must never come back as a live one."""
    return _Invalid(f"entry was withdrawn ({_clip(when, 40)}); not imported")


def _failed(error: str, path: object) -> _Invalid:
    """A ``hashmatch hash`` error record: the file at ``path`` could not be hashed."""
    where = f" ({_clip(path, 200)})" if isinstance(path, str) and path else ""
    return _Invalid(f"file failed to hash: {_clip(error, 200)}{where}")


def _looks_like_json(fmt: InputFormat) -> _Invalid:
    return _Invalid(f"line looks like JSON, but this input is {fmt}")


# --- CSV ------------------------------------------------------------------------------------


def _csv_fields(text: str) -> list[str]:
    if '"' not in text:  # no quoting: the csv module would split exactly here
        return text.split(",")
    try:
        return next(csv.reader([text], strict=True))
    except csv.Error as exc:
        raise _Invalid(f"invalid CSV: {exc} (quoted fields cannot span lines)") from None


@dataclass(frozen=True, slots=True)
class _CsvHeader:
    names: tuple[str, ...]
    columns: dict[str, int]  # name -> index of its first occurrence

    @classmethod
    def parse(cls, text: str, number: int) -> _CsvHeader:
        names = tuple(field.strip().lower() for field in _csv_fields(text))
        columns: dict[str, int] = {}
        for index, name in enumerate(names):
            columns.setdefault(name, index)
        if "hash" not in columns:
            if text.lstrip().startswith("{"):
                raise _looks_like_json(Format.CSV)
            raise _Invalid(f"missing column 'hash' in the CSV header on line {number}")
        return cls(names, columns)

    def _get(self, fields: list[str], *names: str) -> str | None:
        for name in names:
            if name in self.columns:
                return fields[self.columns[name]]
        return None

    def row(self, text: str, number: int, default: SignalType | None) -> HashRow | None:
        if text.lstrip().startswith("{"):
            raise _looks_like_json(Format.CSV)
        fields = _csv_fields(text)
        if len(fields) != len(self.names):
            raise _Invalid(f"expected {len(self.names)} CSV fields, got {len(fields)}")
        hash_field = fields[self.columns["hash"]]
        if hash_field.strip().lower() == "hash" and (
            tuple(f.strip().lower() for f in fields) == self.names
        ):
            return None  # the header again, from concatenated files
        error = (self._get(fields, "error") or "").strip()
        if error:
            raise _failed(error, self._get(fields, "path"))
        withdrawn = (self._get(fields, "withdrawn_at") or "").strip()
        if withdrawn:
            raise _withdrawn(withdrawn)
        algorithm = _algorithm(self._get(fields, "algorithm"), default)
        if _is_video(algorithm):
            raise _no_frames_in(algorithm)
        labels = self._get(fields, "labels")
        return HashRow(
            line=number,
            hash=_hash(algorithm, self._get(fields, "hash")),
            reference=_reference(self._get(fields, *_REFERENCE_COLUMNS)),
            labels=_label_text(labels) if labels else (),
        )


# --- JSON lines -----------------------------------------------------------------------------


def _json_row(text: str, number: int, default: SignalType | None) -> HashRow:
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise _Invalid(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise _Invalid("invalid JSON: nested too deeply") from None
    if not isinstance(record, dict):
        raise _Invalid(f"expected a JSON object, got {_json_type(record)}")
    error = record.get("error")
    if error:
        if isinstance(error, dict):
            error = ": ".join(str(error[k]) for k in ("code", "message") if k in error)
        raise _failed(str(error), record.get("path"))
    if record.get("withdrawn_at"):
        raise _withdrawn(str(record["withdrawn_at"]))
    name = record.get("algorithm")
    if name is not None and not isinstance(name, str):
        raise _Invalid(f"algorithm must be a string, got {_json_type(name)}")
    value = record.get("hash", record.get("value"))
    if value is not None and not isinstance(value, str):
        raise _Invalid(f"hash must be a string, got {_json_type(value)}")
    reference = next((record[k] for k in _REFERENCE_COLUMNS if k in record), None)
    labels = record.get("labels")
    if labels is not None and not isinstance(labels, list):
        raise _Invalid(f"labels must be a list of strings, got {_json_type(labels)}")
    algorithm = _algorithm(name, default)
    if _is_video(algorithm):
        frames = record.get("frames")
        return _video_row(
            number, algorithm, frames, value, _reference(reference), _labels(labels or ())
        )
    if "frames" in record:
        raise _Invalid(f"frames are only for videos, not {algorithm.name}")
    return HashRow(
        line=number,
        hash=_hash(algorithm, value),
        reference=_reference(reference),
        labels=_labels(labels or ()),
    )


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


# --- tx lines -------------------------------------------------------------------------------


def _tx_row(text: str, number: int, default: SignalType | None) -> HashRow | None:
    stripped = text.strip()
    if stripped.startswith("#"):
        return None
    if stripped.startswith("{"):
        raise _looks_like_json(Format.TX)
    first, rest = _split_word(stripped)
    if "," in first:
        raise _Invalid("line looks like CSV, but this input is tx")
    name, colon, value = first.partition(":")
    if colon:  # ALG:HEX [REFERENCE...]
        return _tx_hash(number, _algorithm(name, None), value, rest)
    if first.lower() not in {signal.name for signal in all_signals()}:
        if default is not None and (not rest or set(first) <= _HEX):  # HEX [REFERENCE...]
            return _tx_hash(number, default, first, rest)
        if not rest or (len(first) >= 16 and set(first) <= _HEX):
            raise _Invalid("bare hash needs --algorithm (or write ALGORITHM HEX)")
    value, reference = _split_word(rest)  # ALG HEX [REFERENCE...]
    return _tx_hash(number, _algorithm(first, None), value, reference)


def _tx_hash(number: int, algorithm: SignalType, value: str, reference: str) -> HashRow:
    if _is_video(algorithm):
        raise _no_frames_in(algorithm)
    return HashRow(number, _hash(algorithm, value), _reference(reference))


def _split_word(text: str) -> tuple[str, str]:
    parts = text.split(maxsplit=1)
    if not parts:
        return "", ""
    return parts[0], (parts[1].strip() if len(parts) > 1 else "")


# --- videos ---------------------------------------------------------------------------------


def _is_video(signal: SignalType) -> bool:
    """A video's signal: one entry whose frames travel beside its digest."""
    return signal.index_kind is IndexKind.FRAMES


def _no_frames_in(signal: SignalType) -> _Invalid:
    """CSV and tx hold one hash a row: a video's frames do not fit, and a digest alone could
    never match anything."""
    return _Invalid(f"{signal.name} frame sets go in JSONL or Meta's text form")


def _video_row(
    line: int,
    signal: SignalType,
    frames: object,
    value: object,
    reference: str | None,
    labels: tuple[str, ...],
) -> HashRow:
    """A video from its frames (Meta's lines, as a list or one string), checked against the
    digest ``value`` when one is given; or from python-threatexchange's form, whose hash is
    the JSON text of its frames."""
    if frames is None:
        if not (isinstance(value, str) and value.lstrip().startswith(("[", "{"))):
            raise _Invalid(
                f"{signal.name} needs its frames: 'frames', Meta's "
                "'frame_number,quality,pdq_hex,timestamp' lines"
            )
        try:
            parsed = parse_threatexchange(value)
        except HashFormatError as exc:
            raise _Invalid(f"hash (python-threatexchange's vPDQ JSON): {exc.message}") from None
        value = None
    elif isinstance(frames, str):
        parsed = _parse_frames(frames, lambda n: f"frames line {n}")
    elif isinstance(frames, list):
        if len(frames) > MAX_VIDEO_FRAMES:
            raise _Invalid(f"{len(frames)} frames; a video carries at most {MAX_VIDEO_FRAMES}")
        for position, item in enumerate(frames):
            if not isinstance(item, str):
                raise _Invalid(f"frames[{position}] must be a string, got {_json_type(item)}")
            if not item.strip() or "\n" in item or "\r" in item:
                raise _Invalid(f"frames[{position}] must be one line of Meta's text form")
        # One line an item: the parser's line N is item N - 1.
        parsed = _parse_frames("\n".join(frames), lambda n: f"frames[{n - 1}]")
    else:
        raise _Invalid(f"frames must be a list of lines or one string, got {_json_type(frames)}")
    if not parsed:
        raise _Invalid("a video needs at least one frame")
    if len(parsed) > MAX_VIDEO_FRAMES:
        raise _Invalid(f"{len(parsed)} frames; a video carries at most {MAX_VIDEO_FRAMES}")
    digest = frames_digest(parsed)
    if value is not None:
        if not isinstance(value, str):
            raise _Invalid(f"hash must be a string, got {_json_type(value)}")
        if value.strip() and Hash.from_hex(signal, value).value != digest:
            raise _Invalid(
                f"hash is not the digest of the frames given (their digest is {digest.hex()})"
            )
    return HashRow(line, Hash(signal, digest), reference, labels, pack_frames(parsed))


def _parse_frames(text: str, where: Callable[[int], str]) -> tuple[FrameHash, ...]:
    """Meta's text form, checked by the project's one parser; a bad line is named by
    ``where`` (from its line number, as the caller numbers it)."""
    try:
        return parse_frames(text)
    except HashFormatError as exc:
        found = _PARSED_LINE.fullmatch(exc.message)
        if found is None:
            raise _Invalid(f"frames: {exc.message}") from None
        raise _Invalid(f"{where(int(found[1]))}: {found[2]}") from None


def _video_text(
    first: int,
    text: str,
    lines: Iterator[tuple[int, bytes | None]],
    reference: str | None,
    max_line_bytes: int,
) -> HashRow | RowError:
    """Meta's text form, the rest of the stream: one video, so one row, or one error naming
    the first bad line (half a video is not imported)."""

    def failed(number: int, reason: str) -> RowError:
        return RowError(number, f"line {number}: {reason}; the video is not imported")

    numbers = [first]
    texts = [text]
    for number, raw in lines:
        if raw is None:
            return failed(number, f"longer than {max_line_bytes} bytes")
        if not raw.strip():
            continue
        if len(texts) >= MAX_VIDEO_FRAMES:
            return failed(number, f"a video carries at most {MAX_VIDEO_FRAMES} frames")
        try:
            texts.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            return failed(number, _not_utf8(raw, exc))
        numbers.append(number)
    try:
        frames = parse_frames("\n".join(texts))
    except HashFormatError as exc:
        found = _PARSED_LINE.fullmatch(exc.message)
        if found is None:
            return RowError(first, f"{exc.message}; the video is not imported")
        position = int(found[1])
        number = numbers[position - 1] if 0 < position <= len(numbers) else first
        return failed(number, found[2])
    del texts
    try:
        checked = _reference(reference)
    except _Invalid as exc:
        return RowError(first, f"reference: {exc}")
    return HashRow(first, Hash(VPDQ, frames_digest(frames)), checked, (), pack_frames(frames))
