"""Videos in hash sets: vPDQ rows in JSON lines, Meta's text form, what CSV and tx refuse, the
API's entries, and what the writers put out (read back unchanged)."""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import DATA, random_hexes
from hashmatch import signals
from hashmatch.hashsets import read as read_module
from hashmatch.hashsets.read import (
    DEFAULT_MAX_LINE_BYTES,
    HashRow,
    InputFormat,
    RowError,
    detect_format,
    entry_row,
    read_hash_set,
)
from hashmatch.hashsets.write import (
    ExportWriter,
    Format,
    HashRecord,
    RecordWriter,
    VideoRecord,
    frame_lines,
)
from hashmatch.signals import Hash
from hashmatch.signals.vpdq import (
    FrameHash,
    format_frames,
    frames_digest,
    pack_frames,
    parse_frames,
    unpack_frames,
)

VPDQ = signals.get("vpdq")
MD5 = "d41d8cd98f00b204e9800998ecf8427e"
Result = HashRow | RowError


def frames(count: int = 5, seed: int = 0, step: float = 1.0) -> tuple[FrameHash, ...]:
    codes = random_hexes(count, seed=seed)
    return tuple(
        FrameHash(
            number=i * 30,
            timestamp=round(i * step, 3),
            pdq=bytes.fromhex(code),
            quality=100 - i % 60,
        )
        for i, code in enumerate(codes)
    )


def read(data: bytes | str, **options: object) -> list[Result]:
    raw = data.encode() if isinstance(data, str) else data
    return list(read_hash_set(io.BytesIO(raw), **options))  # type: ignore[arg-type]


def one_row(results: list[Result]) -> HashRow:
    assert len(results) == 1, results
    (row,) = results
    assert isinstance(row, HashRow), row
    return row


def one_error(results: list[Result]) -> RowError:
    assert len(results) == 1, results
    (error,) = results
    assert isinstance(error, RowError), error
    return error


def meta_text(name: str) -> Path:
    """One of Meta's expected vPDQ files (the project's copy of its conformance data)."""
    path = DATA / "vpdq-conformance" / "expected" / name
    assert path.is_file(), f"vPDQ conformance data missing at {path}"
    return path


# --- JSON lines ------------------------------------------------------------------------------


def test_jsonl_video_from_lines_or_one_string() -> None:
    video = frames(6)
    lines = frame_lines(video)
    as_list = {"algorithm": "vpdq", "frames": lines, "reference": "v-1", "labels": ["a", "b"]}
    as_text = {**as_list, "frames": "\n".join(lines) + "\n"}
    rows = read(json.dumps(as_list) + "\n" + json.dumps(as_text) + "\n")
    assert [type(r) for r in rows] == [HashRow, HashRow]
    for row in rows:
        assert isinstance(row, HashRow)
        assert row.hash == Hash(VPDQ, frames_digest(video))
        assert (row.reference, row.labels) == ("v-1", ("a", "b"))
        assert row.frames is not None
        assert unpack_frames(row.frames) == parse_frames(format_frames(video))


def test_jsonl_video_digest_is_checked() -> None:
    video = frames(4)
    digest = frames_digest(video).hex()
    record = {"algorithm": "vpdq", "frames": frame_lines(video)}
    good = one_row(read(json.dumps({**record, "hash": digest.upper()})))
    assert good.hash.hex == digest
    wrong = one_error(read(json.dumps({**record, "hash": "0" * 64})))
    assert "not the digest of the frames" in wrong.reason and digest in wrong.reason
    short = one_error(read(json.dumps({**record, "hash": "abc"})))
    assert short.reason == "vpdq hash must be 64 hex digits, got 3"


@pytest.mark.parametrize(
    ("frames_value", "reason"),
    [
        (None, "vpdq needs its frames"),
        ([], "a video needs at least one frame"),
        ("", "a video needs at least one frame"),
        (12, "frames must be a list of lines or one string, got number"),
        ({"0": "x"}, "frames must be a list of lines or one string, got object"),
        (["0,100," + "a" * 64 + ",0.000", 7], "frames[1] must be a string, got number"),
        (["0,100," + "a" * 64 + ",0.000", ""], "frames[1] must be one line"),
        (["0,100," + "a" * 64 + ",0.000\n1,100," + "a" * 64 + ",1.000"], "frames[0] must be"),
    ],
)
def test_jsonl_video_without_usable_frames(frames_value: object, reason: str) -> None:
    record: dict[str, object] = {"algorithm": "vpdq", "reference": "x"}
    if frames_value is not None:
        record["frames"] = frames_value
    error = one_error(read(json.dumps(record) + "\n"))
    assert error.line == 1
    assert reason in error.reason, error.reason


def test_jsonl_bad_frame_line_is_named() -> None:
    lines = frame_lines(frames(5))
    lines[3] = "90,100,not-hex,3.000"
    listed = one_error(read(json.dumps({"algorithm": "vpdq", "frames": lines})))
    assert listed.reason.startswith("frames[3]: "), listed.reason
    text = one_error(read(json.dumps({"algorithm": "vpdq", "frames": "\n".join(lines)})))
    assert text.reason.startswith("frames line 4: "), text.reason


def test_frames_are_only_for_videos() -> None:
    record = {"algorithm": "md5", "hash": MD5, "frames": frame_lines(frames(2))}
    assert one_error(read(json.dumps(record))).reason == "frames are only for videos, not md5"


def test_threatexchange_form_is_read() -> None:
    """python-threatexchange's vPDQ signal: ``hash`` is the JSON text of the frames."""
    video = frames(5)
    # ``vpdq_util.vpdq_to_json``: "pdq_hex,quality,timestamp" strings, times to 3 digits.
    text = json.dumps([f"{f.hex},{f.quality},{f.timestamp:.3}" for f in video])
    row = one_row(read(json.dumps({"algorithm": "vpdq", "hash": text, "reference": "te"})))
    assert row.frames is not None and row.reference == "te"
    parsed = unpack_frames(row.frames)
    assert [(f.number, f.pdq, f.quality, f.timestamp) for f in parsed] == [
        (position, f.pdq, f.quality, f.timestamp) for position, f in enumerate(video)
    ]
    assert row.hash.value == frames_digest(parsed)
    bad = one_error(read(json.dumps({"algorithm": "vpdq", "hash": "[{}]"})))
    assert bad.reason.startswith("hash (python-threatexchange's vPDQ JSON): "), bad.reason


def test_csv_and_tx_refuse_videos() -> None:
    digest = frames_digest(frames(3)).hex()
    expected = "vpdq frame sets go in JSONL or Meta's text form"
    csv_rows = read(f"algorithm,hash\nvpdq,{digest}\nmd5,{MD5}\n")
    assert [(r.line, getattr(r, "reason", None)) for r in csv_rows] == [(2, expected), (3, None)]
    tx_rows = read(f"md5 {MD5}\nvpdq {digest} ref\nvpdq:{digest}\n")
    assert [getattr(r, "reason", None) for r in tx_rows] == [None, expected, expected]
    bare = read(f"{digest}\n", default_algorithm=VPDQ)
    assert one_error(bare).reason == expected


def test_a_four_hour_video_fits_one_line() -> None:
    """14,400 frames (4 hours at one a second) are about 1.3 MB: within the default cap."""
    video = frames(14_400, seed=3)
    line = json.dumps({"algorithm": "vpdq", "frames": frame_lines(video)})
    assert 1_000_000 < len(line) < DEFAULT_MAX_LINE_BYTES
    first, second = read(line + "\n" + line)  # twice: the same video, two rows
    assert isinstance(first, HashRow) and second == HashRow(2, first.hash, frames=first.frames)
    assert first.frames == pack_frames(parse_frames(format_frames(video)))


def test_too_many_frames_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read_module, "MAX_VIDEO_FRAMES", 10)
    lines = frame_lines(frames(11))
    error = one_error(read(json.dumps({"algorithm": "vpdq", "frames": lines})))
    assert "at most 10" in error.reason
    text_error = one_error(read("\n".join(lines)))
    assert (text_error.line, "at most 10 frames" in text_error.reason) == (11, True)


# --- Meta's text form ------------------------------------------------------------------------


def test_meta_text_is_detected() -> None:
    line = b"0,100," + b"ab" * 32 + b",0.000"
    assert detect_format(line) is Format.VPDQ
    assert detect_format(b"\xef\xbb\xbf" + line + b"\r\n") is Format.VPDQ
    assert detect_format(b"12, 87, " + b"AB" * 32 + b", 1.5") is Format.VPDQ
    assert detect_format(b"0,100," + b"ab" * 31 + b",0.000") is Format.TX
    assert detect_format(b"path,algorithm,hash") is Format.CSV


def test_meta_text_file_is_one_video(tmp_path: Path) -> None:
    path = meta_text("doorknob-hd-no-bar.txt")
    text = path.read_text()
    expected = parse_frames(text)
    with path.open("rb") as stream:
        rows = list(read_hash_set(stream, reference="doorknob"))
    row = one_row(rows)
    assert (row.line, row.reference, row.labels) == (1, "doorknob", ())
    assert row.hash == Hash(VPDQ, frames_digest(expected))
    assert row.frames is not None and unpack_frames(row.frames) == expected
    assert len(expected) == len(text.splitlines())
    # A BOM, CRLF, blank lines and no reference change nothing but the reference.
    messy = "\ufeff" + "\r\n\r\n".join(text.splitlines()) + "\r\n\r\n"
    again = one_row(read(messy.encode(), input_format=InputFormat.VPDQ))
    assert (again.hash, again.frames, again.reference) == (row.hash, row.frames, None)


def test_meta_text_bad_line_rejects_the_whole_video() -> None:
    lines = frame_lines(frames(8))
    broken = [*lines[:5], "", "150,100,zz,5.000", *lines[6:]]
    error = one_error(read("\n".join(broken) + "\n", reference="clip"))
    assert error.line == 7
    assert error.reason.startswith("line 7: ") and error.reason.endswith(
        "; the video is not imported"
    )
    not_utf8 = "\n".join(lines[:3]).encode() + b"\n1,2,\xff\xfe\n" + lines[4].encode()
    error = one_error(read(not_utf8))
    assert (error.line, "not UTF-8" in error.reason) == (4, True)
    long_line = "\n".join(lines[:2]) + "\n" + "9" * 300 + "\n"
    error = one_error(read(long_line, max_line_bytes=200))
    assert (error.line, "longer than 200 bytes" in error.reason) == (3, True)


def test_meta_text_reference_is_checked() -> None:
    error = one_error(read("\n".join(frame_lines(frames(2))), reference="x" * 5000))
    assert error.reason.startswith("reference: ")


# --- the JSON API's entries ------------------------------------------------------------------


def test_entry_rows() -> None:
    video = frames(3)
    lines = frame_lines(video)
    row = entry_row(1, "vpdq", None, "ref", ["l"], frames=lines)
    assert isinstance(row, HashRow) and row.frames == pack_frames(parse_frames("\n".join(lines)))
    assert row.hash.value == frames_digest(video)
    same = entry_row(2, "vpdq", frames_digest(video).hex(), frames="\n".join(lines))
    assert isinstance(same, HashRow) and same.frames == row.frames
    assert entry_row(3, "md5", MD5) == HashRow(3, Hash.from_hex("md5", MD5))
    errors = [
        entry_row(4, "md5", None),
        entry_row(5, "pdq", None, frames=lines),
        entry_row(6, "md5", MD5, frames=lines),
        entry_row(7, "vpdq", frames_digest(video).hex()),
        entry_row(8, "vpdq", "0" * 64, frames=lines),
        entry_row(9, "vpdq", None, frames=[*lines[:1], "bad"]),
    ]
    reasons = [e.reason if isinstance(e, RowError) else e for e in errors]
    assert reasons[0] == "entries[3]: missing hash"
    assert reasons[1] == "entries[4]: frames are only for videos, not pdq"
    assert reasons[2] == "entries[5]: frames are only for videos, not md5"
    assert str(reasons[3]).startswith("entries[6]: vpdq needs its frames")
    assert str(reasons[4]).startswith("entries[7]: hash is not the digest of the frames")
    assert str(reasons[5]).startswith("entries[8]: frames[1]: ")


# --- writing ---------------------------------------------------------------------------------


def _video_record(video: tuple[FrameHash, ...], path: str = "clips/a.mp4") -> VideoRecord:
    return VideoRecord(path, Hash(VPDQ, frames_digest(video)), video, 12345, 10.0, 4.5)


def test_hash_output_reads_back_as_it_is() -> None:
    video = frames(7)
    md5 = Hash.from_hex("md5", MD5)
    buffer = io.StringIO()
    writer = RecordWriter(buffer, Format.JSONL)
    writer.write(_video_record(video))
    writer.write(HashRecord("clips/a.mp4", md5, 12345))
    first = json.loads(buffer.getvalue().splitlines()[0])
    assert first == {
        "path": "clips/a.mp4",
        "algorithm": "vpdq",
        "hash": frames_digest(video).hex(),
        "frames": format_frames(video).splitlines(),
        "fps": 10.0,
        "duration": 4.5,
        "bytes": 12345,
    }
    rows = read(buffer.getvalue())
    assert [type(r) for r in rows] == [HashRow, HashRow]
    video_row = rows[0]
    assert isinstance(video_row, HashRow) and video_row.frames is not None
    assert unpack_frames(video_row.frames) == parse_frames(format_frames(video))


@pytest.mark.parametrize("output_format", [Format.CSV, Format.TX])
def test_csv_and_tx_skip_videos_and_count_them(output_format: Format) -> None:
    buffer = io.StringIO()
    writer = RecordWriter(buffer, output_format)
    writer.write(_video_record(frames(3)))
    writer.write(HashRecord("clips/a.mp4", Hash.from_hex("md5", MD5), 12345))
    assert writer.skipped_videos == 1
    assert "vpdq" not in buffer.getvalue()
    assert [type(r) for r in read(buffer.getvalue())] == [HashRow]


def test_vpdq_format_is_metas_text() -> None:
    video = frames(4)
    buffer = io.StringIO()
    writer = RecordWriter(buffer, Format.VPDQ)
    writer.write(HashRecord("clips/a.mp4", Hash.from_hex("md5", MD5), 12345))  # not written
    writer.write(_video_record(video))
    assert buffer.getvalue() == format_frames(video)
    row = one_row(read(buffer.getvalue(), reference="a"))
    assert row.hash.value == frames_digest(video) and row.reference == "a"


@dataclass(frozen=True)
class _Entry:
    hash: Hash
    reference: str | None
    labels: tuple[str, ...]
    added_at: dt.datetime
    withdrawn_at: dt.datetime | None = None
    frames: bytes | None = None


def test_export_carries_frames_in_jsonl_only() -> None:
    video = parse_frames(format_frames(frames(5)))
    at = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    entries = [
        _Entry(Hash(VPDQ, frames_digest(video)), "v", ("x",), at, None, pack_frames(video)),
        _Entry(Hash.from_hex("md5", MD5), "m", (), at),
    ]
    for output_format, rows, skipped in ((Format.JSONL, 2, 0), (Format.CSV, 1, 1)):
        buffer = io.StringIO()
        writer = ExportWriter(buffer, output_format)
        for entry in entries:
            writer.write(entry)
        assert writer.skipped_videos == skipped
        read_back = read(buffer.getvalue())
        assert all(isinstance(r, HashRow) for r in read_back) and len(read_back) == rows
    assert isinstance(read_back[0], HashRow)
    jsonl = io.StringIO()
    ExportWriter(jsonl, Format.JSONL).write(entries[0])
    (row,) = read(jsonl.getvalue())
    assert isinstance(row, HashRow)
    assert (row.hash, row.reference, row.labels, row.frames) == (
        entries[0].hash,
        "v",
        ("x",),
        entries[0].frames,
    )
