"""Hostile input against a real ``hashmatch serve`` process on loopback, on SQLite and PostgreSQL.

Every case in :data:`CASES` must get a clean answer: its expected status (a 4xx for everything
hostile, never a 5xx and never a dropped connection), the ``{"error": {"code", "message"}}``
envelope on every 4xx, and nothing half-written. The dedicated tests at the end stream 400 MB
bodies at the server (measuring its RSS), then check what the whole suite left behind: the
baseline list unchanged, no stray lists, no 5xx, the server's peak RSS, and a log without
tracebacks or any of the secrets the suite sent.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from PIL import Image

from conftest import encode, natural_image, random_hexes
from dbs import BACKENDS, database
from hashmatch.hashsets.read import HashRow, RowError
from hashmatch.signals import MD5, PDQ, Hash
from hashmatch.store import Role, Store
from test_e2e import free_port

MB: Final = 1 << 20
#: The server's upload cap for images (HASHMATCH_MAX_UPLOAD_BYTES), lowered from 50 MB so that
#: a chunked image over it costs the suite 9 MB, not 51 MB.
UPLOAD_CAP: Final = 8_000_000
#: Caps the routes declare (``x-max-body-bytes``) or read under.
DEFAULT_BODY_CAP: Final = 64 * 1024
HASHES_BODY_CAP: Final = 4 * MB
JSON_ENTRIES_CAP: Final = 16 * MB
WITHDRAWAL_CAP: Final = 16 * MB

HUGE: Final = 100_000  # characters of every over-long text
LONG_TEXT: Final = "x" * HUGE

#: Secrets the suite sends, which the server's log must never contain.
SECRET_REASON: Final = "hostile-withdrawal-reason-d41f9c"
SECRET_REFERENCE: Final = "hostile-reference-7a2e58"
SECRET_HEX: Final = random_hexes(1, seed=880_001)[0]

#: Hashes of the lists the suite creates before it starts; none of the hostile cases may
#: change them.
BASE_HEXES: Final = random_hexes(4, seed=880_002)
BASE_MD5: Final = random_hexes(1, seed=880_003, nbytes=16)[0]
#: Hashes the hostile cases try to add; none may land (the tx case's go to ``scratch``).
NEW_HEXES: Final = random_hexes(24, seed=880_004)
TX_HEXES: Final = random_hexes(2, seed=880_005)
CUT_HEXES: Final = random_hexes(2, seed=880_006)

#: The lists the suite creates on purpose, by organisation.
ALPHA_LISTS: Final = frozenset({"base", "scratch", "cut", "echo", "beta-offer"})
BETA_LISTS: Final = frozenset({"beta-private", "beta-offer"})
BASELINE: Final = frozenset(
    {("pdq", value, f"base-{n}") for n, value in enumerate(BASE_HEXES, 1)}
    | {("md5", BASE_MD5, "base-md5")}
)

Reply = Callable[["Server", httpx.Response], None]


# --- the server ---------------------------------------------------------------------------------


def _status_kb(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {name} in /proc/{pid}/status")


@dataclass
class Server:
    """One ``hashmatch serve`` process (one worker) and what the suite saw of it."""

    backend: str
    base: str
    process: subprocess.Popen[bytes]
    log: Path
    keys: dict[str, str]
    client: httpx.Client
    statuses: Counter[str] = field(default_factory=Counter)

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_kb(self) -> int:
        return _status_kb(self.pid, "VmRSS")

    def peak_rss_kb(self) -> int:
        return _status_kb(self.pid, "VmHWM")

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[key]}"}

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str | bytes] | None = None,
        content: bytes | Iterator[bytes] | None = None,
    ) -> httpx.Response:
        """The response, counted in :attr:`statuses`; a dropped connection fails the test."""
        raw = [
            (name.encode(), value if isinstance(value, bytes) else value.encode("latin-1"))
            for name, value in (headers or {}).items()
        ]
        try:
            response = self.client.request(method, path, headers=raw, content=content)
        except httpx.TransportError as exc:
            self.statuses["dropped"] += 1
            raise AssertionError(f"{method} {path}: no response ({exc!r})") from exc
        self.statuses[str(response.status_code)] += 1
        return response

    def entries(self, name: str, *, include_withdrawn: bool = False) -> list[dict[str, Any]]:
        response = self.request(
            "GET",
            f"/v1/lists/{name}/entries?limit=10000&include_withdrawn={include_withdrawn}",
            headers=dict(self.auth("admin")),
        )
        assert response.status_code == 200, response.text
        entries: list[dict[str, Any]] = response.json()["entries"]
        return entries

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _prepare(url: str) -> dict[str, str]:
    """Keys, and the lists the suite starts from, written straight into the store."""
    store = Store.open(url)
    try:
        keys = {
            "admin": store.keys.create("alpha", frozenset(Role), actor="hostile")[1],
            "match": store.keys.create("alpha", frozenset({Role.MATCH}), actor="hostile")[1],
            "beta": store.keys.create("beta", frozenset(Role), actor="hostile")[1],
        }
        for name in ("base", "scratch", "cut", "echo"):
            store.lists.create(name, owner="alpha", category="ncii", actor="hostile")
        store.lists.create("beta-private", owner="beta", category="csam", actor="hostile")
        store.lists.create(
            "beta-offer", owner="beta", category="csam", actor="hostile", shared_with=["alpha"]
        )
        rows: list[HashRow | RowError] = [
            HashRow(n, Hash.from_hex(PDQ, value), f"base-{n}", ("seed",))
            for n, value in enumerate(BASE_HEXES, 1)
        ]
        rows.append(HashRow(len(rows) + 1, Hash.from_hex(MD5, BASE_MD5), "base-md5"))
        report = store.entries.import_rows("base", rows, actor="hostile")
        assert report.added == len(BASELINE)
        beta = [HashRow(1, Hash.from_hex(PDQ, NEW_HEXES[-1]), "beta-1")]
        store.entries.import_rows("beta-private", beta, actor="hostile")
    finally:
        store.close()
    return keys


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    backend: str = request.param
    tmp = tmp_path_factory.mktemp(f"hostile-{backend}")
    with database(backend, tmp) as url:
        keys = _prepare(url)
        port = free_port()
        env = {
            **os.environ,
            "HASHMATCH_DATABASE_URL": url,
            "HASHMATCH_DATA_DIR": str(tmp / "index"),
            "HASHMATCH_WORKERS": "1",
            "HASHMATCH_LOG_LEVEL": "info",
            "HASHMATCH_RATE_LIMIT": "1000000",
            "HASHMATCH_RATE_BURST": "1000000",
            "HASHMATCH_MAX_UPLOAD_BYTES": str(UPLOAD_CAP),
            "PYTHONUNBUFFERED": "1",
        }
        log = tmp / "serve.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "hashmatch", "serve", "--port", str(port)],
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{port}"
        # A fresh connection for every request: a case the server answers by closing its
        # connection must not cost the next case a reset on a pooled one.
        client = httpx.Client(
            base_url=base,
            timeout=httpx.Timeout(60.0),
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        running = Server(backend, base, process, log, keys, client)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, log.read_text(errors="replace")
                assert time.monotonic() < deadline, "service not ready within 60 s"
                time.sleep(0.1)
            yield running
        finally:
            client.close()
            running.stop()


# --- bodies -------------------------------------------------------------------------------------


def _json(value: object) -> bytes:
    """JSON text; ``ensure_ascii`` writes NUL, controls and lone surrogates as ``\\uXXXX``."""
    return json.dumps(value).encode()


def _chunks(megabytes: int, fill: bytes = b"x") -> Iterator[bytes]:
    """``megabytes`` MB as 1 MB chunks of one shared buffer: nothing big is ever built."""
    chunk = fill * MB
    for _ in range(megabytes):
        yield chunk


def _chunked(megabytes: int, prefix: bytes = b"") -> Callable[[], Iterator[bytes]]:
    """A generator body (no Content-Length: sent chunked)."""

    def body() -> Iterator[bytes]:
        if prefix:
            yield prefix
        yield from _chunks(megabytes)

    return body


BOUNDARY: Final = "hostile-boundary-4c1d"


def _multipart(
    data: bytes,
    *,
    boundary: str = BOUNDARY,
    name: str = "file",
    content_type: str = "application/octet-stream",
    closed: bool = True,
) -> bytes:
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{name}"; filename="upload"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode() if closed else b""
    return head + data + tail


def _multipart_type(boundary: str = BOUNDARY) -> str:
    return f"multipart/form-data; boundary={boundary}"


def _hash(value: str = SECRET_HEX, algorithm: str = "pdq", **extra: object) -> dict[str, object]:
    return {"algorithm": algorithm, "value": value, **extra}


def _match(*hashes: dict[str, object], **extra: object) -> bytes:
    return _json({"hashes": list(hashes) or [_hash(NEW_HEXES[0])], **extra})


def _new_list(**fields: object) -> bytes:
    return _json({"name": "hostile-new", "category": "ncii", **fields})


def _entry(value: str = NEW_HEXES[1], algorithm: str = "pdq", **extra: object) -> dict[str, object]:
    return {"algorithm": algorithm, "hash": value, **extra}


def _entries(*entries: dict[str, object], strict: bool = False) -> bytes:
    return _json({"entries": list(entries), "strict": strict})


def _withdrawal(**fields: object) -> bytes:
    return _json({"reason": "victim asked", "references": ["base-1"], **fields})


@cache
def _photo_png() -> bytes:
    return encode(natural_image(96, 64, seed=7), "PNG")


@cache
def _photo_jpeg() -> bytes:
    return encode(natural_image(320, 240, seed=8), "JPEG", quality=90)


# --- image bombs, each under 1 MB, built by hand so that this process never holds the pixels ----


def _zlib_zeros(total: int) -> bytes:
    """A zlib stream of ``total`` zero bytes: one compressed 4 MB block, repeated. After a full
    flush deflate starts afresh, so every block compresses to the same bytes; only the
    checksum at the end covers the whole."""
    block = bytes(4 * MB)
    count, rest = divmod(total, len(block))
    compressor = zlib.compressobj(9)
    first = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = (compressor.compress(bytes(rest)) + compressor.flush())[:-4]
    checksum = 1
    for _ in range(count):
        checksum = zlib.adler32(block, checksum)
    checksum = zlib.adler32(bytes(rest), checksum)
    parts = [first, *[again] * (count - 1)] if count else [first[:2]]
    return b"".join(parts) + tail + checksum.to_bytes(4, "big")


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _png(width: int, height: int, *, bit_depth: int, color_type: int, channels: int) -> bytes:
    """A valid all-zero PNG (filter 0 on every row)."""
    row = 1 + width * channels * bit_depth // 8
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    chunks = [_png_chunk(b"IHDR", header)]
    if color_type == 3:
        chunks.append(_png_chunk(b"PLTE", bytes(range(48))))
    chunks += [_png_chunk(b"IDAT", _zlib_zeros(row * height)), _png_chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def _tiff(
    width: int,
    height: int,
    *,
    bits: int,
    sample_format: int,
    compression: int,
    rows_per_strip: int,
    strip: Callable[[int], bytes],
) -> bytes:
    """A little-endian grey TIFF; strips of the same height share their bytes."""
    strips = -(-height // rows_per_strip)
    blobs: dict[int, bytes] = {}
    heights = [min(rows_per_strip, height - n * rows_per_strip) for n in range(strips)]
    for rows in heights:
        if rows not in blobs:
            blobs[rows] = strip(rows)
    tags = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, bits),
        (259, 3, 1, compression),
        (262, 3, 1, 1),  # BlackIsZero
        (273, 4, strips, 0),  # StripOffsets
        (277, 3, 1, 1),
        (278, 4, 1, rows_per_strip),
        (279, 4, strips, 0),  # StripByteCounts
        (339, 3, 1, sample_format),
    ]
    arrays_at = 8 + 2 + 12 * len(tags) + 4
    data_at = arrays_at + 8 * strips
    where: dict[int, int] = {}
    position = data_at
    for rows, blob in blobs.items():
        where[rows] = position
        position += len(blob)
    offsets = [where[rows] for rows in heights]
    counts = [len(blobs[rows]) for rows in heights]
    out = bytearray(b"II*\x00" + struct.pack("<IH", 8, len(tags)))
    for tag, kind, count, value in tags:
        if tag == 273:
            value = offsets[0] if strips == 1 else arrays_at
        elif tag == 279:
            value = counts[0] if strips == 1 else arrays_at + 4 * strips
        out += struct.pack("<HHII", tag, kind, count, value)
    out += struct.pack("<I", 0)
    if strips > 1:
        out += struct.pack(f"<{strips}I", *offsets) + struct.pack(f"<{strips}I", *counts)
    out = out.ljust(data_at, b"\x00")
    for blob in blobs.values():
        out += blob
    return bytes(out)


@cache
def bomb_rgb_png() -> bytes:
    return _png(8000, 8000, bit_depth=8, color_type=2, channels=3)


@cache
def bomb_grey16_png() -> bytes:
    return _png(10000, 9999, bit_depth=16, color_type=0, channels=1)


@cache
def bomb_palette_png() -> bytes:
    return _png(6000, 6000, bit_depth=8, color_type=3, channels=1)


@cache
def bomb_palette_png_6500() -> bytes:
    return _png(6500, 6500, bit_depth=8, color_type=3, channels=1)


@cache
def bomb_float_tiff() -> bytes:
    # Compression 32946 is Pillow's "tiff_deflate".
    return _tiff(
        10000,
        9999,
        bits=32,
        sample_format=3,
        compression=32946,
        rows_per_strip=64,
        strip=lambda rows: zlib.compress(bytes(rows * 10000 * 4), 9),
    )


@cache
def bomb_tiff_header() -> bytes:
    """100000x100000 grey claimed by the header, 64 bytes of pixels."""
    return _tiff(
        100_000,
        100_000,
        bits=8,
        sample_format=1,
        compression=1,
        rows_per_strip=100_000,
        strip=lambda rows: bytes(64),
    )


@cache
def bomb_gif_header() -> bytes:
    """A GIF whose screen and frame claim 65535x65535, with one LZW code of data."""
    screen = struct.pack("<HHBBB", 65535, 65535, 0x80, 0, 0)
    frame = b"," + struct.pack("<HHHHB", 0, 0, 65535, 65535, 0)
    return b"GIF89a" + screen + b"\x00\x00\x00\xff\xff\xff" + frame + b"\x02\x02\x4c\x01\x00;"


@cache
def bomb_webp_header() -> bytes:
    """A 1x1 lossless WebP whose VP8L header is patched to claim 16383x16383."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1), (9, 9, 9)).save(buffer, "WEBP", lossless=True)
    data = buffer.getvalue()
    at = data.index(b"VP8L") + 8
    assert data[at] == 0x2F
    bits = int.from_bytes(data[at + 1 : at + 5], "little") & ~((1 << 28) - 1)
    bits |= (16383 - 1) | ((16383 - 1) << 14)
    return data[: at + 1] + bits.to_bytes(4, "little") + data[at + 5 :]


#: (builder, Pillow format, mode, size) of each bomb.
BOMBS: Final = (
    (bomb_rgb_png, "PNG", "RGB", (8000, 8000)),
    (bomb_grey16_png, "PNG", "I;16", (10000, 9999)),
    (bomb_float_tiff, "TIFF", "F", (10000, 9999)),
    (bomb_palette_png, "PNG", "P", (6000, 6000)),
    (bomb_palette_png_6500, "PNG", "P", (6500, 6500)),
)


def _svg() -> bytes:
    return (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="9" height="9">'
        b"<script>alert(1)</script></svg>"
    )


def _pdf() -> bytes:
    return b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def _zip() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("holiday.jpg", _photo_jpeg())
    return buffer.getvalue()


def _html() -> bytes:
    return b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>"


def _truncated_jpeg() -> bytes:
    data = _photo_jpeg()
    return data[: len(data) // 2]


# --- hash-set files -----------------------------------------------------------------------------


def _csv_long_label() -> bytes:
    return (
        f"hash,algorithm,reference,labels\n{NEW_HEXES[2]},pdq,r-long-label,{LONG_TEXT}\n".encode()
    )


def _jsonl_long_label() -> bytes:
    row = {"algorithm": "pdq", "hash": NEW_HEXES[3], "reference": "r", "labels": [LONG_TEXT]}
    return _json(row) + b"\n"


def _tx_long_reference() -> bytes:
    return f"pdq {NEW_HEXES[4]} {LONG_TEXT}\n".encode()


def _csv_long_line() -> bytes:
    # Past the reader's 16 MiB line cap (raised for video frame sets): refused by the cap.
    return f"hash,algorithm,reference\n{NEW_HEXES[5]},pdq,{'y' * (20 * MB)}\n".encode()


def _jsonl_deep() -> bytes:
    return b"[" * HUGE + b"]" * HUGE + b"\n"


def _tx_crlf_bom() -> bytes:
    return f"\ufeffpdq {TX_HEXES[0]} tx-1\r\npdq {TX_HEXES[1]} tx-2\r\n".encode()


def _csv_truncated_upload() -> bytes:
    """A CSV upload cut off mid-way: the multipart body ends without its closing delimiter."""
    rows = f"hash,algorithm,reference\n{CUT_HEXES[0]},pdq,cut-1\n{CUT_HEXES[1]},pdq,cut-2"
    return _multipart(rows.encode(), content_type="text/csv", closed=False)


def _jsonl_echoing(**record: str) -> Callable[[], bytes]:
    """A JSON-lines row the importer rejects quoting its text (a ``hashmatch hash`` error
    record, or an exported tombstone), with a lone surrogate or a NUL in that text."""
    return lambda: _json(record) + b"\n"


def _million_list_names() -> bytes:
    return _match(lists=[f"l{n % 10}" for n in range(1_000_000)])


def _ten_thousand_and_one() -> bytes:
    return _json({"hashes": [_hash(NEW_HEXES[n % 8]) for n in range(10_001)]})


# --- checks on 200 answers ----------------------------------------------------------------------


def _imported(added: int, rejected: int) -> Reply:
    def check(_: Server, response: httpx.Response) -> None:
        report = response.json()
        assert (report["added"], report["rejected"]) == (added, rejected), report
        assert len(report["errors"]) == rejected, report

    return check


def _rejected_or_refused(rejected: int = 1) -> Reply:
    """A file import: the bad rows rejected in a 200's ``errors``, or a 422."""
    check = _imported(0, rejected)

    def either(server: Server, response: httpx.Response) -> None:
        if response.status_code == 200:
            check(server, response)

    return either


def _tx_landed(server: Server, response: httpx.Response) -> None:
    _imported(2, 0)(server, response)
    stored = {(e["hash"], e["reference"]) for e in server.entries("scratch")}
    assert stored == {(TX_HEXES[0], "tx-1"), (TX_HEXES[1], "tx-2")}


def _nothing_in_cut(server: Server, response: httpx.Response) -> None:
    stored = server.entries("cut", include_withdrawn=True)
    assert stored == [], f"a truncated upload was imported: {response.text} -> {stored}"


# --- the table ----------------------------------------------------------------------------------

Body = bytes | Callable[[], bytes] | Callable[[], Iterator[bytes]] | None
JSON_TYPE: Final = "application/json"
NUL: Final = "\u0000"


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    body: Body = None
    status: int | frozenset[int] = 422
    code: str | None = None
    content_type: str | None = JSON_TYPE
    #: Which key signs the request (None: no Authorization header).
    key: str | None = "admin"
    #: A raw Authorization header instead; "{admin}" is replaced by the admin key.
    auth: str | bytes | None = None
    #: Text the error message must contain (the field it names).
    mentions: str | None = None
    check: Reply | None = None
    seconds: float = 10.0


def _statuses(*values: int) -> frozenset[int]:
    return frozenset(values)


#: A value too long for its field, in a body too long for its route's cap.
OVER: Final = frozenset({413, 422})

IMAGE = "/v1/match"
HASHES = "/v1/match/hashes"
LISTS = "/v1/lists"
ENTRIES = "/v1/lists/base/entries"
WITHDRAW = "/v1/lists/base/withdrawals"

CASES: Final[tuple[Case, ...]] = (
    # --- keys: refused from the headers alone ---------------------------------------------------
    Case("auth-missing", "GET", LISTS, key=None, status=401, code="unauthorized"),
    Case("auth-no-scheme", "GET", LISTS, auth="{admin}", status=401, code="unauthorized"),
    Case("auth-basic", "GET", LISTS, auth="Basic YWxwaGE6c2VjcmV0", status=401),
    Case("auth-bearer-without-key", "GET", LISTS, auth="Bearer", status=401),
    Case("auth-bearer-tab-key", "GET", LISTS, auth="Bearer\t{admin}", status=401),
    Case("auth-unknown-key", "GET", LISTS, auth="Bearer hm_" + "q" * 43, status=401),
    Case("auth-100k-key", "GET", LISTS, auth="Bearer " + "k" * HUGE, status=401),
    Case("auth-non-ascii", "GET", LISTS, auth=b"Bearer \xff\xfe\x80hm_\xc3", status=401),
    Case("auth-key-twice", "GET", LISTS, auth="Bearer {admin} {admin}", status=401),
    # --- chunked bodies (no Content-Length) ----------------------------------------------------
    Case("chunked-no-key-match-hashes", "POST", HASHES, _chunked(8), key=None, status=401),
    Case(
        "chunked-no-key-entries",
        "POST",
        ENTRIES,
        _chunked(8),
        content_type="text/csv",
        key=None,
        status=401,
        code="unauthorized",
    ),
    Case(
        "chunked-over-cap-match-hashes",
        "POST",
        HASHES,
        _chunked(HASHES_BODY_CAP // MB + 1, b'{"hashes": ['),
        status=413,
        code="payload_too_large",
    ),
    Case(
        "chunked-over-cap-create-list",
        "POST",
        LISTS,
        _chunked(1, b'{"name": "x", "description": "'),
        status=413,
        code="payload_too_large",
    ),
    Case(
        "chunked-over-cap-withdrawals",
        "POST",
        WITHDRAW,
        _chunked(WITHDRAWAL_CAP // MB + 1, b'{"reason": "'),
        status=413,
        code="payload_too_large",
    ),
    Case(
        "chunked-over-cap-entries-json",
        "POST",
        ENTRIES,
        _chunked(JSON_ENTRIES_CAP // MB + 1, b'{"entries": ['),
        status=413,
        code="payload_too_large",
    ),
    Case(
        "chunked-over-cap-image",
        "POST",
        IMAGE,
        _chunked(UPLOAD_CAP // MB + 2, b"\x89PNG\r\n\x1a\n"),
        content_type="image/png",
        status=413,
        code="payload_too_large",
    ),
    Case(
        "declared-over-cap-create-list",
        "POST",
        LISTS,
        _new_list(description="d" * (DEFAULT_BODY_CAP + 1)),
        status=413,
        code="payload_too_large",
    ),
    Case("million-list-names", "POST", HASHES, _million_list_names, status=_statuses(413, 422)),
    # --- multipart ----------------------------------------------------------------------------
    Case(
        "multipart-boundary-300-match",
        "POST",
        IMAGE,
        _multipart(_photo_png(), boundary="b" * 300),
        content_type=_multipart_type("b" * 300),
        status=400,
        code="bad_request",
    ),
    Case(
        "multipart-boundary-300-entries",
        "POST",
        ENTRIES,
        _multipart(f"pdq {NEW_HEXES[6]}\n".encode(), boundary="b" * 300),
        content_type=_multipart_type("b" * 300),
        status=400,
        code="bad_request",
    ),
    Case(
        "multipart-without-file-field-match",
        "POST",
        IMAGE,
        _multipart(_photo_png(), name="picture"),
        content_type=_multipart_type(),
        status=400,
        mentions="'file'",
    ),
    Case(
        "multipart-without-file-field-entries",
        "POST",
        ENTRIES,
        _multipart(f"pdq {NEW_HEXES[6]}\n".encode(), name="upload"),
        content_type=_multipart_type(),
        status=400,
        mentions="'file'",
    ),
    Case(
        "multipart-without-boundary",
        "POST",
        IMAGE,
        _multipart(_photo_png()),
        content_type="multipart/form-data",
        status=400,
        mentions="boundary",
    ),
    Case(
        "multipart-empty-boundary",
        "POST",
        IMAGE,
        _multipart(_photo_png()),
        content_type="multipart/form-data; boundary=",
        status=400,
        mentions="boundary",
    ),
    Case(
        "multipart-truncated-in-headers",
        "POST",
        IMAGE,
        _multipart(_photo_png())[:40],
        content_type=_multipart_type(),
        status=400,
    ),
    Case(
        "multipart-truncated-in-image",
        "POST",
        IMAGE,
        _multipart(_photo_png(), closed=False)[:-200],
        content_type=_multipart_type(),
        status=_statuses(400, 422),
    ),
    # The upload's last row is complete but the body ends before the closing delimiter: the
    # import must not take the rows of a cut-off file as the whole file.
    Case(
        "multipart-truncated-import",
        "POST",
        "/v1/lists/cut/entries",
        _csv_truncated_upload,
        content_type=_multipart_type(),
        status=400,
        check=_nothing_in_cut,
    ),
    # --- 100,000 characters in every input format ------------------------------------------------
    Case(
        "label-100k-json-entries",
        "POST",
        ENTRIES,
        _entries(_entry(NEW_HEXES[7], labels=[LONG_TEXT])),
        status=_statuses(200, 422),
        check=_rejected_or_refused(),
    ),
    Case(
        "label-100k-csv",
        "POST",
        ENTRIES,
        _csv_long_label,
        content_type="text/csv",
        status=_statuses(200, 422),
        check=_rejected_or_refused(),
    ),
    Case(
        "label-100k-csv-strict",
        "POST",
        ENTRIES + "?strict=true",
        _csv_long_label,
        content_type="text/csv",
        status=422,
        code="import_rejected",
    ),
    Case(
        "label-100k-jsonl",
        "POST",
        ENTRIES,
        _jsonl_long_label,
        content_type="application/x-ndjson",
        status=_statuses(200, 422),
        check=_rejected_or_refused(),
    ),
    Case(
        "label-100k-multipart-csv",
        "POST",
        ENTRIES,
        lambda: _multipart(_csv_long_label(), content_type="text/csv"),
        content_type=_multipart_type(),
        status=_statuses(200, 422),
        check=_rejected_or_refused(),
    ),
    Case(
        "reference-100k-tx",
        "POST",
        ENTRIES,
        _tx_long_reference,
        content_type="text/plain",
        status=_statuses(200, 422),
        check=_rejected_or_refused(),
    ),
    Case(
        "reference-100k-json-entries",
        "POST",
        ENTRIES,
        _entries(_entry(NEW_HEXES[8], reference=LONG_TEXT)),
        status=_statuses(200, 422),
        check=_rejected_or_refused(),
    ),
    # /v1/lists and PATCH take 64 KiB bodies: 100,000 characters are refused by the cap (413)
    # before any field is read; one character over each field's limit is a 422 naming it.
    Case("name-100k", "POST", LISTS, _new_list(name="n" * HUGE), status=OVER, mentions="name"),
    Case(
        "category-100k",
        "POST",
        LISTS,
        _new_list(category="c" * HUGE),
        status=OVER,
        mentions="category",
    ),
    Case("source-100k", "POST", LISTS, _new_list(source=LONG_TEXT), status=OVER, mentions="source"),
    Case(
        "jurisdiction-100k",
        "POST",
        LISTS,
        _new_list(jurisdiction=LONG_TEXT),
        status=OVER,
        mentions="jurisdiction",
    ),
    Case(
        "description-100k",
        "POST",
        LISTS,
        _new_list(description=LONG_TEXT),
        status=OVER,
        mentions="description",
    ),
    Case(
        "patch-description-100k",
        "PATCH",
        "/v1/lists/base",
        _json({"description": LONG_TEXT}),
        status=OVER,
        mentions="description",
    ),
    Case("name-129", "POST", LISTS, _new_list(name="n" * 129), mentions="name"),
    Case("category-33", "POST", LISTS, _new_list(category="c" * 33), mentions="category"),
    Case("source-257", "POST", LISTS, _new_list(source="s" * 257), mentions="source"),
    Case(
        "jurisdiction-65", "POST", LISTS, _new_list(jurisdiction="j" * 65), mentions="jurisdiction"
    ),
    Case(
        "description-2001", "POST", LISTS, _new_list(description="d" * 2001), mentions="description"
    ),
    Case(
        "patch-source-257",
        "PATCH",
        "/v1/lists/base",
        _json({"source": "s" * 257}),
        mentions="source",
    ),
    Case("reason-100k", "POST", WITHDRAW, _withdrawal(reason=LONG_TEXT), mentions="reason"),
    Case(
        "withdraw-reference-100k",
        "POST",
        WITHDRAW,
        _withdrawal(references=[LONG_TEXT]),
        mentions="references",
    ),
    # --- NUL in every path and body field ------------------------------------------------------
    Case("nul-path-get-list", "GET", "/v1/lists/a%00b", status=404, code="not_found"),
    Case("nul-path-patch-list", "PATCH", "/v1/lists/a%00b", _json({"enabled": False}), status=404),
    Case("nul-path-entries", "POST", "/v1/lists/a%00b/entries", _entries(_entry()), status=404),
    Case("nul-path-get-entries", "GET", "/v1/lists/a%00b/entries", status=404),
    Case("nul-path-withdraw", "POST", "/v1/lists/a%00b/withdrawals", _withdrawal(), status=404),
    Case("nul-path-accept", "POST", "/v1/shares/a%00b/accept", status=404, code="not_found"),
    Case("nul-name", "POST", LISTS, _new_list(name=f"a{NUL}b"), mentions="name"),
    Case("nul-category", "POST", LISTS, _new_list(category=f"ncii{NUL}"), mentions="category"),
    Case("nul-source", "POST", LISTS, _new_list(source=f"s{NUL}"), mentions="source"),
    Case(
        "nul-jurisdiction",
        "POST",
        LISTS,
        _new_list(jurisdiction=f"KR{NUL}"),
        mentions="jurisdiction",
    ),
    Case(
        "nul-description", "POST", LISTS, _new_list(description=f"d{NUL}"), mentions="description"
    ),
    Case(
        "nul-shared-with",
        "POST",
        LISTS,
        _new_list(shared_with=[f"beta{NUL}"]),
        mentions="shared_with",
    ),
    Case(
        "nul-thresholds-key", "POST", LISTS, _new_list(thresholds={f"pdq{NUL}": 10}), mentions="pdq"
    ),
    Case(
        "nul-patch-source",
        "PATCH",
        "/v1/lists/base",
        _json({"source": f"KCSC{NUL}"}),
        mentions="source",
    ),
    Case(
        "nul-patch-shared-with",
        "PATCH",
        "/v1/lists/base",
        _json({"shared_with": [f"beta{NUL}"]}),
        mentions="shared_with",
    ),
    Case(
        "nul-entry-reference",
        "POST",
        ENTRIES,
        _entries(_entry(NEW_HEXES[9], reference=f"r{NUL}"), strict=True),
        code="import_rejected",
    ),
    Case(
        "nul-entry-label",
        "POST",
        ENTRIES,
        _entries(_entry(NEW_HEXES[10], labels=[f"l{NUL}"]), strict=True),
        code="import_rejected",
    ),
    Case(
        "nul-entry-algorithm",
        "POST",
        ENTRIES,
        _entries(_entry(NEW_HEXES[11], algorithm=f"pdq{NUL}"), strict=True),
        code="import_rejected",
    ),
    Case(
        "nul-entry-hash",
        "POST",
        ENTRIES,
        _entries(_entry(NEW_HEXES[12][:-1] + NUL), strict=True),
        code="import_rejected",
    ),
    Case(
        "nul-entry-after-a-valid-one",
        "POST",
        ENTRIES,
        _entries(_entry(NEW_HEXES[13]), _entry(NEW_HEXES[14], reference=f"r{NUL}"), strict=True),
        code="import_rejected",
    ),
    Case("nul-withdraw-reason", "POST", WITHDRAW, _withdrawal(reason=f"why{NUL}")),
    Case(
        "nul-withdraw-reference-after-a-live-one",
        "POST",
        WITHDRAW,
        _withdrawal(references=["base-1", f"base-2{NUL}"]),
        mentions="references[1]",
    ),
    Case(
        "nul-withdraw-hash",
        "POST",
        WITHDRAW,
        _withdrawal(references=[], hashes=[_hash(BASE_HEXES[0][:-1] + NUL)]),
    ),
    Case("nul-match-value", "POST", HASHES, _match(_hash(SECRET_HEX[:-1] + NUL))),
    Case("nul-match-algorithm", "POST", HASHES, _match(_hash(NEW_HEXES[15], f"pdq{NUL}"))),
    Case("nul-match-group", "POST", HASHES, _match(_hash(NEW_HEXES[15], group=f"g{NUL}"))),
    Case("nul-match-lists", "POST", HASHES, _match(lists=[f"base{NUL}"]), mentions="lists"),
    Case(
        "nul-match-lists-query",
        "POST",
        IMAGE + "?lists=base%00",
        _photo_png(),
        content_type="image/png",
    ),
    # --- other control characters and a lone surrogate -----------------------------------------
    Case("bel-description", "POST", LISTS, _new_list(description="ring\u0007"), mentions="U+0007"),
    Case("rlo-source", "POST", LISTS, _new_list(source="KCSC\u202eRK"), mentions="U+202E"),
    Case("rlo-name", "POST", LISTS, _new_list(name="abc\u202edef"), mentions="name"),
    Case(
        "rlo-withdraw-reference",
        "POST",
        WITHDRAW,
        _withdrawal(references=["base-1\u202e"]),
        mentions="U+202E",
    ),
    Case(
        "bel-entry-label",
        "POST",
        ENTRIES,
        _entries(_entry(NEW_HEXES[16], labels=["a\u0007"]), strict=True),
        code="import_rejected",
    ),
    Case("rlo-match-group", "POST", HASHES, _match(_hash(NEW_HEXES[15], group="g\u202e"))),
    Case("surrogate-name", "POST", LISTS, _new_list(name="\ud800"), mentions="name"),
    Case(
        "surrogate-description",
        "POST",
        LISTS,
        _new_list(description="a\ud800b"),
        mentions="description",
    ),
    Case(
        "surrogate-entry-reference",
        "POST",
        ENTRIES,
        _entries(_entry(NEW_HEXES[17], reference="\udfff")),
    ),
    Case("surrogate-match-group", "POST", HASHES, _match(_hash(NEW_HEXES[15], group="\ud800"))),
    Case(
        "surrogate-withdraw-reason",
        "POST",
        WITHDRAW,
        _withdrawal(reason="\ud83d"),
        mentions="reason",
    ),
    Case(
        "surrogate-patch-jurisdiction",
        "PATCH",
        "/v1/lists/base",
        _json({"jurisdiction": "\udc00"}),
        mentions="jurisdiction",
    ),
    # --- image bombs and what is no image ------------------------------------------------------
    Case(
        "bomb-rgb-png-8000x8000",
        "POST",
        IMAGE,
        bomb_rgb_png,
        content_type="image/png",
        status=413,
        code="too_many_pixels",
        seconds=5,
    ),
    Case(
        "bomb-grey16-png-10000x9999",
        "POST",
        IMAGE,
        bomb_grey16_png,
        content_type="image/png",
        status=413,
        code="too_many_pixels",
        seconds=5,
    ),
    Case(
        "bomb-float-tiff-10000x9999",
        "POST",
        IMAGE,
        bomb_float_tiff,
        content_type="image/tiff",
        status=413,
        code="too_many_pixels",
        seconds=5,
    ),
    # 188 MB to decode: under the per-image cap (192 MiB), so it is decoded, within the
    # process's decode budget; the suite's peak RSS includes it.
    Case(
        "palette-png-6000x6000-under-the-cap",
        "POST",
        IMAGE,
        bomb_palette_png,
        content_type="image/png",
        status=200,
        seconds=5,
    ),
    Case(
        "bomb-palette-png-6500x6500",
        "POST",
        IMAGE,
        bomb_palette_png_6500,
        content_type="image/png",
        status=413,
        code="too_many_pixels",
        seconds=5,
    ),
    Case(
        "bomb-rgb-png-multipart-hash",
        "POST",
        "/v1/hash",
        lambda: _multipart(bomb_rgb_png(), content_type="image/png"),
        content_type=_multipart_type(),
        status=413,
        code="too_many_pixels",
        seconds=5,
    ),
    Case(
        "bomb-gif-header-65535",
        "POST",
        IMAGE,
        bomb_gif_header,
        content_type="image/gif",
        status=413,
        code="too_many_pixels",
        seconds=5,
    ),
    Case(
        "bomb-webp-header-16383",
        "POST",
        IMAGE,
        bomb_webp_header,
        content_type="image/webp",
        status=413,
        code="too_many_pixels",
        seconds=5,
    ),
    Case(
        "bomb-tiff-header-100000",
        "POST",
        IMAGE,
        bomb_tiff_header,
        content_type="image/tiff",
        status=413,
        code="too_many_pixels",
        seconds=5,
    ),
    Case(
        "svg-as-image",
        "POST",
        IMAGE,
        _svg(),
        content_type="image/svg+xml",
        status=415,
        code="unsupported_media",
    ),
    Case(
        "pdf-as-image",
        "POST",
        IMAGE,
        _pdf(),
        content_type="image/jpeg",
        status=415,
        code="unsupported_media",
    ),
    Case(
        "zip-as-image",
        "POST",
        IMAGE,
        _zip,
        content_type="application/octet-stream",
        status=415,
        code="unsupported_media",
    ),
    Case(
        "html-as-image-multipart",
        "POST",
        IMAGE,
        _multipart(_html(), content_type="image/png"),
        content_type=_multipart_type(),
        status=415,
        code="unsupported_media",
    ),
    Case(
        "truncated-jpeg",
        "POST",
        IMAGE,
        _truncated_jpeg,
        content_type="image/jpeg",
        code="corrupt_media",
    ),
    Case("empty-image", "POST", IMAGE, b"", content_type="image/jpeg", code="empty_media"),
    Case(
        "image-as-text-plain",
        "POST",
        IMAGE,
        _photo_png(),
        content_type="text/plain",
        status=415,
        code="unsupported_content_type",
    ),
    # --- JSON of the wrong shape ---------------------------------------------------------------
    Case("malformed-json-create-list", "POST", LISTS, b'{"name": "x", "category": '),
    Case("malformed-json-match-hashes", "POST", HASHES, b'{"hashes": [{"algorithm": "pdq",]}'),
    Case("malformed-json-entries", "POST", ENTRIES, b'{"entries": [}'),
    Case("malformed-json-withdrawal", "POST", WITHDRAW, b"{'reason': 'single quotes'}"),
    Case("json-array-create-list", "POST", LISTS, _json(["hostile-new", "ncii"])),
    Case("json-string-match-hashes", "POST", HASHES, _json("hashes")),
    Case("wrong-types-match-hashes", "POST", HASHES, _json({"hashes": "abc"})),
    Case(
        "wrong-types-entries",
        "POST",
        ENTRIES,
        _json({"entries": [{"algorithm": 5, "hash": [], "labels": "x"}]}),
    ),
    Case("wrong-types-withdrawal", "POST", WITHDRAW, _json({"reason": 7, "references": "x"})),
    Case("wrong-kind-create-list", "POST", LISTS, _new_list(kind="delete")),
    Case("empty-hashes", "POST", HASHES, _json({"hashes": []})),
    Case("empty-entries", "POST", ENTRIES, _json({"entries": []})),
    Case("empty-body-create-list", "POST", LISTS, b""),
    Case("empty-body-match-hashes", "POST", HASHES, b""),
    Case("empty-body-entries-json", "POST", ENTRIES, b""),
    Case(
        "empty-body-entries-file",
        "POST",
        ENTRIES,
        b"",
        content_type="text/csv",
        status=_statuses(200, 400, 422),
        check=_rejected_or_refused(0),
    ),
    Case(
        "deep-json-create-list",
        "POST",
        LISTS,
        b"[" * 30_000 + b"]" * 30_000,
        status=_statuses(400, 422),
    ),
    Case(
        "deep-json-match-hashes",
        "POST",
        HASHES,
        b'{"hashes": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        status=_statuses(400, 422),
    ),
    Case(
        "duplicate-keys-create-list",
        "POST",
        LISTS,
        b'{"name": "hostile-dup", "category": "ncii", "name": "bad\\u0000name"}',
        mentions="name",
    ),
    Case(
        "duplicate-keys-match-hashes",
        "POST",
        HASHES,
        b'{"hashes": [{"algorithm": "pdq", "value": "'
        + NEW_HEXES[15].encode()
        + b'"}], "hashes": "none"}',
    ),
    Case(
        "text-plain-create-list",
        "POST",
        LISTS,
        _new_list(),
        content_type="text/plain",
        status=_statuses(415, 422),
    ),
    Case(
        "xml-entries-file",
        "POST",
        ENTRIES,
        b"<?xml version='1.0'?><hashes><pdq>00</pdq></hashes>",
        content_type="application/xml",
        status=_statuses(200, 415, 422),
        check=_rejected_or_refused(),
    ),
    Case(
        "binary-garbage-entries-file",
        "POST",
        ENTRIES,
        b"\xff\xfe\x00\x81" * 1000,
        content_type="application/octet-stream",
        status=_statuses(200, 422),
        check=_rejected_or_refused(),
    ),
    # --- numbers out of range ------------------------------------------------------------------
    Case("cursor-2-64", "GET", "/v1/changes?cursor=18446744073709551616", mentions="cursor"),
    Case("cursor-10-30", "GET", f"/v1/changes?cursor={10**30}"),
    Case("after-2-63", "GET", f"{ENTRIES}?after={2**63}", mentions="after"),
    Case("after-negative", "GET", f"{ENTRIES}?after=-1"),
    Case("limit-negative-entries", "GET", f"{ENTRIES}?limit=-1", mentions="limit"),
    Case("limit-negative-changes", "GET", "/v1/changes?limit=-5", mentions="limit"),
    Case("limit-zero-entries", "GET", f"{ENTRIES}?limit=0"),
    Case("limit-not-a-number", "GET", f"{ENTRIES}?limit=ten"),
    Case(
        "max-distance-10-30", "POST", HASHES, _match(max_distance=10**30), mentions="max_distance"
    ),
    Case("max-distance-negative", "POST", HASHES, _match(max_distance=-1)),
    Case(
        "max-distance-query-10-30",
        "POST",
        f"{IMAGE}?max_distance={10**30}",
        _photo_png(),
        content_type="image/png",
    ),
    Case("thresholds-1e300", "POST", LISTS, _new_list(thresholds={"pdq": 1e300}), mentions="pdq"),
    Case("thresholds-10-30", "POST", LISTS, _new_list(thresholds={"pdq": 10**30})),
    Case("thresholds-over-bound", "POST", LISTS, _new_list(thresholds={"pdq": 200})),
    Case("thresholds-md5", "POST", LISTS, _new_list(thresholds={"md5": 3}), mentions="md5"),
    Case(
        "patch-thresholds-1e300", "PATCH", "/v1/lists/base", _json({"thresholds": {"pdq": 1e300}})
    ),
    # --- organisations and roles ---------------------------------------------------------------
    Case("other-org-get-list", "GET", "/v1/lists/base", key="beta", status=404),
    Case(
        "other-org-add-entries",
        "POST",
        ENTRIES,
        _entries(_entry(NEW_HEXES[18])),
        key="beta",
        status=404,
    ),
    Case(
        "other-org-withdraw",
        "POST",
        "/v1/lists/beta-private/withdrawals",
        _withdrawal(),
        status=404,
    ),
    Case("other-org-entries-page", "GET", "/v1/lists/beta-private/entries", status=404),
    Case(
        "offered-list-withdraw",
        "POST",
        "/v1/lists/beta-offer/withdrawals",
        _withdrawal(),
        status=403,
        code="forbidden",
    ),
    Case(
        "match-key-creates-list",
        "POST",
        LISTS,
        _new_list(),
        key="match",
        status=403,
        code="forbidden",
    ),
    Case(
        "match-key-adds-entries",
        "POST",
        ENTRIES,
        _entries(_entry(NEW_HEXES[19])),
        key="match",
        status=403,
    ),
    Case(
        "match-key-accepts-offer", "POST", "/v1/shares/beta-offer/accept", key="match", status=403
    ),
    Case("accept-own-list", "POST", "/v1/shares/base/accept", status=404),
    Case(
        "accept-with-garbage-body",
        "POST",
        "/v1/shares/beta-offer/accept",
        _json({"trust": "yes please"}),
    ),
    Case("unknown-list-filter", "POST", HASHES, _match(lists=["no-such-list"]), status=404),
    Case("other-org-list-filter", "POST", HASHES, _match(lists=["beta-private"]), status=404),
    Case(
        "offered-not-accepted-filter",
        "POST",
        HASHES,
        _match(lists=["beta-offer"]),
        mentions="beta-offer",
    ),
    Case(
        "lists-query-1001-names",
        "POST",
        f"{IMAGE}?lists=" + ",".join(f"l{n}" for n in range(1001)),
        _photo_png(),
        content_type="image/png",
        mentions="lists",
    ),
    Case(
        "unknown-list-filter-query",
        "POST",
        f"{IMAGE}?lists=no-such-list",
        _photo_png(),
        content_type="image/png",
        status=404,
    ),
    # --- hashes ----------------------------------------------------------------------------------
    Case("garbage-hex", "POST", HASHES, _match(_hash("zz" * 32)), code="invalid_hash"),
    Case("wrong-length-hash", "POST", HASHES, _match(_hash("ab" * 31)), code="invalid_hash"),
    Case("hash-129-chars", "POST", HASHES, _match(_hash("a" * 129))),
    Case(
        "unknown-algorithm",
        "POST",
        HASHES,
        _match(_hash(algorithm="sha1")),
        mentions="sha1",
    ),
    Case("hash-as-number", "POST", HASHES, _match({"algorithm": "pdq", "value": 12345})),
    Case("hashes-10001", "POST", HASHES, _ten_thousand_and_one, mentions="hashes"),
    # --- hash-set files ------------------------------------------------------------------------
    Case(
        "csv-20mb-line",
        "POST",
        ENTRIES,
        _csv_long_line,
        content_type="text/csv",
        status=_statuses(200, 422),
        check=_rejected_or_refused(),
    ),
    Case(
        "jsonl-nested-100000",
        "POST",
        ENTRIES,
        _jsonl_deep,
        content_type="application/x-ndjson",
        status=_statuses(200, 422),
        check=_rejected_or_refused(),
    ),
    Case(
        "csv-without-hash-column",
        "POST",
        ENTRIES,
        f"digest,reference\n{NEW_HEXES[20]},r\n".encode(),
        content_type="text/csv",
        status=_statuses(200, 422),
        check=_rejected_or_refused(2),
    ),
    Case(
        "jsonl-surrogate-in-error-record",
        "POST",
        ENTRIES,
        _jsonl_echoing(path="a.jpg", error="decoder said \ud800"),
        content_type="application/x-ndjson",
        status=_statuses(200, 422),
        check=_rejected_or_refused(),
    ),
    Case(
        "jsonl-surrogate-in-error-path",
        "POST",
        ENTRIES,
        _jsonl_echoing(path="\udc80.jpg", error="unreadable"),
        content_type="application/x-ndjson",
        status=_statuses(200, 422),
        check=_rejected_or_refused(),
    ),
    Case(
        "jsonl-surrogate-in-withdrawn-at",
        "POST",
        ENTRIES,
        _jsonl_echoing(algorithm="pdq", hash=NEW_HEXES[21], withdrawn_at="\udfff"),
        content_type="application/x-ndjson",
        status=_statuses(200, 422),
        check=_rejected_or_refused(),
    ),
    Case(
        "jsonl-nul-in-error-record",
        "POST",
        ENTRIES,
        _jsonl_echoing(path="a\u0000.jpg", error="x\u0000y"),
        content_type="application/x-ndjson",
        status=_statuses(200, 422),
        check=_rejected_or_refused(),
    ),
    Case(
        "tx-crlf-bom-accepted",
        "POST",
        "/v1/lists/scratch/entries",
        _tx_crlf_bom,
        content_type="text/plain",
        status=200,
        check=_tx_landed,
    ),
    # --- secrets (the log must not repeat them) and routes that do not exist ------------------
    Case(
        "withdraw-secrets-matching-nothing",
        "POST",
        WITHDRAW,
        _withdrawal(
            reason=SECRET_REASON, references=[SECRET_REFERENCE], hashes=[_hash(SECRET_HEX)]
        ),
        status=404,
        code="nothing_matched",
    ),
    Case(
        "match-secret-hash-unknown-list",
        "POST",
        HASHES,
        _match(_hash(SECRET_HEX), lists=[SECRET_REFERENCE]),
        status=404,
    ),
    Case("method-not-allowed", "DELETE", "/v1/lists/base", status=405),
    Case("options-not-allowed", "OPTIONS", LISTS, status=405),
    Case("unknown-route", "GET", "/v1/no-such-route", status=404),
)


def _prepared(server: Server, case: Case) -> tuple[dict[str, str | bytes], bytes | Iterator[bytes]]:
    headers: dict[str, str | bytes] = {}
    if case.auth is not None:
        auth = case.auth
        headers["Authorization"] = (
            auth.replace("{admin}", server.keys["admin"]) if isinstance(auth, str) else auth
        )
    elif case.key is not None:
        headers.update(server.auth(case.key))
    if case.content_type is not None:
        headers["Content-Type"] = case.content_type
    body = case.body() if callable(case.body) else case.body
    return headers, body if body is not None else b""


def _envelope(response: httpx.Response, case: Case) -> None:
    assert response.headers.get("content-type", "").startswith("application/json"), response.text
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message"}, body
    assert isinstance(error["code"], str) and error["code"], body
    assert isinstance(error["message"], str) and error["message"], body
    if case.code is not None:
        assert error["code"] == case.code, body
    if case.mentions is not None and response.status_code != 413:  # a 413 names no field
        assert case.mentions in error["message"], body


def test_the_table_is_large_and_distinct() -> None:
    ids = [case.id for case in CASES]
    assert len(set(ids)) == len(ids), [i for i in ids if ids.count(i) > 1]
    assert len(CASES) >= 60
    print(f"hostile cases: {len(CASES)}")


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_input(server: Server, case: Case) -> None:
    headers, body = _prepared(server, case)
    started = time.monotonic()
    response = server.request(case.method, case.path, headers=headers, content=body)
    elapsed = time.monotonic() - started
    expected = {case.status} if isinstance(case.status, int) else case.status
    assert response.status_code in expected, (
        f"{case.method} {case.path} -> {response.status_code}: {response.text[:600]}"
    )
    if response.status_code >= 400:
        _envelope(response, case)
    assert elapsed < case.seconds, f"{case.id} took {elapsed:.1f} s"
    if case.check is not None:
        case.check(server, response)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    ("build", "image_format", "mode", "size"), BOMBS, ids=[bomb[0].__name__ for bomb in BOMBS]
)
def test_bombs_are_what_they_claim(
    build: Callable[[], bytes], image_format: str, mode: str, size: tuple[int, int]
) -> None:
    data = build()
    assert len(data) < 1_000_000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(io.BytesIO(data)) as image:
            assert (image.format, image.mode, image.size) == (image_format, mode, size)
    assert size[0] * size[1] <= 100_000_000  # under the pixel cap: only the decode cost tells


# --- 400 MB, streamed ---------------------------------------------------------------------------


def _stream_400_mb(server: Server, key: str | None, status: int) -> None:
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        for chunk in _chunks(400, b"["):
            sent += len(chunk)
            yield chunk

    headers: dict[str, str | bytes] = {"Content-Type": JSON_TYPE}
    if key is not None:
        headers.update(server.auth(key))
    before = server.rss_kb()
    started = time.monotonic()
    response = server.request("POST", HASHES, headers=headers, content=body())
    elapsed = time.monotonic() - started
    growth = (server.rss_kb() - before) / 1024
    print(
        f"400 MB to {HASHES} ({server.backend}, {'keyed' if key else 'no key'}): "
        f"{response.status_code} in {elapsed:.2f} s, {sent // MB} MB sent, RSS +{growth:.1f} MB"
    )
    assert response.status_code == status, response.text
    _envelope(response, Case("huge", "POST", HASHES, status=status))
    assert growth < 50, f"server RSS grew by {growth:.0f} MB"
    assert elapsed < 30, f"{elapsed:.1f} s"


def test_unkeyed_400_mb_body_is_refused_unread(server: Server) -> None:
    _stream_400_mb(server, None, 401)


def test_keyed_400_mb_body_is_refused_at_the_cap(server: Server) -> None:
    _stream_400_mb(server, "admin", 413)


def test_a_declared_length_over_the_cap_is_refused_before_the_body(server: Server) -> None:
    """A Content-Length over the route's cap is answered at once: the server does not wait
    for (let alone read) a body it would refuse."""
    host, port = server.base.removeprefix("http://").split(":")
    head = (
        f"POST {HASHES} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {JSON_TYPE}\r\n"
        f"Authorization: Bearer {server.keys['admin']}\r\n"
        f"Content-Length: {500 * MB}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(head.encode() + b'{"hashes": [')  # and nothing more
        reply = b""
        while b'"}}' not in reply:  # the head and the body may come in separate segments
            chunk = connection.recv(65536)
            if not chunk:
                break
            reply += chunk
    text = reply.decode("latin-1")
    assert text.startswith("HTTP/1.1 413"), text[:200]
    assert '"payload_too_large"' in text


def test_an_import_that_fails_leaves_nothing_behind(server: Server) -> None:
    """A valid row, then a row whose rejection quotes a lone surrogate: either the import
    answers (the valid row in, the other rejected), or it fails and writes nothing."""
    valid = _json({"algorithm": "pdq", "hash": NEW_HEXES[22], "reference": "echo-1"})
    echoed = _json({"path": "p.jpg", "error": "decoder said \ud800"})
    headers: dict[str, str | bytes] = {
        **server.auth("admin"),
        "Content-Type": "application/x-ndjson",
    }
    response = server.request(
        "POST", "/v1/lists/echo/entries", headers=headers, content=valid + b"\n" + echoed + b"\n"
    )
    stored = [(e["hash"], e["reference"]) for e in server.entries("echo", include_withdrawn=True)]
    if response.status_code == 200:
        _imported(1, 1)(server, response)
        assert stored == [(NEW_HEXES[22], "echo-1")]
    else:
        assert stored == [], (
            f"answered {response.status_code} ({response.text[:200]}), yet wrote {stored}"
        )
    assert response.status_code < 500, response.text


# --- what the suite left behind (runs last for each backend) ------------------------------------


def test_zz_nothing_half_written(server: Server) -> None:
    live = {(e["algorithm"], e["hash"], e["reference"]) for e in server.entries("base")}
    assert live == BASELINE, f"added: {live - BASELINE}, lost: {BASELINE - live}"
    every = server.entries("base", include_withdrawn=True)
    assert all(e["withdrawn_at"] is None for e in every) and len(every) == len(BASELINE)
    assert all(e["labels"] == (["seed"] if e["algorithm"] == "pdq" else []) for e in every)
    for key, expected in (("admin", ALPHA_LISTS), ("beta", BETA_LISTS)):
        response = server.request("GET", LISTS, headers=dict(server.auth(key)))
        names = {info["name"] for info in response.json()}
        assert names == expected, f"{key}: {sorted(names)}"
    shares = server.request("GET", "/v1/shares", headers=dict(server.auth("admin"))).json()
    assert [(s["list"], s["state"]) for s in shares] == [("beta-offer", "offered")]
    scratch = {(e["hash"], e["reference"]) for e in server.entries("scratch")}
    assert scratch <= {(TX_HEXES[0], "tx-1"), (TX_HEXES[1], "tx-2")}, scratch


def test_zz_no_5xx_and_bounded_memory(server: Server) -> None:
    histogram = dict(sorted(server.statuses.items()))
    print(f"status histogram ({server.backend}): {histogram}")
    peak = server.peak_rss_kb() / 1024
    print(f"peak server RSS ({server.backend}): {peak:.0f} MB")
    assert not [s for s in server.statuses if s == "dropped" or int(s) >= 500], histogram
    assert peak < 500


def test_zz_log_is_clean(server: Server) -> None:
    server.stop()  # the shutdown's own lines belong to the log too
    log = server.log.read_text(errors="replace")
    assert "Application startup complete" in log, log[-2000:]
    secrets = {
        "withdrawal reason": SECRET_REASON,
        "reference": SECRET_REFERENCE,
        "hash hex": SECRET_HEX,
        "hash hex (upper case)": SECRET_HEX.upper(),
        "API key": server.keys["admin"],
    }
    problems = [f"the log holds the {name}" for name, secret in secrets.items() if secret in log]
    problems += [
        f"{marker!r} in the log"
        for marker in ("Traceback", "internal_error", "unexpected error", "Exception")
        if marker in log
    ]
    if re.search(r"\b500\b", log):
        problems.append("'500' in the log")
    raised = sorted(set(re.findall(r"^[\w.]+(?:Error|Exception)\b.*$", log, re.MULTILINE)))
    assert not problems, f"{problems}; raised: {raised}\n{log[-3000:]}"
