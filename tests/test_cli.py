"""`hashmatch hash` end to end, as a subprocess on real files."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import encode, natural_image, run_hashmatch
from hashmatch import signals
from hashmatch.cli import EXIT_CODES, exit_code_for
from hashmatch.errors import ConfigError, CorruptMedia, UnknownAlgorithm
from hashmatch.signals import hash_bytes


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return run_hashmatch(*args, cwd=cwd)


@pytest.fixture
def photo_tree(tmp_path: Path) -> Path:
    """good images at two depths, one hidden file, one corrupt file."""
    root = tmp_path / "evidence"
    (root / "case-1" / "day-2").mkdir(parents=True)
    (root / ".cache").mkdir()
    (root / "a.jpg").write_bytes(encode(natural_image(seed=1), "JPEG", quality=90))
    (root / "case-1" / "b.png").write_bytes(encode(natural_image(seed=2), "PNG"))
    (root / "case-1" / "day-2" / "c.webp").write_bytes(encode(natural_image(seed=4), "WEBP"))
    (root / ".hidden.jpg").write_bytes(encode(natural_image(seed=5), "JPEG"))
    (root / ".cache" / "d.jpg").write_bytes(encode(natural_image(seed=6), "JPEG"))
    return root


GOOD = ["a.jpg", "case-1/b.png", "case-1/day-2/c.webp"]


def test_jsonl_recurses_and_matches_library(photo_tree: Path) -> None:
    result = run_cli("hash", photo_tree, "-a", "pdq,phash,md5,sha256", "-j", "1")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    paths = [str(Path(r["path"]).relative_to(photo_tree)) for r in records]
    assert paths == [p for p in GOOD for _ in range(4)]  # hidden entries skipped, order stable
    for record in records:
        data = Path(record["path"]).read_bytes()
        (expected,) = hash_bytes(data, [signals.get(record["algorithm"])])
        assert record["hash"] == expected.hex
        assert record["bytes"] == len(data)
        assert record["quality"] == expected.quality
        assert ("low_quality" in record) == (record["algorithm"] == "pdq")


def test_bad_file_is_an_error_record_and_exit_1(photo_tree: Path) -> None:
    good = (photo_tree / "a.jpg").read_bytes()
    (photo_tree / "case-1" / "broken.jpg").write_bytes(good[: len(good) // 2])
    (photo_tree / "case-1" / "notes.jpg").write_bytes(b"#!/bin/sh\necho hi\n")
    result = run_cli("hash", photo_tree, "-j", "2")
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    errors = {Path(r["path"]).name: r["error"] for r in records if "error" in r}
    assert errors["broken.jpg"]["code"] == "corrupt_media"
    assert errors["notes.jpg"]["code"] == "unsupported_media"
    assert "script" in errors["notes.jpg"]["message"]
    hashed = {Path(r["path"]).name for r in records if "hash" in r}
    assert hashed == {"a.jpg", "b.png", "c.webp"}  # the run went on past the bad files
    assert b"broken.jpg" in result.stderr and b"2 failed" in result.stderr


def test_missing_path_is_reported(tmp_path: Path) -> None:
    result = run_cli("hash", tmp_path / "nope.jpg")
    assert result.returncode == 1
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["error"]["code"] == "unreadable_file"


def test_csv_has_header_and_error_rows(photo_tree: Path) -> None:
    (photo_tree / "empty.jpg").write_bytes(b"")
    result = run_cli("hash", photo_tree, "--format", "csv", "-a", "pdq")
    assert result.returncode == 1
    rows = list(csv.DictReader(io.StringIO(result.stdout.decode())))
    assert list(rows[0]) == [
        "path",
        "algorithm",
        "hash",
        "quality",
        "low_quality",
        "bytes",
        "error",
    ]
    by_name = {Path(r["path"]).name: r for r in rows}
    assert by_name["empty.jpg"]["error"].startswith("empty_media:")
    assert by_name["a.jpg"]["algorithm"] == "pdq" and len(by_name["a.jpg"]["hash"]) == 64
    assert int(by_name["a.jpg"]["quality"]) >= 50 and by_name["a.jpg"]["error"] == ""


def test_tx_lines_and_output_file(photo_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "hashes.txt"
    result = run_cli("hash", photo_tree, "--format", "tx", "-a", "pdq,md5", "-o", out)
    assert result.returncode == 0 and result.stdout == b""
    lines = out.read_text().splitlines()
    assert len(lines) == 6
    expected_order = [(p, a) for p in GOOD for a in ("pdq", "md5")]
    for line, (name, algorithm) in zip(lines, expected_order, strict=True):
        (expected,) = hash_bytes((photo_tree / name).read_bytes(), [signals.get(algorithm)])
        assert line == f"{algorithm} {expected.hex}"


def test_low_quality_hashes_are_counted_per_signal_type(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for shade in (40, 200):  # near-flat images: PDQ quality far below Meta's cut-off
        (flat / f"grey-{shade}.png").write_bytes(
            encode(Image.new("RGB", (300, 200), (shade, shade, shade)), "PNG")
        )
    (flat / "photo.jpg").write_bytes(encode(natural_image(seed=3), "JPEG"))
    result = run_cli("hash", flat, "-a", "pdq,phash,md5", "-j", "1")
    assert result.returncode == 0, result.stderr
    flagged = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["path"].rsplit("/", 1)[1] for r in flagged if r.get("low_quality")) == [
        "grey-200.png",
        "grey-40.png",
    ]
    assert b"hashed 3 of 3 files, low-quality hashes flagged: 2 pdq" in result.stderr


def test_parallel_output_equals_serial(photo_tree: Path) -> None:
    for i in range(9):
        (photo_tree / f"extra-{i}.png").write_bytes(
            encode(natural_image(300, 200, seed=10 + i), "PNG")
        )
    serial = run_cli("hash", photo_tree, "-j", "1", "-a", "pdq,phash")
    parallel = run_cli("hash", photo_tree, "-j", "2", "-a", "pdq,phash")
    assert serial.returncode == parallel.returncode == 0
    assert serial.stdout == parallel.stdout and serial.stdout.count(b"\n") == 24


def test_unknown_algorithm_is_a_usage_error(photo_tree: Path) -> None:
    result = run_cli("hash", photo_tree, "-a", "pdq,photodna")
    assert result.returncode == 2
    assert b"unknown algorithm 'photodna'" in result.stderr and result.stdout == b""


def test_bad_setting_names_the_variable(photo_tree: Path) -> None:
    result = run_hashmatch("hash", photo_tree, env={"HASHMATCH_MAX_PIXELS": "lots", "PATH": ""})
    assert result.returncode == 78
    assert b"HASHMATCH_MAX_PIXELS" in result.stderr


def test_limits_come_from_settings(photo_tree: Path) -> None:
    result = run_hashmatch("hash", photo_tree / "a.jpg", env={"HASHMATCH_MAX_PIXELS": "1000"})
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"]["code"] == "too_many_pixels"


def test_hash_command_does_not_import_service_stack(photo_tree: Path) -> None:
    probe = (
        "import sys\n"
        "from hashmatch.cli import main\n"
        f"status = main(['hash', {str(photo_tree)!r}, '-j', '1', '-o', '/dev/null'])\n"
        "heavy = sorted(m for m in ('fastapi', 'starlette', 'uvicorn', 'faiss', 'sqlalchemy')"
        " if m in sys.modules)\n"
        "print(status, heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert result.stdout.strip() == "0 []", result.stderr


def test_exit_code_table() -> None:
    assert exit_code_for(ConfigError("x")) == 78
    assert exit_code_for(UnknownAlgorithm("x")) == 2
    assert exit_code_for(CorruptMedia("x")) == 65
    assert EXIT_CODES[-1][1] == 70
