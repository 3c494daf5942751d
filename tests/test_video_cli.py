"""Videos through the CLI, end to end on real files and a real SQLite store: ``hashmatch hash``
on folders of images and videos, ``lists import`` of its output and of Meta's text files,
``lists export`` round trips, ``hashmatch match`` on a video, and the exit codes.

``hashmatch hash`` with worker processes and the agency's pipe into ``lists import`` run as
subprocesses, as ``test_cli_lists`` runs them; the other commands run in this process through
the same ``main()`` (parser, settings from the environment, exit status), because each store
command costs a second of imports as a subprocess.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import DATA, encode, hashmatch_env, natural_image, run_hashmatch
from hashmatch.cli import main
from hashmatch.cli.hash import LISTING_INTERVALS
from hashmatch.signals.vpdq import (
    format_frames,
    frames_digest,
    hash_video,
    parse_frames,
    unpack_frames,
)
from videos import downscaled, panning_video

SIZE = (160, 120)
CONFORMANCE = DATA / "vpdq-conformance" / "expected"


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: bytes
    stderr: bytes


class Hashmatch:
    """``hashmatch ARGS`` in this process, against one data folder."""

    def __init__(
        self, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capture: pytest.CaptureFixture[bytes]
    ) -> None:
        self.data_dir = data_dir
        self._monkeypatch = monkeypatch
        self._capture = capture

    def __call__(self, *args: str | Path, stdin: bytes = b"") -> Ran:
        self._monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        self._capture.readouterr()
        try:
            status = main([str(arg) for arg in args])
        except SystemExit as exit_:  # argparse's usage errors
            status = exit_.code if isinstance(exit_.code, int) else 2
        out = self._capture.readouterr()
        return Ran(status, out.out, out.err)

    def subprocess(self, *args: str | Path, stdin: bytes | None = None) -> Ran:
        done = run_hashmatch(*args, env=hashmatch_env(data_dir=self.data_dir), stdin=stdin)
        return Ran(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def hm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> Iterator[Hashmatch]:
    data_dir = tmp_path / "index"
    for name in [name for name in os.environ if name.startswith("HASHMATCH_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HASHMATCH_DATA_DIR", str(data_dir))
    run = Hashmatch(data_dir, monkeypatch, capsysbinary)
    ok(run("lists", "create", "videos", "--category", "csam", "--owner", "org"))
    yield run


def ok(result: Ran) -> Ran:
    assert result.returncode == 0, result.stderr.decode()
    return result


def jsonl(output: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.decode().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two images and two videos (H.264 in MP4, MPEG-4 in Matroska), in a folder tree."""
    root = tmp_path_factory.mktemp("media")
    (root / "case").mkdir()
    (root / "a.jpg").write_bytes(encode(natural_image(240, 180, seed=1), "JPEG", quality=90))
    (root / "case" / "b.png").write_bytes(encode(natural_image(200, 150, seed=2), "PNG"))
    (root / "clip.mp4").write_bytes(panning_video(4, 10, seed=3, size=SIZE))
    (root / "case" / "other.mkv").write_bytes(
        panning_video(3, 10, seed=4, size=SIZE, container="matroska", codec="mpeg4")
    )
    return root


def meta_file(name: str = "doorknob-hd-no-bar.txt") -> Path:
    """One of Meta's expected vPDQ files (the project's copy of its conformance data)."""
    path = CONFORMANCE / name
    assert path.is_file(), f"vPDQ conformance data missing at {path}"
    return path


def exported(hm: Hashmatch, name: str) -> list[dict[str, object]]:
    rows = jsonl(ok(hm("lists", "export", name, "--format", "jsonl")).stdout)
    for row in rows:
        row.pop("added_at")
    return sorted(rows, key=lambda r: (str(r["algorithm"]), str(r["hash"])))


# --- hashmatch hash ---------------------------------------------------------------------------


def test_hash_folder_import_and_export_round_trip(media: Path, hm: Hashmatch) -> None:
    hashed = ok(hm.subprocess("hash", media, "-j", "2"))
    records = jsonl(hashed.stdout)
    by_file = {(Path(str(r["path"])).name, r["algorithm"]): r for r in records}
    assert sorted(by_file) == sorted(
        (name, algorithm)
        for name, algorithms in (
            ("a.jpg", ("pdq", "md5")),
            ("b.png", ("pdq", "md5")),
            ("clip.mp4", ("vpdq", "md5")),
            ("other.mkv", ("vpdq", "md5")),
        )
        for algorithm in algorithms
    )
    for name in ("clip.mp4", "other.mkv"):
        record = by_file[(name, "vpdq")]
        content = next(media.rglob(name)).read_bytes()
        expected = hash_video(content, seconds_per_hash=LISTING_INTERVALS).frames
        assert record["frames"] == format_frames(expected).splitlines()
        assert record["hash"] == frames_digest(expected).hex()
        assert record["bytes"] == len(content)
        assert record["fps"] == pytest.approx(10)
        assert isinstance(record["duration"], float) and record["duration"] > 2

    # The agency's pipe, as processes.
    piped = ok(hm.subprocess("lists", "import", "videos", "-", stdin=hashed.stdout))
    assert (json.loads(piped.stdout)["added"], json.loads(piped.stdout)["rejected"]) == (8, 0)

    # What the store holds: every frame, as hashed.
    from hashmatch.store import Store, database_url

    store = Store.open(database_url(hm.data_dir, None))
    try:
        videos = [e for e in store.entries.listed("videos") if e.hash.algorithm.name == "vpdq"]
    finally:
        store.close()
    assert len(videos) == 2
    for entry in videos:
        record = next(r for r in records if r["hash"] == entry.hash.hex)
        lines = record["frames"]
        assert entry.frames is not None and isinstance(lines, list)
        assert unpack_frames(entry.frames) == parse_frames("\n".join(lines))

    # Export, import into another list: identical entries, frames included.
    first = exported(hm, "videos")
    assert sum(1 for r in first if r["algorithm"] == "vpdq" and r["frames"]) == 2
    ok(hm("lists", "create", "copy", "--category", "csam", "--owner", "org"))
    jsonl_export = ok(hm("lists", "export", "videos", "--format", "jsonl")).stdout
    again = json.loads(ok(hm("lists", "import", "copy", "-", stdin=jsonl_export)).stdout)
    assert (again["added"], again["rejected"]) == (8, 0)
    assert exported(hm, "copy") == first

    # CSV cannot carry frames: the videos are left out, and the operator is told.
    as_csv = ok(hm("lists", "export", "videos", "--format", "csv"))
    assert b"vpdq" not in as_csv.stdout and len(as_csv.stdout.splitlines()) == 1 + 6
    assert b"2 video entries (vpdq) were left out" in as_csv.stderr


def test_hash_algorithms_apply_where_they_can(media: Path, hm: Hashmatch) -> None:
    videos_only = ok(hm("hash", media, "-a", "vpdq", "-j", "1"))
    names = {Path(str(r["path"])).name for r in jsonl(videos_only.stdout)}
    assert names == {"clip.mp4", "other.mkv"}
    assert b"2 skipped" in videos_only.stderr
    digests = jsonl(ok(hm("hash", media, "-a", "pdq,sha256", "-j", "1")).stdout)
    assert sorted((Path(str(r["path"])).suffix, r["algorithm"]) for r in digests) == [
        (".jpg", "pdq"),
        (".jpg", "sha256"),
        (".mkv", "sha256"),
        (".mp4", "sha256"),
        (".png", "pdq"),
        (".png", "sha256"),
    ]
    as_csv = ok(hm("hash", media, "-f", "csv", "-j", "1"))
    assert b",vpdq," not in as_csv.stdout and b"clip.mp4,md5," in as_csv.stdout
    assert b"the vpdq frames of 2 videos were not written" in as_csv.stderr


def test_seconds_per_hash(media: Path, hm: Hashmatch) -> None:
    clip = media / "clip.mp4"

    def numbers(*options: str) -> list[int]:
        (record,) = jsonl(ok(hm("hash", clip, "-a", "vpdq", *options)).stdout)
        frames = record["frames"]
        assert isinstance(frames, list)
        return [int(line.split(",")[0]) for line in frames]

    assert numbers("--seconds-per-hash", "0") == list(range(40))
    assert numbers("--seconds-per-hash", "1") == [0, 10, 20, 30]  # vPDQ's own
    assert numbers("--seconds-per-hash", "1,0.5") == list(range(0, 40, 5))
    # The listing default: a second and a tenth of a second apart (every frame at 10 fps).
    assert numbers() == list(range(40))
    refused = hm("hash", clip, "--seconds-per-hash", "-1")
    assert refused.returncode == 2 and b"seconds per hash" in refused.stderr


def test_vpdq_format_writes_metas_text(media: Path, hm: Hashmatch, tmp_path: Path) -> None:
    clip = media / "clip.mp4"
    single = ok(hm("hash", clip, "-f", "vpdq")).stdout.decode()
    listed = hash_video(clip.read_bytes(), seconds_per_hash=LISTING_INTERVALS)
    assert parse_frames(single) == listed.frames

    several = hm("hash", media, "-f", "vpdq")
    assert several.returncode == 2 and b"-o DIR" in several.stderr

    out = tmp_path / "frames"
    written = ok(hm("hash", media, "-f", "vpdq", "-o", out, "-j", "1"))
    assert sorted(p.name for p in out.iterdir()) == ["clip.vpdq.txt", "other.vpdq.txt"]
    assert (out / "clip.vpdq.txt").read_text() == single
    assert len(written.stdout.splitlines()) == 2

    files = sorted(out.iterdir())
    report = json.loads(ok(hm("lists", "import", "videos", *files)).stdout)
    assert (report["added"], report["rejected"]) == (2, 0)
    assert {r["reference"] for r in exported(hm, "videos")} == {"clip", "other"}

    image_only = hm("hash", media / "a.jpg", "-f", "vpdq")
    assert image_only.returncode == 1 and b"no video" in image_only.stderr


def test_bad_videos_are_error_records(media: Path, hm: Hashmatch, tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    good = (media / "clip.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(good[: len(good) // 3])
    (folder / "fine.mp4").write_bytes(good)
    result = hm("hash", folder, "-j", "1")
    assert result.returncode == 1
    records = jsonl(result.stdout)
    errors = {Path(str(r["path"])).name: r["error"] for r in records if "error" in r}
    assert set(errors) == {"cut.mp4"}
    assert {Path(str(r["path"])).name for r in records if "hash" in r} == {"fine.mp4"}
    assert b"cut.mp4" in result.stderr and b"1 failed" in result.stderr

    flash = tmp_path / "old.flv"  # video-like, refused by name; its bytes still have digests
    flash.write_bytes(b"FLV\x01\x05" + bytes(200))
    refused = hm("hash", flash)
    assert refused.returncode == 1
    assert jsonl(refused.stdout)[0]["error"] == {
        "code": "unsupported_media",
        "message": "Flash video (FLV) is not a supported video format",
    }
    digests = jsonl(ok(hm("hash", flash, "-a", "md5")).stdout)
    assert [r["algorithm"] for r in digests] == ["md5"]

    capped = hm("hash", folder / "fine.mp4", "--max-video-bytes", "1000")
    assert capped.returncode == 1
    (record,) = jsonl(capped.stdout)
    assert record["error"] == {
        "code": "media_too_large",
        "message": f"{len(good)} bytes is over the limit of 1000 bytes",
    }


# --- lists import of Meta's text files, and malformed videos ---------------------------------


def test_import_metas_text_files(hm: Hashmatch, tmp_path: Path) -> None:
    source = meta_file()
    first = tmp_path / source.name
    shutil.copy(source, first)
    lines = source.read_text().splitlines()
    second = tmp_path / "second.vpdq.txt"
    second.write_text("\n".join(lines[:40]) + "\n")
    report = json.loads(ok(hm("lists", "import", "videos", first, second)).stdout)
    assert (report["added"], report["rejected"]) == (2, 0)
    rows = {r["reference"]: r for r in exported(hm, "videos")}
    assert set(rows) == {"doorknob-hd-no-bar", "second"}
    whole = rows["doorknob-hd-no-bar"]["frames"]
    assert isinstance(whole, list) and parse_frames("\n".join(whole)) == parse_frames(
        source.read_text()
    )
    assert rows["second"]["hash"] == frames_digest(parse_frames("\n".join(lines[:40]))).hex()

    third = tmp_path / "third.txt"
    third.write_text("\n".join(lines[:20]))
    named = json.loads(ok(hm("lists", "import", "videos", third, "--reference", "case-7")).stdout)
    assert named["added"] == 1
    assert "case-7" in {r["reference"] for r in exported(hm, "videos")}
    both = hm("lists", "import", "videos", first, third, "--reference", "x")
    assert both.returncode == 2 and b"--reference" in both.stderr


def test_malformed_videos_import_nothing_of_themselves(hm: Hashmatch, tmp_path: Path) -> None:
    lines = meta_file().read_text().splitlines()
    broken = tmp_path / "broken.txt"
    broken.write_text("\n".join([*lines[:10], lines[10].replace(",", ";"), *lines[11:]]))
    image = {"algorithm": "md5", "hash": "d41d8cd98f00b204e9800998ecf8427e"}
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(
        "\n".join(
            json.dumps(record)
            for record in (
                image,
                {"algorithm": "vpdq", "frames": [*lines[:3], "3,100,xyz,0.100"]},
                {"algorithm": "vpdq", "frames": lines[:5], "hash": "0" * 64},
            )
        )
    )
    strict = hm("lists", "import", "videos", broken, mixed, "--strict")
    assert strict.returncode == 65
    assert json.loads(strict.stdout)["rejected"] == 3
    assert json.loads(ok(hm("lists", "show", "videos")).stdout)["live_entries"] == 0

    lenient = json.loads(ok(hm("lists", "import", "videos", broken, mixed)).stdout)
    assert (lenient["added"], lenient["rejected"]) == (1, 3)
    (line_1, reason_1), (line_2, reason_2), (line_3, reason_3) = [
        (e["line"], e["reason"]) for e in lenient["errors"]
    ]
    assert line_1 == 11 and reason_1.startswith(f"{broken}: line 11: ")
    assert reason_1.endswith("; the video is not imported")
    assert line_2 == 2 and reason_2.startswith(f"{mixed}: frames[3]: pdq hash must be")
    assert line_3 == 3 and "not the digest of the frames" in reason_3
    assert [r["algorithm"] for r in exported(hm, "videos")] == ["md5"]

    csv_video = hm(
        "lists", "import", "videos", "-", stdin=b"algorithm,hash\nvpdq," + b"a" * 64 + b"\n"
    )
    (error,) = json.loads(csv_video.stdout)["errors"]
    assert error == {"line": 2, "reason": "vpdq frame sets go in JSONL or Meta's text form"}


# --- hashmatch match --------------------------------------------------------------------------


def test_match_a_video(media: Path, hm: Hashmatch, tmp_path: Path) -> None:
    listed = media / "clip.mp4"
    ok(hm("lists", "import", "videos", "-", stdin=ok(hm("hash", listed)).stdout))
    copy = tmp_path / "copy.mkv"  # smaller, another codec and container: vPDQ only
    copy.write_bytes(
        panning_video(
            4, 10, seed=3, size=SIZE, container="matroska", codec="mpeg4", edit=downscaled(0.75)
        )
    )
    unrelated = media / "case" / "other.mkv"
    results = json.loads(ok(hm("match", listed, copy, unrelated, "--json")).stdout)
    same, similar, other = results
    assert same["match"] and {m["algorithm"] for m in same["matches"]} == {"vpdq", "md5"}
    assert same["video"]["container"] == "MP4" and same["video"]["frames_hashed"] == 4
    assert similar["match"] and [m["algorithm"] for m in similar["matches"]] == ["vpdq"]
    assert similar["video"]["container"] == "MATROSKA"
    assert similar["matches"][0]["video"]["query_percent"] >= 80
    assert not other["match"] and other["matches"] == []
    text = ok(hm("match", copy)).stdout.decode()
    assert text.startswith("MATCH") and " vpdq " in text and "query=" in text

    corrupt = tmp_path / "cut.mp4"
    corrupt.write_bytes(listed.read_bytes()[:2000])
    failed = hm("match", corrupt)
    assert failed.returncode == 65 and str(corrupt).encode() in failed.stderr


def test_lists_set_their_video_rule(hm: Hashmatch) -> None:
    created = ok(
        hm(
            "lists",
            "create",
            "whole-copies",
            "--category",
            "ncii",
            "--owner",
            "org",
            "--vpdq-listed-percent",
            "80",
            "--vpdq-threshold",
            "25",
        )
    )
    thresholds = json.loads(created.stdout)["thresholds"]
    assert thresholds["vpdq_listed_percent"] == 80 and thresholds["vpdq_query_percent"] == 50
    assert thresholds["vpdq"] == 25
    refused = hm(
        "lists", "create", "bad", "--category", "ncii", "--owner", "org",
        "--vpdq-query-percent", "101",
    )  # fmt: skip
    assert refused.returncode != 0 and b"percentage" in refused.stderr
