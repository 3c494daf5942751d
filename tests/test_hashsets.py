"""Reading hash sets: real ``hashmatch hash`` output, each format's rows, bad and huge input."""

from __future__ import annotations

import csv
import io
import json
import random
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from conftest import encode, natural_image, run_hashmatch
from hashmatch import signals
from hashmatch.hashsets.read import (
    DEFAULT_MAX_LINE_BYTES,
    HashRow,
    InputFormat,
    RowError,
    detect_format,
    read_hash_set,
)
from hashmatch.hashsets.write import Format
from hashmatch.signals import Hash, SignalType

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

PDQ = "f" * 16 + "0123456789abcdef" * 3
MD5 = "d41d8cd98f00b204e9800998ecf8427e"
Result = HashRow | RowError


def read(
    data: bytes | str,
    *,
    input_format: InputFormat | None = None,
    default_algorithm: SignalType | None = None,
    max_line_bytes: int = 1 << 20,
) -> list[Result]:
    raw = data.encode() if isinstance(data, str) else data
    return list(
        read_hash_set(
            io.BytesIO(raw),
            input_format=input_format,
            default_algorithm=default_algorithm,
            max_line_bytes=max_line_bytes,
        )
    )


def brief(results: list[Result]) -> list[tuple[object, ...]]:
    """Rows as ``(line, "alg:hex", reference, labels)``, errors as ``(line, reason)``."""
    return [
        (r.line, str(r.hash), r.reference, r.labels)
        if isinstance(r, HashRow)
        else (r.line, r.reason)
        for r in results
    ]


# --- round trip of real `hashmatch hash` output ---------------------------------------------


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    (root / "a photo, with comma.jpg").write_bytes(
        encode(natural_image(240, 180, seed=1), "JPEG", quality=90)
    )
    (root / "b.png").write_bytes(encode(natural_image(200, 200, seed=2), "PNG"))
    (root / "c.webp").write_bytes(encode(natural_image(180, 240, seed=3), "WEBP"))
    (root / "d-corrupt.jpg").write_bytes(encode(natural_image(240, 180, seed=4), "JPEG")[:600])
    return root


@pytest.mark.parametrize("output_format", ["csv", "jsonl", "tx"])
def test_round_trip_of_hashmatch_hash_output(image_dir: Path, output_format: str) -> None:
    options = ["-a", "pdq,phash,md5,sha256", "-j", "1", "-f", output_format]
    result = run_hashmatch("hash", image_dir, *options)
    assert result.returncode == 1, result.stderr  # the corrupt file failed
    text = result.stdout.decode()
    # What the CLI printed, read independently: (line, "alg:hex") or (line, "error").
    printed: list[tuple[int, str]] = []
    if output_format == "jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            record = json.loads(line)
            kind = "error" if "error" in record else f"{record['algorithm']}:{record['hash']}"
            printed.append((number, kind))
    elif output_format == "csv":
        for number, row in enumerate(csv.DictReader(io.StringIO(text)), 2):
            printed.append(
                (number, "error" if row["error"] else f"{row['algorithm']}:{row['hash']}")
            )
    else:
        for number, line in enumerate(text.splitlines(), 1):
            algorithm, value = line.split()
            printed.append((number, f"{algorithm}:{value}"))
    hashes = [kind for _, kind in printed if kind != "error"]
    assert len(hashes) == 12  # 3 images x 4 algorithms
    assert {h.split(":")[0] for h in hashes} == {"pdq", "phash", "md5", "sha256"}
    assert sum(kind == "error" for _, kind in printed) == (0 if output_format == "tx" else 1)

    results = list(read_hash_set(io.BytesIO(result.stdout)))
    got = [(r.line, str(r.hash) if isinstance(r, HashRow) else "error") for r in results]
    assert got == printed
    for r in results:
        if isinstance(r, RowError):
            assert r.reason.startswith("file failed to hash: ")
            assert "d-corrupt.jpg" in r.reason
        else:
            assert r.reference is None
            assert r.labels == ()


# --- detection -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_line", "expected"),
    [
        (b'{"algorithm": "pdq", "hash": "00"}\n', Format.JSONL),
        (b'  {"a": 1}', Format.JSONL),
        (b"[1, 2]", Format.JSONL),
        (b"path,algorithm,hash,quality,low_quality,bytes,error\n", Format.CSV),
        (b"\xef\xbb\xbfHash , Algorithm\r\n", Format.CSV),
        (b"hash", Format.CSV),
        (b'"id","HASH"', Format.CSV),
        (b"hashes,algorithm", Format.TX),
        (b"pdq " + PDQ.encode(), Format.TX),
        (b"pdq:" + PDQ.encode(), Format.TX),
        (b"# exported from ThreatExchange", Format.TX),
        (b"", Format.TX),
        (b"\xff\xfe\x00garbage", Format.TX),
    ],
)
def test_detect_format(first_line: bytes, expected: InputFormat) -> None:
    assert detect_format(first_line) is expected


def test_detection_uses_first_non_blank_readable_line() -> None:
    data = b"\n  \n\xff\xff\n" + f'{{"algorithm": "md5", "hash": "{MD5}"}}\n'.encode()
    assert brief(read(data)) == [
        (3, "not UTF-8 (byte 0xff at column 1)"),
        (4, f"md5:{MD5}", None, ()),
    ]


# --- CSV -------------------------------------------------------------------------------------


def test_csv_rows_and_errors_with_line_numbers() -> None:
    data = (
        " Path , ALGORITHM,Hash,quality,ref,Labels,error\n"  # 1
        f"a.jpg,pdq,{PDQ.upper()},90,case-7,cat;dog|cat,\n"  # 2
        "\n"  # 3: blank
        f'"b, c.jpg",md5,{MD5},,,"[""x"", ""y;z""]",\n'  # 4
        "d.jpg,,,,,,corrupt_media: image file is truncated\n"  # 5
        f"e.jpg,pdq,{PDQ[:-1]},,,,\n"  # 6
        f"f.jpg,pdq,{PDQ[:-1]}g,,,,\n"  # 7
        f"g.jpg,photodna,{PDQ},,,,\n"  # 8
        f"h.jpg,pdq,{PDQ}\n"  # 9
        f'i.jpg,pdq,"{PDQ},,,,\n'  # 10
        "j.jpg,pdq,,,,,\n"  # 11
        "path,algorithm,hash,quality,ref,labels,error\n"  # 12: header again, skipped
        f"k.jpg,MD5,{MD5},,,,\n"  # 13
    )
    results = brief(read(data))
    assert results[:3] == [
        (2, f"pdq:{PDQ}", "case-7", ("cat", "dog")),
        (4, f"md5:{MD5}", None, ("x", "y;z")),
        (5, "file failed to hash: corrupt_media: image file is truncated (d.jpg)"),
    ]
    assert results[3:7] == [
        (6, "pdq hash must be 64 hex digits, got 63"),
        (7, "pdq hash has non-hex characters: 'g'"),
        (8, "unknown algorithm 'photodna'; known: pdq, phash, md5, sha256, vpdq"),
        (9, "expected 7 CSV fields, got 3"),
    ]
    line, reason = results[7]
    assert line == 10
    assert str(reason).startswith("invalid CSV: unexpected end of data")
    assert results[8:] == [(11, "missing hash"), (13, f"md5:{MD5}", None, ())]


def test_csv_reference_aliases_and_column_order() -> None:
    data = f"id,hash,algorithm,extra\n7, {MD5} ,md5,x\n,{MD5},md5,\n"
    assert brief(read(data)) == [(2, f"md5:{MD5}", "7", ()), (3, f"md5:{MD5}", None, ())]


def test_csv_without_algorithm_column_needs_a_default() -> None:
    data = f"hash,reference\n{MD5},r1\n"
    assert brief(read(data)) == [
        (2, "missing algorithm (give an algorithm column/key or --algorithm)")
    ]
    assert brief(read(data, default_algorithm=signals.MD5)) == [(2, f"md5:{MD5}", "r1", ())]
    # An empty algorithm cell falls back to the default; a named one wins over it.
    data = f"algorithm,hash\n,{MD5}\npdq,{PDQ}\n"
    assert brief(read(data, default_algorithm=signals.MD5)) == [
        (2, f"md5:{MD5}", None, ()),
        (3, f"pdq:{PDQ}", None, ()),
    ]


def test_csv_header_without_hash_column_fails_every_row() -> None:
    data = f"path,algorithm,value\na.jpg,md5,{MD5}\n"
    assert brief(read(data, input_format=Format.CSV)) == [
        (1, "missing column 'hash' in the CSV header on line 1"),
        (2, "no usable CSV header (missing column 'hash' in the CSV header on line 1)"),
    ]


# --- JSON lines ------------------------------------------------------------------------------


def test_jsonl_rows_and_errors_with_line_numbers() -> None:
    lines = [
        {"algorithm": "pdq", "hash": PDQ, "quality": 100, "reference": "r", "labels": ["a"]},
        {"algorithm": "MD5", "value": MD5.upper(), "id": 42},
        {"path": "x.jpg", "error": {"code": "corrupt_media", "message": "truncated"}},
        [1, 2],
        {"algorithm": "pdq", "hash": 12},
        {"hash": MD5},
        {"algorithm": "pdq", "hash": PDQ, "labels": "a;b"},
        {"algorithm": "pdq", "hash": PDQ, "labels": ["a", 3]},
        {"algorithm": "sha256", "hash": PDQ},
    ]
    data = "\n".join(json.dumps(line) for line in lines) + "\n{not json\n"
    assert brief(read(data)) == [
        (1, f"pdq:{PDQ}", "r", ("a",)),
        (2, f"md5:{MD5}", "42", ()),
        (3, "file failed to hash: corrupt_media: truncated (x.jpg)"),
        (4, "expected a JSON object, got array"),
        (5, "hash must be a string, got number"),
        (6, "missing algorithm (give an algorithm column/key or --algorithm)"),
        (7, "labels must be a list of strings, got string"),
        (8, "labels must be strings, got int"),
        (9, f"sha256:{PDQ}", None, ()),
        (
            10,
            "invalid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
    ]
    assert brief(read(json.dumps({"hash": MD5}), default_algorithm=signals.MD5)) == [
        (1, f"md5:{MD5}", None, ())
    ]


def test_jsonl_deep_nesting_is_a_row_error() -> None:
    data = (
        b'{"a": 1}\n'
        + b"[" * 200_000
        + b"\n"
        + b'{"algorithm": "md5", "hash": "'
        + MD5.encode()
        + b'"}'
    )
    assert brief(read(data)) == [
        (1, "missing algorithm (give an algorithm column/key or --algorithm)"),
        (2, "invalid JSON: nested too deeply"),
        (3, f"md5:{MD5}", None, ()),
    ]


# --- tx --------------------------------------------------------------------------------------


def test_tx_rows_and_errors_with_line_numbers() -> None:
    data = (
        "# a comment, with a comma\n"  # 1
        f"pdq {PDQ.upper()}\n"  # 2
        f"pdq\t{PDQ}  case 7 / item 2 \n"  # 3
        f"md5:{MD5} ref\n"  # 4
        f"{MD5}\n"  # 5
        f"photodna {PDQ}\n"  # 6
        f"md5 {PDQ}\n"  # 7
        f"pdq {PDQ[:-1]}\n"  # 8
        "pdq\n"  # 9
        "   # indented comment\n"  # 10
    )
    assert brief(read(data)) == [
        (2, f"pdq:{PDQ}", None, ()),
        (3, f"pdq:{PDQ}", "case 7 / item 2", ()),
        (4, f"md5:{MD5}", "ref", ()),
        (5, "bare hash needs --algorithm (or write ALGORITHM HEX)"),
        (6, "unknown algorithm 'photodna'; known: pdq, phash, md5, sha256, vpdq"),
        (7, "md5 hash must be 32 hex digits, got 64"),
        (8, "pdq hash must be 64 hex digits, got 63"),
        (9, "missing hash"),
    ]


def test_tx_bare_hashes_with_default_algorithm() -> None:
    data = f"{MD5}\n{MD5} my ref\npdq {PDQ}\n{MD5[:-2]}zz\n"
    assert brief(read(data, default_algorithm=signals.MD5)) == [
        (1, f"md5:{MD5}", None, ()),
        (2, f"md5:{MD5}", "my ref", ()),
        (3, f"pdq:{PDQ}", None, ()),
        (4, "md5 hash has non-hex characters: 'z'"),
    ]


# --- hashes, references and labels ------------------------------------------------------------


def test_hashes_equal_the_projects_own_parse() -> None:
    (row,) = read(f"pdq {PDQ.upper()}")
    assert isinstance(row, HashRow)
    assert row.hash == Hash.from_hex(signals.PDQ, PDQ)
    assert row.hash.quality is None


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("a;b|c", ("a", "b", "c")),
        (" a ; ;a| ", ("a",)),
        ('["x", "y;z", "x"]', ("x", "y;z")),
        (";".join(f"l{i}" for i in range(32)), tuple(f"l{i}" for i in range(32))),
        (";".join(f"l{i}" for i in range(33)), "too many labels: 33 (at most 32)"),
        ("ok;" + "x" * 64, ("ok", "x" * 64)),
        ("ok;" + "x" * 65, f"label longer than 64 characters: '{'x' * 40}...'"),
        ("[1]", "labels must be strings, got int"),
        ('{"a": 1}', ('{"a": 1}',)),  # not a list: one free-form label
        ("[oops", "labels: invalid JSON list: Expecting value"),
    ],
)
def test_csv_labels(cell: str, expected: tuple[str, ...] | str) -> None:
    quoted = '"' + cell.replace('"', '""') + '"'
    (result,) = read(f"algorithm,hash,labels\nmd5,{MD5},{quoted}\n")
    if isinstance(expected, tuple):
        assert isinstance(result, HashRow)
        assert result.labels == expected
    else:
        assert isinstance(result, RowError)
        assert result.reason.startswith(expected) or expected in result.reason


def test_json_labels_too_many() -> None:
    data = json.dumps({"algorithm": "md5", "hash": MD5, "labels": [str(i) for i in range(40)]})
    assert brief(read(data)) == [(1, "labels: too many labels: 40 (at most 32)")]


def test_reference_length() -> None:
    ok, too_long = "r" * 256, "r" * 257
    assert brief(read(f"md5 {MD5} {ok}\nmd5 {MD5} {too_long}\n")) == [
        (1, f"md5:{MD5}", ok, ()),
        (2, "reference: at most 256 characters, got 257"),
    ]
    data = json.dumps({"algorithm": "md5", "hash": MD5, "reference": ["x"]})
    assert brief(read(data)) == [(1, "reference must be a string, got list")]


# --- mixed and broken input ------------------------------------------------------------------


def test_lines_in_another_format_are_row_errors() -> None:
    json_line = json.dumps({"algorithm": "md5", "hash": MD5})
    csv_data = f"algorithm,hash\n{json_line}\nmd5 {MD5}\nmd5,{MD5}\n"
    assert brief(read(csv_data)) == [
        (2, "line looks like JSON, but this input is csv"),
        (3, "expected 2 CSV fields, got 1"),
        (4, f"md5:{MD5}", None, ()),
    ]
    tx_data = f"md5 {MD5}\n{json_line}\nmd5,{MD5}\nmd5 {MD5}\n"
    assert brief(read(tx_data)) == [
        (1, f"md5:{MD5}", None, ()),
        (2, "line looks like JSON, but this input is tx"),
        (3, "line looks like CSV, but this input is tx"),
        (4, f"md5:{MD5}", None, ()),
    ]
    jsonl_data = f"{json_line}\nmd5 {MD5}\nalgorithm,hash\n{json_line}\n"
    results = brief(read(jsonl_data))
    assert [r[0] for r in results] == [1, 2, 3, 4]
    assert (
        results[1][1] == results[2][1] == "invalid JSON: Expecting value: line 1 column 1 (char 0)"
    )
    assert results[3] == (4, f"md5:{MD5}", None, ())


def test_invalid_utf8_line_is_a_row_error() -> None:
    data = b"md5 " + MD5.encode() + b"\nmd5 \xc3\x28\n\nmd5 " + MD5.encode() + b"\n"
    assert brief(read(data)) == [
        (1, f"md5:{MD5}", None, ()),
        (2, "not UTF-8 (byte 0xc3 at column 5)"),
        (4, f"md5:{MD5}", None, ()),
    ]


def _garbage() -> list[bytes]:
    png = encode(natural_image(64, 48, seed=9), "PNG")
    return [random.Random(20240601).randbytes(300_000), png]


@pytest.mark.parametrize("input_format", [None, Format.CSV, Format.JSONL, Format.TX])
@pytest.mark.parametrize("default", [None, signals.PDQ])
def test_binary_garbage_gives_only_row_errors(
    input_format: InputFormat | None, default: SignalType | None
) -> None:
    for data in _garbage():
        results = read(data, input_format=input_format, default_algorithm=default)
        assert results
        assert all(isinstance(r, RowError) for r in results)
        lines = [r.line for r in results]
        assert lines == sorted(set(lines))
        assert lines[-1] <= data.count(b"\n") + 1
        assert any(r.reason.startswith("not UTF-8") for r in results if isinstance(r, RowError))


def test_crlf_and_bom() -> None:
    data = b"\xef\xbb\xbfalgorithm,hash\r\nmd5," + MD5.encode() + b"\r\n\r\nmd5,abc\r\n"
    assert brief(read(data)) == [
        (2, f"md5:{MD5}", None, ()),
        (4, "md5 hash must be 32 hex digits, got 3"),
    ]
    data = b"\xef\xbb\xbf" + json.dumps({"algorithm": "md5", "hash": MD5}).encode() + b"\r\n"
    assert brief(read(data)) == [(1, f"md5:{MD5}", None, ())]
    # A BOM is only a BOM at the very start.
    assert brief(read(b"md5 " + MD5.encode() + b"\n\xef\xbb\xbfmd5 " + MD5.encode()))[1] == (
        2,
        "unknown algorithm '\\ufeffmd5'; known: pdq, phash, md5, sha256, vpdq",
    )


# --- long lines and chunking -----------------------------------------------------------------


class _Generated(io.RawIOBase):
    """``size`` bytes of ``x`` made up as they are read, then ``tail``."""

    def __init__(self, size: int, tail: bytes) -> None:
        self._left = size
        self._tail = tail

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._left:
            n = min(len(view), self._left)
            view[:n] = b"x" * n
            self._left -= n
            return n
        n = min(len(view), len(self._tail))
        view[:n] = self._tail[:n]
        self._tail = self._tail[n:]
        return n


class _Trickle(io.BytesIO):
    """A stream that returns at most ``step`` bytes a read, as pipes and sockets may."""

    def __init__(self, data: bytes, step: int) -> None:
        super().__init__(data)
        self._step = step

    def read(self, size: int | None = -1, /) -> bytes:
        return super().read(self._step if size is None or size < 0 else min(size, self._step))


@pytest.mark.parametrize(
    ("size", "max_line_bytes", "peak_bytes"),
    [
        (50_000_000, 1 << 20, 4_000_000),
        # The default cap (16 MiB, for videos' frames): held up to it, never beyond.
        (100_000_000, None, 40_000_000),
    ],
)
def test_huge_line_is_one_error_in_bounded_memory(
    size: int, max_line_bytes: int | None, peak_bytes: int
) -> None:
    stream = io.BufferedReader(_Generated(size, b"\nmd5 " + MD5.encode() + b"\n"))
    tracemalloc.start()
    try:
        if max_line_bytes is None:
            results = list(read_hash_set(stream))
        else:
            results = list(read_hash_set(stream, max_line_bytes=max_line_bytes))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    cap = max_line_bytes or DEFAULT_MAX_LINE_BYTES
    assert brief(results) == [
        (1, f"line longer than {cap} bytes"),
        (2, f"md5:{MD5}", None, ()),
    ]
    assert peak < peak_bytes, peak


def test_long_line_without_newline_at_the_end() -> None:
    data = f"md5 {MD5}\n".encode() + b"y" * 3000
    assert brief(read(data, max_line_bytes=1000)) == [
        (1, f"md5:{MD5}", None, ()),
        (2, "line longer than 1000 bytes"),
    ]


def test_max_line_bytes_boundary_excludes_line_ending() -> None:
    line = f"md5 {MD5} ".encode()
    exact = line + b"r" * (100 - len(line))
    assert len(exact) == 100
    results = brief(read(exact + b"\r\n" + exact + b"r\r\n" + exact, max_line_bytes=100))
    assert results == [
        (1, f"md5:{MD5}", "r" * (100 - len(line)), ()),
        (2, "line longer than 100 bytes"),
        (3, f"md5:{MD5}", "r" * (100 - len(line)), ()),
    ]


def test_chunk_boundaries_do_not_change_results() -> None:
    rng = random.Random(7)
    limit = 120
    parts: list[bytes] = []
    expected: list[tuple[object, ...]] = []
    number = 0
    for _ in range(300):
        number += 1
        ending = rng.choice([b"\n", b"\r\n"])
        if rng.random() < 0.1:
            parts.append(rng.choice([b"", b"  ", b"\t"]) + ending)
            continue
        reference = "r" * rng.randrange(0, 90)
        line = f"md5 {MD5} {reference}".rstrip().encode()
        parts.append(line + ending)
        if len(line) > limit:
            expected.append((number, f"line longer than {limit} bytes"))
        else:
            expected.append((number, f"md5:{MD5}", reference or None, ()))
    data = b"\xef\xbb\xbf" + b"".join(parts)
    for step in (1, 2, 3, 7, 64, 1 << 16):
        results = read_hash_set(_Trickle(data, step), max_line_bytes=limit)
        assert brief(list(results)) == expected, step


def test_text_stream_is_refused() -> None:
    with pytest.raises(TypeError, match="binary stream"):
        list(read_hash_set(io.StringIO("md5 x")))  # type: ignore[arg-type]
