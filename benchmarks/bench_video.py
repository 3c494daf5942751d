"""Videos (vPDQ) on real footage: hashing speed, robustness at the default rule, memory, HTTP.

Four parts, each printing its settings and then one JSON object (``--part all``: one object
holding the four). Every figure stands beside a baseline measured in the same run, as ratios:
the machine's cores are shared and absolute times drift.

- ``speed``: ``hash_video`` at one hash a second on the 720p/1080p H.264 videos of the corpus
  and on Meta's conformance videos, per CPU-second and per wall-second, beside the *decode
  floor* (PyAV decoding the same stream with the same threading, no RGB conversion, no hash)
  and beside Meta's own ``vpdq`` package when it is installed in a separate venv
  (``~/.cache/hashmatch-bench/vpdq-venv``; see :data:`VPDQ_HELP`), whose hashes are compared
  frame by frame with ours; ours are also compared with Meta's expected conformance hashes.
- ``robustness``: every real video and conformance rendition is listed as the service lists it
  (``hash_video`` at ``hashmatch hash``'s ``LISTING_INTERVALS``, 1 s and 0.1 s, in a SQLite
  store whose lists have the store's default thresholds) and queried, hashed once a second as
  the service hashes an upload, by its transforms (``video_transforms.py``) through
  ``lookup_video`` over the follower's state, the service's own path. Recall per transform at
  the default rule, false matches between distinct videos (groups of the same content never
  count as distinct), the tail of frame distances between distinct videos, recall at other
  ``vpdq_query_percent`` values, and the cross-modal pair: a still of each video against the
  listed video, and listed photos found inside a video made of them. One query is a
  compilation (``inside_longer``: the video whole between stretches of other listed videos):
  its recall with and without the rule's containment share, and matches on its fillers
  (true matches, reported apart). Baseline: python-threatexchange's rule (query 80%, listed
  0%, no containment share). Beside them: a list whose videos are hashed at every frame
  (queries stay at one a second), and Meta's own renditions of one scene (logo, grey, sepia,
  bars, SD/HD) queried by each other.
  With ``--listed-seconds-per-hash 1,0.5,0.25,0.1,0``: the originals listed at each of these
  densities too (taken from their every-frame hashes by ``hash_video``'s own sampling rule),
  queries still at one hash a second, and for each density the recall per transform and of the
  still, false matches between distinct videos, the frames the index holds (distinct, over the
  quality cut) beside the 1 s listing's, and the closest frames of distinct videos. The default
  listing stays the service's (``LISTING_INTERVALS``); these lists are measured beside it.
- ``memory``: peak RSS of a child process hashing a long 1080p video (the file held in memory,
  as the service holds an upload) at several lengths, beside its RSS before and the file's
  bytes; the model is peak = start + file + a constant.
- ``http``: ``POST /v1/match`` of a 30-second 720p clip to a real ``hashmatch serve`` holding
  1,000 listed videos of 1,000 random frames each (1M frames) plus real listed videos; p50 and
  p99, beside ``hash_video`` alone in this process, the decode floor, the in-process search
  and the match-only route (``/v1/match/hashes`` with the clip's frames).

    python benchmarks/bench_video.py [--quick] [--part speed|robustness|memory|http|all]
        [--jobs N] [--memory-minutes 1,5,20] [--listed-seconds-per-hash 1,0.5,0] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import functools
import io
import json
import multiprocessing
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus
import video_transforms
from bench_robustness import _original_bytes, tail_threshold
from hashmatch.cli.hash import LISTING_INTERVALS
from hashmatch.errors import HashmatchError
from hashmatch.hashsets.read import HashRow
from hashmatch.matching.follower import Follower
from hashmatch.matching.lookup import lookup, lookup_video
from hashmatch.matching.policy import VIDEO_PERCENTS
from hashmatch.matching.state import MatchState
from hashmatch.matching.verdict import Verdict
from hashmatch.matching.video import MIN_CONTAINED_FRAMES, QueryFrames
from hashmatch.media.video import DEFAULT_VIDEO_LIMITS, VideoLimits
from hashmatch.signals import PDQ, VPDQ, Hash, hash_bytes, query_hashes
from hashmatch.signals.vpdq import (
    QUALITY_CUTOFF,
    FrameHash,
    format_frames,
    frames_digest,
    pack_frames,
)
from hashmatch.signals.vpdq import hash_video as _hash_video
from hashmatch.store import Role, Store, database_url
from video_transforms import FILLER_SECONDS, NOT_DESIGNED_FOR, TRANSFORMS

SEED = 20261201
#: Queries (and every part but the robustness part's listing): one hash a second, the
#: service's sampling of an upload.
SECONDS_PER_HASH = 1.0
#: The robustness part's listing: ``hashmatch hash``'s default, the union of these intervals.
LISTED_SECONDS_PER_HASH: tuple[float, ...] = tuple(LISTING_INTERVALS)
#: The compilation query: the video whole between other videos (not one of ``TRANSFORMS``:
#: it needs filler footage, :func:`filler_candidates`).
INSIDE_LONGER = "inside_longer"
QUERY_TRANSFORMS = (*TRANSFORMS, INSIDE_LONGER)
BENCH_CACHE = Path(
    os.environ.get("HASHMATCH_BENCH_CACHE", Path.home() / ".cache" / "hashmatch-bench")
)
CONFORMANCE = corpus.SHARED / "conformance" / "vpdq"
VPDQ_VENV = BENCH_CACHE / "vpdq-venv"
VPDQ_HELP = (
    "apt-get install -y libavcodec-dev libavformat-dev libavutil-dev libswscale-dev "
    "libavdevice-dev libavfilter-dev libswresample-dev pkg-config cmake g++; "
    f"python3 -m venv {VPDQ_VENV}; {VPDQ_VENV}/bin/pip install vpdq==0.2.5"
)
OWNER = "bench"

#: Files of the same content (other containers, sizes, cuts, renditions): never a distinct
#: pair. From the corpus list's notes and the conformance README; ``world.mp4`` was found by
#: measurement (its first five seconds are ``b.mp4``'s, frame hashes identical).
SAME_CONTENT: dict[str, tuple[str, ...]] = {
    "movie-hello": ("forensics-samples-files__movie-hello.*",),
    "gradio-earth": ("x__b.mp4", "x__b.avi", "x__muted_b.mp4", "x__world.mp4"),
    "carphone": ("x__carphone_*",),
    "perception-v2": ("x__v2.m4v", "x__v2s.mov"),
    "megamind": ("opencv-doc__Megamind*",),
    "chair": ("chair-*",),
    "pattern": ("pattern-*",),
}


def hash_video(data: bytes, limits: VideoLimits = DEFAULT_VIDEO_LIMITS) -> tuple[FrameHash, ...]:
    return _hash_video(data, seconds_per_hash=SECONDS_PER_HASH, limits=limits).frames


def list_video(data: bytes) -> tuple[FrameHash, ...]:
    """A video's frames as the service lists them (``LISTING_INTERVALS``)."""
    return _hash_video(data, seconds_per_hash=LISTED_SECONDS_PER_HASH).frames


# --- the videos -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Video:
    name: str
    path: Path
    group: str
    origin: str  # "corpus" or "conformance"
    width: int
    height: int
    codec: str
    frames: int  # decoded frames (the corpus manifest's count, or the stream's)
    seconds: float

    @property
    def cost(self) -> float:
        """Pixels to decode: what a transform's time follows."""
        return self.frames * self.width * self.height


def group_of(name: str) -> str:
    for group, patterns in SAME_CONTENT.items():
        if any(fnmatch.fnmatch(name, pattern) for pattern in patterns):
            return group
    return Path(name).stem


def _stream_facts(path: Path) -> tuple[str, int, int, int, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        seconds = (
            float(stream.duration * stream.time_base)
            if stream.duration and stream.time_base
            else (container.duration or 0) / 1e6
        )
        frames = stream.frames or round(seconds * float(stream.average_rate or 25))
        context = stream.codec_context
        return context.name, context.width, context.height, frames, seconds


def all_videos() -> list[Video]:
    """The corpus's real videos (those fetched into the cache) and the conformance set."""
    found = []
    folder = corpus.video_dir()
    with (folder / "manifest.tsv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle, delimiter="\t") if row.get("file")]
    for row in rows:
        path = folder / row["file"]
        if path.is_file():
            codec, width, height, frames, seconds = _stream_facts(path)
            frames = int(row["frames_decoded"] or frames)
            found.append(
                Video(
                    row["file"],
                    path,
                    group_of(row["file"]),
                    "corpus",
                    width,
                    height,
                    codec,
                    frames,
                    seconds,
                )
            )
    for path in sorted((CONFORMANCE / "videos").glob("*.mp4")):
        codec, width, height, frames, seconds = _stream_facts(path)
        found.append(
            Video(
                path.name,
                path,
                group_of(path.name),
                "conformance",
                width,
                height,
                codec,
                frames,
                seconds,
            )
        )
    if not found:
        sys.exit(f"no videos in {folder} nor in {CONFORMANCE}/videos")
    return found


def filler_candidates(video: Video, videos: Sequence[Video]) -> list[Video]:
    """Filler footage for ``video``'s compilation: one video of each other group (chosen at
    random, seeded by the video's name), the groups in a seeded random order; the compilation
    takes them in turn until its stretches are full."""
    rng = random.Random(f"{SEED}/{video.name}")
    groups: dict[str, list[Video]] = {}
    for other in sorted(videos, key=lambda v: v.name):
        if other.group != video.group:
            groups.setdefault(other.group, []).append(other)
    order = sorted(groups)
    rng.shuffle(order)
    return [rng.choice(groups[group]) for group in order]


def cheapest_per_group(videos: Sequence[Video]) -> list[Video]:
    best: dict[str, Video] = {}
    for video in videos:
        if video.group not in best or video.cost < best[video.group].cost:
            best[video.group] = video
    return sorted(best.values(), key=lambda v: v.name)


# --- speed ------------------------------------------------------------------------------------


def decode_floor(data: bytes) -> int:
    """PyAV decoding every frame of the video stream from memory, with the threading
    ``hashmatch.media.video`` uses, and nothing else: no RGB conversion, no hash."""
    from hashmatch.media import video as media_video

    count = 0
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        configure = getattr(media_video, "configure_decoder", None)
        if configure is not None:
            configure(stream)
        else:
            stream.thread_type = getattr(media_video, "THREAD_TYPE", "AUTO")
            stream.thread_count = getattr(media_video, "THREAD_COUNT", 0)
        for _ in container.decode(stream):
            count += 1
    return count


META_SCRIPT = r"""
import json, sys, time, vpdq
files, seconds = json.loads(sys.argv[1]), float(sys.argv[2])
out = {}
for path in files:
    cpu, wall = time.process_time(), time.perf_counter()
    features = vpdq.computeHash(path, seconds_per_hash=seconds)
    out[path] = {
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "frames": [[f.frame_number, f.quality, f.hex, f.timestamp] for f in features],
    }
print(json.dumps(out))
"""


def meta_python() -> Path | None:
    python = VPDQ_VENV / "bin" / "python"
    return python if python.is_file() else None


def meta_vpdq_status() -> dict[str, Any]:
    python = meta_python()
    if python is None:
        return {"available": False, "why": f"no venv at {VPDQ_VENV}; to make one: {VPDQ_HELP}"}
    probe = subprocess.run(
        [str(python), "-c", "import vpdq, importlib.metadata as m; print(m.version('vpdq'))"],
        capture_output=True,
        text=True,
    )
    if probe.returncode:
        return {"available": False, "why": probe.stderr.strip().splitlines()[-1:]}
    return {"available": True, "version": probe.stdout.strip(), "python": str(python)}


def run_meta(paths: Sequence[Path]) -> dict[str, dict[str, Any]]:
    python = meta_python()
    assert python is not None
    done = subprocess.run(
        [
            str(python),
            "-c",
            META_SCRIPT,
            json.dumps([str(p) for p in paths]),
            str(SECONDS_PER_HASH),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(done.stdout))


def _timed(call: Callable[[], object]) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


def size_class(video: Video) -> str:
    short = min(video.width, video.height)
    return "1080p" if short >= 1080 else "720p" if short >= 720 else "sd"


def _words(codes: Sequence[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(codes), dtype=np.uint8).reshape(len(codes), 32)


def _distance(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def agreement(ours: Sequence[FrameHash], theirs: dict[int, tuple[int, bytes]]) -> dict[str, Any]:
    """Our frames against another implementation's, by frame number (Meta's pass rule: the
    same frames, and where both have quality >= 50 a distance under 31)."""
    mine = {frame.number: frame for frame in ours}
    common = sorted(set(mine) & set(theirs))
    both = [n for n in common if mine[n].quality >= QUALITY_CUTOFF and theirs[n][0] >= 50]
    distances = [_distance(mine[n].pdq, theirs[n][1]) for n in both]
    return {
        "frames_ours": len(mine),
        "frames_theirs": len(theirs),
        "frames_common": len(common),
        "compared": len(distances),
        "mean_bits": statistics.fmean(distances) if distances else None,
        "max_bits": max(distances) if distances else None,
        "under_31": sum(d < 31 for d in distances),
    }


def expected_frames(name: str) -> dict[int, tuple[int, bytes]] | None:
    """Meta's expected hashes of a conformance video (every frame, full resolution)."""
    path = CONFORMANCE / "expected" / f"{Path(name).stem}.txt"
    if not path.is_file():
        return None
    frames = {}
    for line in path.read_text().split():
        number, quality, code, _ = line.split(",")
        frames[int(number)] = (int(quality), bytes.fromhex(code))
    return frames


def part_speed(quick: bool) -> dict[str, Any]:
    videos = [
        v
        for v in all_videos()
        if v.origin == "conformance" or (v.codec == "h264" and min(v.width, v.height) >= 720)
    ]
    if quick:  # one video of each size class
        first_of_class: dict[str, Video] = {}
        for video in sorted(videos, key=lambda v: v.cost):
            first_of_class.setdefault(size_class(video), video)
        videos = sorted(first_of_class.values(), key=lambda v: v.name)
    rounds = 1 if quick else 3
    meta = meta_vpdq_status()
    datas = {v.name: v.path.read_bytes() for v in videos}
    pipelines: dict[str, Callable[[Video], Any]] = {
        "hashmatch": lambda v: hash_video(datas[v.name]),
        "decode_floor": lambda v: decode_floor(datas[v.name]),
    }
    pipeline_names = [*pipelines, *(["meta_vpdq"] if meta["available"] else [])]
    settings: dict[str, Any] = {
        "part": "speed",
        "videos": [v.name for v in videos],
        "rounds": rounds,
        "seconds_per_hash": SECONDS_PER_HASH,
        "pipelines": pipeline_names,
        "meta_vpdq": meta,
        "cpus": os.cpu_count(),
        "pyav": av.__version__,
        "ffmpeg": {k: ".".join(map(str, v)) for k, v in av.library_versions.items()},
    }
    print("settings:", json.dumps(settings), flush=True)
    for call in pipelines.values():  # warm-up: imports, codecs, allocator
        call(videos[0])
    if meta["available"]:
        run_meta([videos[0].path])
    times: dict[str, dict[str, list[tuple[float, float]]]] = {
        name: {v.name: [] for v in videos} for name in pipeline_names
    }
    ours: dict[str, tuple[FrameHash, ...]] = {}
    theirs: dict[str, list[list[Any]]] = {}
    for round_index in range(rounds):
        names = list(pipeline_names)
        names = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in names:
            if name == "meta_vpdq":
                for path, run in run_meta([v.path for v in videos]).items():
                    times[name][Path(path).name].append((run["wall"], run["cpu"]))
                    theirs[Path(path).name] = run["frames"]
                continue
            for video in videos:
                times[name][video.name].append(_timed(functools.partial(pipelines[name], video)))
    for video in videos:
        ours[video.name] = hash_video(datas[video.name])

    def median(name: str, video: Video) -> tuple[float, float]:
        runs = times[name][video.name]
        return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)

    per_video: dict[str, Any] = {}
    for video in videos:
        row: dict[str, Any] = {
            "size": f"{video.width}x{video.height}",
            "class": size_class(video),
            "video_seconds": round(video.seconds, 3),
            "frames_hashed": len(ours[video.name]),
        }
        for name in pipeline_names:
            wall, cpu = median(name, video)
            row[name] = {
                "wall_s": round(wall, 4),
                "cpu_s": round(cpu, 4),
                "x_realtime_wall": round(video.seconds / wall, 2),
                "x_realtime_per_core": round(video.seconds / cpu, 2),
            }
        row["hashmatch_vs_floor_cpu"] = round(
            row["hashmatch"]["cpu_s"] / row["decode_floor"]["cpu_s"], 3
        )
        row["hashmatch_vs_floor_wall"] = round(
            row["hashmatch"]["wall_s"] / row["decode_floor"]["wall_s"], 3
        )
        if video.name in theirs:
            meta_frames = {n: (q, bytes.fromhex(h)) for n, q, h, _ in theirs[video.name]}
            row["meta_vs_hashmatch_cpu"] = round(
                row["meta_vpdq"]["cpu_s"] / row["hashmatch"]["cpu_s"], 3
            )
            row["hashes_vs_meta_vpdq"] = agreement(ours[video.name], meta_frames)
        expected = expected_frames(video.name)
        if expected is not None:
            row["hashes_vs_meta_expected"] = agreement(ours[video.name], expected)
        per_video[video.name] = row

    by_class: dict[str, Any] = {}
    for label in sorted({size_class(v) for v in videos}):
        chosen = [v for v in videos if size_class(v) == label]
        seconds = sum(v.seconds for v in chosen)
        summary: dict[str, Any] = {"videos": len(chosen), "video_seconds": round(seconds, 2)}
        for name in pipeline_names:
            wall = sum(median(name, v)[0] for v in chosen)
            cpu = sum(median(name, v)[1] for v in chosen)
            summary[name] = {
                "x_realtime_wall": round(seconds / wall, 2),
                "x_realtime_per_core": round(seconds / cpu, 2),
            }
        summary["hashmatch_vs_floor_cpu"] = round(
            summary["decode_floor"]["x_realtime_per_core"]
            / summary["hashmatch"]["x_realtime_per_core"],
            3,
        )
        summary["hashmatch_vs_floor_wall"] = round(
            summary["decode_floor"]["x_realtime_wall"] / summary["hashmatch"]["x_realtime_wall"], 3
        )
        if "meta_vpdq" in summary:
            summary["hashmatch_vs_meta_throughput_per_core"] = round(
                summary["hashmatch"]["x_realtime_per_core"]
                / summary["meta_vpdq"]["x_realtime_per_core"],
                3,
            )
        by_class[label] = summary
    hash_checks = [
        row["hashes_vs_meta_vpdq"] for row in per_video.values() if "hashes_vs_meta_vpdq" in row
    ]
    result: dict[str, Any] = {
        "settings": settings,
        "by_class": by_class,
        "targets": {"720p_x_realtime_per_core": ">= 10", "hashmatch_vs_floor": "<= 1.3"},
        "per_video": per_video,
    }
    if hash_checks:
        result["hashes_vs_meta_vpdq"] = {
            "videos": len(hash_checks),
            "same_frame_numbers": sum(
                c["frames_ours"] == c["frames_theirs"] == c["frames_common"] for c in hash_checks
            ),
            "frames_compared": sum(c["compared"] for c in hash_checks),
            "frames_under_31": sum(c["under_31"] for c in hash_checks),
            "max_bits": max((c["max_bits"] or 0) for c in hash_checks),
        }
    if not meta["available"]:
        result["meta_vpdq"] = meta
    return result


# --- robustness: hashing (in worker processes) ------------------------------------------------


def middle_still(data: bytes) -> bytes:
    """The frame nearest the middle of the video at its own size, as a JPEG of quality 80 (a
    screenshot posted as a photo)."""
    times = [moment for moment, _ in video_transforms.frames(data)]
    middle = times[len(times) // 2] if times else 0.0
    for moment, frame in video_transforms.frames(data):
        if moment >= middle:
            buffer = io.BytesIO()
            Image.fromarray(frame.to_ndarray(format="rgb24")).save(buffer, "JPEG", quality=80)
            return buffer.getvalue()
    raise ValueError("no frame decoded")


def hash_original(
    task: tuple[str, str, Sequence[str], bool, bool, Sequence[tuple[str, str]]],
) -> dict[str, Any]:
    """One video: its listed frames (as the service lists them, and every frame), its frames
    as a query (one a second, as the service hashes an upload), the frames of each of its
    transforms (the compilation's made with ``fillers``: name, path), and the query hashes of
    its still. A failure is recorded, not fatal."""
    name, path, transforms, still, every_frame, fillers = task
    data = Path(path).read_bytes()
    out: dict[str, Any] = {"name": name, "queries": {}, "errors": {}}
    try:
        out["frames"] = list_video(data)
        out["identity"] = hash_video(data)
        if every_frame:
            whole = _hash_video(data, seconds_per_hash=0)
            assert whole.info is not None, "hash_video of bytes has the video's info"
            out["every_frame"], out["fps"] = whole.frames, whole.info.fps
    except (HashmatchError, ValueError, av.FFmpegError) as exc:
        out["errors"]["original"] = f"{type(exc).__name__}: {exc}"
        return out
    for transform in transforms:
        try:
            if transform == INSIDE_LONGER:
                names = [filler for filler, _ in fillers]
                made = video_transforms.inside_longer(
                    data, [Path(filler).read_bytes() for _, filler in fillers]
                )
                out["queries"][transform] = hash_video(made.data)
                out["compilation"] = {
                    "fillers": [names[k] for k in made.fillers],
                    "seconds": [round(made.before, 2), round(made.video, 2), round(made.after, 2)],
                    "share": round(made.share, 3),
                }
            else:
                out["queries"][transform] = hash_video(TRANSFORMS[transform](data))
        except (HashmatchError, ValueError, av.FFmpegError) as exc:
            out["errors"][transform] = f"{type(exc).__name__}: {exc}"
    if still:
        try:
            out["still"] = query_hashes(middle_still(data))[1]
        except (HashmatchError, ValueError, av.FFmpegError, OSError) as exc:
            out["errors"]["still"] = f"{type(exc).__name__}: {exc}"
    return out


def hash_photo(task: tuple[int, str]) -> dict[str, Any]:
    """One photo: its listed PDQ (the service's image hashing of the photo as listed) and the
    frames of a 5-second video made of it."""
    index, path = task
    original = _original_bytes(Path(path))
    image = Image.open(io.BytesIO(original)).convert("RGB")
    shown = video_transforms.still_video(image, np.random.default_rng([SEED, index]))
    return {
        "name": Path(path).name,
        "code": hash_bytes(original, [PDQ])[0].value,
        "frames": hash_video(shown),
    }


# --- robustness: matching ---------------------------------------------------------------------

#: Lists holding every original, each with a rule: the store's defaults (``None``), and
#: (query %, listed %) pairs without the containment share (``vpdq_contained_percent`` 0: the
#: two percentages alone); python-threatexchange's rule (80, 0) is the named baseline.
RULES: dict[str, tuple[int, int] | None] = {
    "default": None,
    "any_frame": (0, 0),
    "q30": (30, 0),
    "q50": (50, 0),
    "q80_threatexchange": (80, 0),
    "q50_l50": (50, 50),
    "q80_l80": (80, 80),
}
BASELINE_RULE = "q80_threatexchange"
#: The default rule's two percentages without its containment share: what the rule's first
#: branch alone matches (a compilation is found by the share, not by these).
NO_CONTAINMENT = "default_without_containment"
#: A list at the default rule whose videos are hashed at every frame (``seconds_per_hash=0``)
#: instead of the default listing: queries stay at one a second, and each query frame then has a
#: listed frame within half a frame of it, whatever instant a clip or a still starts at.
EVERY_FRAME = "listed_every_frame"
LISTS = (*RULES, NO_CONTAINMENT, EVERY_FRAME)


def list_thresholds(rule: str) -> dict[str, int] | None:
    """The thresholds a list is created with (``None``: the store's defaults)."""
    if rule == NO_CONTAINMENT:
        return {"vpdq_contained_percent": 0}
    percents = RULES.get(rule)
    if percents is None:
        return None
    return {
        "vpdq_query_percent": percents[0],
        "vpdq_listed_percent": percents[1],
        "vpdq_contained_percent": 0,
    }


def build_store(
    folder: Path,
    videos: dict[str, tuple[FrameHash, ...]],
    every_frame: dict[str, tuple[FrameHash, ...]],
    photos: dict[str, bytes],
    more: dict[str, dict[str, tuple[FrameHash, ...]]] | None = None,
) -> tuple[Store, MatchState, dict[str, dict[str, int]]]:
    """A SQLite store with one list per rule, each holding every original (a video's
    reference is ``video:NAME``, a photo's ``photo:NAME``), the list of videos hashed at every
    frame, ``more`` lists of videos (name -> frames of each video) at the default rule, each
    with the photos too, and the follower's state."""
    store = Store.open(database_url(folder, None))
    thresholds = {}
    listings = {rule: every_frame if rule == EVERY_FRAME else videos for rule in LISTS}
    for rule, listing in (listings | (more or {})).items():
        given = list_thresholds(rule)
        store.lists.create(rule, owner=OWNER, category="csam", actor=OWNER, thresholds=given)
        thresholds[rule] = dict(store.lists.get(rule).thresholds)
        rows = [
            HashRow(1, Hash(VPDQ, frames_digest(frames)), f"video:{name}", (), pack_frames(frames))
            for name, frames in listing.items()
        ] + [HashRow(1, Hash(PDQ, code), f"photo:{name}") for name, code in photos.items()]
        report = store.entries.import_rows(rule, rows, actor=OWNER, strict=True)
        assert report.added == len(rows), report
    follower = Follower(store)
    follower.load()
    return store, follower.state, thresholds


@dataclass(frozen=True)
class Found:
    """What one query found in one list: each listed reference with its scores."""

    references: dict[str, dict[str, float]]


def by_list(verdict: Verdict, lists: Iterable[str]) -> dict[str, Found]:
    found: dict[str, dict[str, dict[str, float]]] = {}
    for hit in verdict.blocks:
        match = hit.match
        score: dict[str, float] = {"distance": match.distance}
        if match.video is not None:
            score |= {
                "query_percent": round(match.video.query_percent, 2),
                "listed_percent": round(match.video.listed_percent, 2),
                "query_coverage": round(match.video.query_coverage, 2),
                "listed_coverage": round(match.video.listed_coverage, 2),
                "query_frames": match.video.query_frames,
                "query_kept": match.video.query_kept,
                "listed_frames": match.video.listed_frames,
                "listed_kept": match.video.listed_kept,
                "query_seconds": match.video.query_seconds,
                "query_seconds_kept": match.video.query_seconds_kept,
                "listed_seconds": match.video.listed_seconds,
                "listed_seconds_kept": match.video.listed_seconds_kept,
            }
        found.setdefault(match.list, {})[match.reference or ""] = score
    return {rule: Found(found.get(rule, {})) for rule in lists}


def group_of_reference(reference: str) -> str:
    kind, _, name = reference.partition(":")
    return group_of(name) if kind == "video" else reference


@dataclass
class Outcome:
    query: str  # what was queried: "NAME/transform", "NAME/still", "photo:NAME/video"
    kind: str  # the transform (or "identity", "still", "photo_in_video")
    own: str  # the reference it should find
    group: str  # its own group (references of the same group are not false)
    found: dict[str, Found]
    #: Groups of the other videos the query shows (a compilation's fillers): found, they are
    #: true matches of those videos, neither the query's own nor false.
    shown: frozenset[str] = frozenset()

    def recall(self, rule: str) -> bool:
        return self.own in self.found[rule].references

    def unrelated(self, reference: str) -> bool:
        """Whether ``reference`` is of content the query does not show (a false match)."""
        group = group_of_reference(reference)
        return group != self.group and group not in self.shown

    def false(self, rule: str) -> list[str]:
        return sorted(ref for ref in self.found[rule].references if self.unrelated(ref))

    def fillers_found(self, rule: str) -> list[str]:
        return sorted(
            ref
            for ref in self.found[rule].references
            if group_of_reference(ref) != self.group and not self.unrelated(ref)
        )


def query_all(
    state: MatchState,
    hashed: Sequence[dict[str, Any]],
    photos: Sequence[dict[str, Any]],
    names: Sequence[str] = LISTS,
) -> list[Outcome]:
    lists = frozenset(names)
    outcomes = []

    def video_query(frames: Sequence[FrameHash]) -> dict[str, Found]:
        verdict = lookup_video(state, QueryFrames.of(frames), organisation=OWNER, lists=lists)
        return by_list(verdict, lists)

    for video in hashed:
        if "frames" not in video or "identity" not in video:
            continue
        own, group = f"video:{video['name']}", group_of(video["name"])
        outcomes.append(
            Outcome(
                f"{video['name']}/identity", "identity", own, group, video_query(video["identity"])
            )
        )
        for transform, frames in video["queries"].items():
            shown = (
                frozenset(map(group_of, video["compilation"]["fillers"]))
                if transform == INSIDE_LONGER
                else frozenset()
            )
            outcomes.append(
                Outcome(
                    f"{video['name']}/{transform}",
                    transform,
                    own,
                    group,
                    video_query(frames),
                    shown,
                )
            )
        if "still" in video:
            (verdict,) = lookup(state, [video["still"]], organisation=OWNER, lists=lists)
            outcomes.append(
                Outcome(f"{video['name']}/still", "still", own, group, by_list(verdict, lists))
            )
    for photo in photos:
        own = f"photo:{photo['name']}"
        outcomes.append(
            Outcome(f"{own}/video", "photo_in_video", own, own, video_query(photo["frames"]))
        )
    return outcomes


def rule_table(outcomes: Sequence[Outcome], rule: str, hashable: set[str]) -> dict[str, Any]:
    """Recall per kind of query and false matches, at one list's rule. Recall counts only
    queries whose original has frames over the quality cut (the others cannot match)."""
    table: dict[str, Any] = {}
    for kind in sorted({o.kind for o in outcomes}):
        chosen = [o for o in outcomes if o.kind == kind and (o.own in hashable)]
        if not chosen:
            continue
        missed = [o.query for o in chosen if not o.recall(rule)]
        false = {o.query: o.false(rule) for o in chosen if o.false(rule)}
        table[kind] = {
            "queries": len(chosen),
            "recall": round(1 - len(missed) / len(chosen), 4),
            "false_matches": sum(len(v) for v in false.values()),
            "missed": missed,
            **({"false": false} if false else {}),
        }
    return table


def renditions(
    outcomes: Sequence[Outcome], listed: dict[str, tuple[FrameHash, ...]]
) -> dict[str, Any]:
    """Files of the same content (other renditions: Meta's logo, grey, sepia, bar and SD/HD
    versions of one scene; other containers and sizes of the corpus's videos) queried by one
    another, as listed: found at the default rule, and their scores when any frame matched."""
    out: dict[str, Any] = {}
    for outcome in outcomes:
        if outcome.kind != "identity":
            continue
        name = outcome.own.split(":", 1)[1]
        for other in sorted(listed):
            if other == name or group_of(other) != outcome.group:
                continue
            reference = f"video:{other}"
            score = outcome.found["any_frame"].references.get(reference)
            out.setdefault(outcome.group, {})[f"{name} -> {other}"] = {
                "default": reference in outcome.found["default"].references,
                "every_frame": reference in outcome.found[EVERY_FRAME].references,
                **(
                    {
                        "query_percent": score["query_percent"],
                        "query_coverage": score["query_coverage"],
                    }
                    if score
                    else {}
                ),
            }
    summary = {
        group: {
            "pairs": len(pairs),
            "found_at_default": sum(p["default"] for p in pairs.values()),
            "found_listed_every_frame": sum(p["every_frame"] for p in pairs.values()),
        }
        for group, pairs in out.items()
    }
    return {"summary": summary, "pairs": out}


def coverage(score: dict[str, float], side: str) -> float:
    """A side's (``query``, ``listed``) coverage, unrounded: the share of its seconds holding a
    matched frame, what the lists' rules judge (:func:`hashmatch.matching.video.meets_rule`);
    an image's hit (no video score) covers all."""
    if f"{side}_seconds_kept" not in score:
        return 100.0
    kept = score[f"{side}_seconds_kept"]
    return 100.0 * score[f"{side}_seconds"] / kept if kept else 0.0


def first_branch(score: dict[str, float] | None, rule: dict[str, int]) -> bool:
    """Whether a video score passes the rule's two percentages (its first branch), judged as
    :func:`hashmatch.matching.video.meets_rule` judges them: on each side's coverage."""
    if not score or "query_seconds_kept" not in score or not score["query_frames"]:
        return False
    return (
        coverage(score, "query") >= rule["vpdq_query_percent"]
        and coverage(score, "listed") >= rule["vpdq_listed_percent"]
    )


def containment(
    outcomes: Sequence[Outcome], hashable: set[str], rule: dict[str, int]
) -> dict[str, Any]:
    """Per kind of video query, the own original's matches at the default rule: how many the
    two percentages alone pass (the rule's first branch, on each side's coverage, judged on
    the ``any_frame`` list's scores), how many only the containment share finds, and the list
    without the share, which must agree with the first."""
    out: dict[str, Any] = {}
    for kind in sorted({o.kind for o in outcomes} - {"still", "photo_in_video"}):
        chosen = [o for o in outcomes if o.kind == kind and o.own in hashable]
        if not chosen:
            continue
        matched = sum(o.recall("default") for o in chosen)
        alone = sum(first_branch(o.found["any_frame"].references.get(o.own), rule) for o in chosen)
        without = sum(o.recall(NO_CONTAINMENT) for o in chosen)
        out[kind] = {
            "queries": len(chosen),
            "matched_at_default": matched,
            "by_the_two_percentages_alone": alone,
            "only_by_the_containment_share": matched - alone,
            "matched_by_list_without_containment": without,
            "agrees": without == alone,
        }
    return out


def compilation_report(
    outcomes: Sequence[Outcome],
    hashable: set[str],
    hashed: Sequence[dict[str, Any]],
    rule: dict[str, int],
) -> dict[str, Any]:
    """The compilation query (``inside_longer``) at the default rule: recall, recall by the
    two percentages alone, false matches (groups neither the video's nor its fillers'), its
    fillers found (true matches of those videos), the own scores, and each miss with its
    score."""
    chosen = [o for o in outcomes if o.kind == INSIDE_LONGER and o.own in hashable]
    if not chosen:
        return {}
    layout = {v["name"]: v["compilation"] for v in hashed if "compilation" in v}
    scores = {o.query: o.found["any_frame"].references.get(o.own) for o in chosen}
    alone = [o for o in chosen if first_branch(scores[o.query], rule)]
    matched = [o for o in chosen if o.recall("default")]

    def counts(score: dict[str, float] | None) -> dict[str, Any]:
        if not score or "query_kept" not in score:
            return {"any_frame": False}
        return {
            "query_coverage": score["query_coverage"],
            "query_seconds": f"{score['query_seconds']:g}/{score['query_seconds_kept']:g}",
            "listed_coverage": score["listed_coverage"],
            "listed_seconds": f"{score['listed_seconds']:g}/{score['listed_seconds_kept']:g}",
            "query_frames": f"{score['query_frames']:g}/{score['query_kept']:g}",
            "listed_frames": f"{score['listed_frames']:g}/{score['listed_kept']:g}",
        }

    def quantiles(key: str) -> dict[str, float] | None:
        return _quantiles(sorted(s[key] for s in scores.values() if s and key in s))

    false = {o.query: o.false("default") for o in chosen if o.false("default")}
    fillers = {o.query: o.fillers_found("default") for o in chosen if o.fillers_found("default")}
    shares = [100 * layout[o.own.split(":", 1)[1]]["share"] for o in chosen]
    return {
        "queries": len(chosen),
        "recall_at_default": round(len(matched) / len(chosen), 4),
        "matched_at_default": len(matched),
        "matched_by_the_two_percentages_alone": len(alone),
        "recall_without_containment_share": round(len(alone) / len(chosen), 4),
        "list_without_containment_recall": round(
            sum(o.recall(NO_CONTAINMENT) for o in chosen) / len(chosen), 4
        ),
        "false_matches_at_default": sum(len(v) for v in false.values()),
        **({"false": false} if false else {}),
        "fillers_found_at_default": {
            "queries": len(fillers),
            "references": sum(len(v) for v in fillers.values()),
            "found": fillers,
        },
        "video_percent_of_upload": _quantiles(sorted(shares)),
        "own_query_coverage": quantiles("query_coverage"),
        "own_listed_coverage": quantiles("listed_coverage"),
        "own_query_percent_of_frames": quantiles("query_percent"),
        "own_listed_percent_of_frames": quantiles("listed_percent"),
        "missed": {o.query: counts(scores[o.query]) for o in chosen if not o.recall("default")},
        "matched": {o.query: counts(scores[o.query]) for o in matched},
        "layout": layout,
    }


def own_scores(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Per kind of video query, the own original's vPDQ scores when any frame matched
    (the ``any_frame`` list): each side's coverage (of seconds, what a rule's percentages are
    compared with and chosen against) and its share of frames (vPDQ's percentages)."""
    out: dict[str, Any] = {}
    for kind in sorted({o.kind for o in outcomes} - {"still", "photo_in_video"}):
        scores = [o.found["any_frame"].references.get(o.own) for o in outcomes if o.kind == kind]
        found = [s for s in scores if s and "query_coverage" in s]
        out[kind] = {
            "queries": len(scores),
            "any_frame_matched": len(found),
            **{
                key: _quantiles(sorted(s[key] for s in found))
                for key in ("query_coverage", "listed_coverage", "query_percent", "listed_percent")
            },
        }
    return out


def _quantiles(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    array = np.asarray(values)
    return {
        q: round(float(np.percentile(array, p)), 1)
        for q, p in (("min", 0), ("p10", 10), ("median", 50), ("max", 100))
    }


def percent_sweep(outcomes: Sequence[Outcome], hashable: set[str]) -> dict[str, Any]:
    """Recall per transform and false matches at query % = 0, 10, ..., 100 (listed % = 0, no
    containment share), read from the ``any_frame`` list's scores: the rule compares each
    side's coverage (:func:`coverage`) with the list's two percentages (``meets_rule`` of
    :mod:`hashmatch.matching.video`); checked against the lists that have these rules."""
    sweep: dict[str, Any] = {}
    video_kinds = sorted({o.kind for o in outcomes} - {"still"})
    for percent in range(0, 101, 10):
        row: dict[str, Any] = {}
        false = 0
        for kind in video_kinds:
            chosen = [o for o in outcomes if o.kind == kind and o.own in hashable]
            hits = 0
            for outcome in chosen:
                for reference, score in outcome.found["any_frame"].references.items():
                    passes = coverage(score, "query") >= percent
                    if not passes:
                        continue
                    if reference == outcome.own:
                        hits += 1
                    elif outcome.unrelated(reference):
                        false += 1
            if chosen:
                row[kind] = round(hits / len(chosen), 4)
        row["false_matches"] = false
        sweep[str(percent)] = row
    return sweep


def frame_tail(
    listed: dict[str, tuple[FrameHash, ...]],
    queries: Sequence[tuple[str, Sequence[FrameHash]]],
    every_frame: dict[str, tuple[FrameHash, ...]],
) -> dict[str, Any]:
    """Distances between frames of distinct videos: every pair of distinct listed frames
    (quality >= 50, identical hashes once) from videos of different groups, every query frame
    against the listed frames of other groups, and against those of the videos listed at
    every frame."""
    names = sorted(listed)
    codes = {n: _kept(listed[n]) for n in names}
    result: dict[str, Any] = {}
    pair_minimums = []
    distances = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if group_of(a) == group_of(b) or not len(codes[a]) or not len(codes[b]):
                continue
            d = _pairwise(codes[a], codes[b])
            distances.append(d.ravel())
            pair_minimums.append(int(d.min()))
    result["listed_frame_pairs"] = _tail(np.concatenate(distances))
    minimums = np.asarray(pair_minimums)
    result["listed_video_pairs"] = {
        "pairs": int(minimums.size),
        "closest_frames_min": int(minimums.min()),
        "closest_frames_median": float(np.median(minimums)),
        "pairs_with_a_frame_at_or_under_31": int((minimums <= 31).sum()),
        "histogram_of_closest_frames_8bit_bins": _histogram(minimums, 8, 128),
    }
    for key, table in (
        ("query_frames_vs_distinct_listed", codes),
        (f"query_frames_vs_distinct_{EVERY_FRAME}", {n: _kept(f) for n, f in every_frame.items()}),
    ):
        query_distances = []
        for name, frames in queries:
            mine = _kept(frames)
            others = [c for n, c in table.items() if group_of(n) != group_of(name) and len(c)]
            if len(mine) and others:
                query_distances.append(_pairwise(mine, np.concatenate(others)).ravel())
        if query_distances:
            result[key] = _tail(np.concatenate(query_distances))
    result["note"] = (
        "frames of one video are not independent samples (one scene, one camera): the tail fit "
        "is an indication, the counts are what was observed"
    )
    return result


def _kept(frames: Sequence[FrameHash]) -> np.ndarray:
    kept = list(dict.fromkeys(f.pdq for f in frames if f.quality >= QUALITY_CUTOFF))
    return _words(kept) if kept else np.zeros((0, 32), np.uint8)


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    wa, wb = a.view(np.uint64), b.view(np.uint64)
    distances: np.ndarray = np.bitwise_count(wa[:, None, :] ^ wb[None, :, :]).sum(axis=2)
    return distances


def _histogram(values: np.ndarray, width: int, top: int) -> dict[str, int]:
    counts = np.bincount(np.minimum(values // width, top // width), minlength=top // width + 1)
    return {
        (f"{k * width}-{k * width + width - 1}" if k < top // width else f">={top}"): int(c)
        for k, c in enumerate(counts)
        if c
    }


def _tail(distances: np.ndarray) -> dict[str, Any]:
    return {
        "pairs": int(distances.size),
        "min": int(distances.min()),
        "p0.1": float(np.percentile(distances, 0.1)),
        "p1": float(np.percentile(distances, 1)),
        "median": float(np.median(distances)),
        "at_or_under": {
            str(t): {
                "pairs": int((distances <= t).sum()),
                "fraction": float((distances <= t).mean()),
            }
            for t in (31, 40, 45)
        },
        "histogram_8bit_bins": _histogram(distances, 8, 256),
        "tail_fit_1e-12": tail_threshold(distances),
    }


def part_robustness(
    quick: bool, jobs: int, photo_count: int, densities: Sequence[float] = ()
) -> dict[str, Any]:
    videos = all_videos()
    transformed = cheapest_per_group(videos) if quick else videos
    if quick:  # the cheapest videos that keep a transform run within minutes
        transformed = sorted(transformed, key=lambda v: v.cost)[:QUICK_VIDEOS]
    chosen = {v.name for v in transformed}
    photo_paths = corpus.image_files(corpus.photo_dir(), min_pixels=256 * 256)
    photo_paths = sorted(
        random.Random(SEED).sample(photo_paths, min(photo_count, len(photo_paths)))
    )
    settings = {
        "part": "robustness",
        "listed_videos": len(videos),
        "transformed_videos": sorted(chosen),
        "groups": dict(Counter(v.group for v in videos)),
        "transforms": list(QUERY_TRANSFORMS),
        "not_designed_for": list(NOT_DESIGNED_FOR),
        INSIDE_LONGER: (
            f"the video whole between two stretches of other listed videos (one of each other "
            f"group, seeded order, each from its start), each stretch max({FILLER_SECONDS:g} s, "
            f"the video's duration), scaled with bars to the video's size, at its frame rate"
        ),
        "encoding": {
            "codec": "libx264",
            "crf": video_transforms.CRF,
            "preset": video_transforms.PRESET,
            "low_bitrate": video_transforms.LOW_BITRATE,
        },
        "listing": {
            "seconds_per_hash": list(LISTED_SECONDS_PER_HASH),
            "from": "hashmatch.cli.hash.LISTING_INTERVALS (the service's listing default)",
        },
        "query_seconds_per_hash": SECONDS_PER_HASH,
        "rules": {k: v for k, v in RULES.items()},
        "rules_note": "(query %, listed %) lists have no containment share (0); "
        f"{NO_CONTAINMENT}: the default rule with vpdq_contained_percent 0",
        "min_contained_frames": MIN_CONTAINED_FRAMES,
        "baseline_rule": BASELINE_RULE,
        "photos": len(photo_paths),
        EVERY_FRAME: "every listed video"
        if densities or not quick
        else "the transformed videos only",
        "listed_seconds_per_hash_sweep": list(densities),
        "jobs": jobs,
        "seed": SEED,
        "python": platform.python_version(),
    }
    print("settings:", json.dumps(settings), flush=True)
    started = time.monotonic()
    tasks = [
        (
            v.name,
            str(v.path),
            list(QUERY_TRANSFORMS) if v.name in chosen else [],
            v.name in chosen,
            v.name in chosen or not quick or bool(densities),
            [(f.name, str(f.path)) for f in filler_candidates(v, videos)]
            if v.name in chosen
            else [],
        )
        # The longest first: the pool's last task is then a short one.
        for v in sorted(videos, key=lambda v: -v.cost * (v.name in chosen))
    ]
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        hashed = pool.map(hash_original, tasks, chunksize=1)
        photos = pool.map(hash_photo, list(enumerate(map(str, photo_paths))), chunksize=1)
    hashing_s = time.monotonic() - started
    listed = {v["name"]: v["frames"] for v in hashed if v.get("frames")}
    every_frame = {v["name"]: v["every_frame"] for v in hashed if v.get("every_frame")}
    hashable = {f"video:{n}" for n, f in listed.items() if len(_kept(f))}
    hashable |= {f"photo:{p['name']}" for p in photos}
    fps = {v["name"]: v["fps"] for v in hashed if "fps" in v}
    variants = density_variants(densities)
    density_listings = {
        density_list(seconds): {
            name: thinned(frames, fps[name], *seconds) for name, frames in every_frame.items()
        }
        for seconds in variants
    }
    with tempfile.TemporaryDirectory(prefix="hashmatch-bench-video-") as folder:
        store, state, thresholds = build_store(
            Path(folder),
            listed,
            every_frame,
            {p["name"]: p["code"] for p in photos},
            density_listings,
        )
        try:
            outcomes = query_all(state, hashed, photos, [*LISTS, *density_listings])
        finally:
            store.close()
    # A list's recall counts the queries whose original it holds (and can match).
    in_every_frame = {f"video:{n}" for n in every_frame} | {r for r in hashable if "photo:" in r}
    per_rule = {
        rule: rule_table(
            outcomes, rule, hashable & in_every_frame if rule == EVERY_FRAME else hashable
        )
        for rule in LISTS
    }
    sweep = percent_sweep(outcomes, hashable)
    # The sweep reads the any_frame list's scores; the lists at 30/50/80 must agree with it.
    swept = {"q30": 30, "q50": 50, BASELINE_RULE: 80}
    assert all(RULES[rule] == (percent, 0) for rule, percent in swept.items())
    consistent = all(
        sweep[str(percent)].get(kind) == row["recall"]
        for rule, percent in swept.items()
        for kind, row in per_rule[rule].items()
        if kind != "still"
    )
    default = per_rule["default"]
    designed = {k: v for k, v in default.items() if k not in NOT_DESIGNED_FOR}
    default_rule = {
        name: int(thresholds["default"].get(name, value)) for name, value in VIDEO_PERCENTS.items()
    }
    result: dict[str, Any] = {
        "settings": settings,
        "default_rule": {
            "thresholds": thresholds["default"],
            "vpdq_frame_distance": thresholds["default"].get("vpdq", VPDQ.default_threshold),
            "video_percents": default_rule,
        },
        "listed_frames": {
            "seconds_per_hash": list(LISTED_SECONDS_PER_HASH),
            "videos": len(listed),
            "sampled": sum(len(f) for f in listed.values()),
            "indexed": sum(len(_kept(f)) for f in listed.values()),
            "indexed_means": "distinct frames over the quality cut, as the index holds them",
            **(
                {
                    "indexed_at_1s": sum(
                        len(_kept(thinned(f, fps[n], SECONDS_PER_HASH)))
                        for n, f in every_frame.items()
                    ),
                }
                if set(every_frame) == set(listed)
                else {}
            ),
        },
        "recall_at_default": {k: v["recall"] for k, v in designed.items()},
        "false_matches_at_default": sum(v["false_matches"] for v in default.values()),
        INSIDE_LONGER: compilation_report(outcomes, hashable, hashed, default_rule),
        "containment_share_at_default": containment(outcomes, hashable, default_rule),
        "not_designed_for": {k: default[k] for k in NOT_DESIGNED_FOR if k in default},
        "baseline_threatexchange_rule": {
            "recall": {k: v["recall"] for k, v in per_rule[BASELINE_RULE].items()},
            "false_matches": sum(v["false_matches"] for v in per_rule[BASELINE_RULE].values()),
        },
        "listed_every_frame_at_default": {
            "recall": {k: v["recall"] for k, v in per_rule[EVERY_FRAME].items()},
            "false_matches": sum(v["false_matches"] for v in per_rule[EVERY_FRAME].values()),
            "listed_frames": sum(len(f) for f in every_frame.values()),
            "listed_frames_default_listing": sum(len(f) for f in listed.values()),
        },
        "same_content_renditions": renditions(outcomes, listed),
        "rules": per_rule,
        "query_percent_sweep_listed_0": sweep,
        "sweep_agrees_with_lists": consistent,
        "own_scores_any_frame": own_scores(outcomes),
        "unhashable": sorted(
            {v["name"] for v in hashed} - {ref.split(":", 1)[1] for ref in hashable}
        ),
        "errors": {v["name"]: v["errors"] for v in hashed if v["errors"]},
        # The compilation shows other listed videos: its frames are no distinct pair.
        "frame_distance_tail": frame_tail(
            listed,
            [
                (v["name"], frames)
                for v in hashed
                for transform, frames in v["queries"].items()
                if transform != INSIDE_LONGER
            ],
            every_frame,
        ),
        "hashing_seconds": round(hashing_s, 1),
    }
    if densities:
        sweep_started = time.monotonic()
        result["listing_density_sweep"] = density_sweep(
            outcomes, hashable, variants, density_listings, listed, fps, hashed, photos
        )
        result["listing_density_sweep"]["seconds"] = round(time.monotonic() - sweep_started, 1)
        print("\n".join(result["listing_density_sweep"]["table"]), flush=True)
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


QUICK_VIDEOS = 12


# --- robustness: how densely listed videos are sampled ----------------------------------------

#: The queries the density sweep reports (transforms and the still), in this order.
DENSITY_KINDS = (
    "identity",
    "clip_10s",
    "still",
    "frame_rate",
    "reencode_300k",
    "downscale_360p",
    "logo",
    "letterbox",
    INSIDE_LONGER,
)


def density_variants(densities: Sequence[float]) -> list[tuple[float, ...]]:
    """Each density alone, then each one between every frame and one a second together with
    one a second: ``hash_video`` samples frame ``n`` when ``n % int(seconds * fps) == 0``,
    so at 25 fps 0.5 s takes every 12th frame and misses the 25th, 50th, ... that a query at
    one a second takes; with 1 s added the listing holds every frame such a query samples."""
    alone: list[tuple[float, ...]] = [(seconds,) for seconds in densities]
    joined: list[tuple[float, ...]] = [
        (seconds, SECONDS_PER_HASH) for seconds in densities if 0 < seconds < SECONDS_PER_HASH
    ]
    return alone + joined


def density_label(seconds: Sequence[float]) -> str:
    return "+".join(f"{s:g}" for s in seconds)


def density_list(seconds: Sequence[float]) -> str:
    return "listed_" + "_and_".join(f"{s:g}s" for s in seconds) + "_per_hash"


def thinned(frames: Sequence[FrameHash], fps: float, *seconds: float) -> tuple[FrameHash, ...]:
    """The frames ``hash_video(seconds_per_hash=s)`` keeps for any ``s`` of ``seconds``,
    taken from the video's frames hashed at every frame: the same rule
    (``hashmatch.media.video.sample_frames``: frame ``n`` when ``n % max(1, int(s * fps))
    == 0``), each frame hashed alike, so each listing costs no decoding of its own (checked
    at 1 s against ``hash_video``)."""
    steps = [max(1, int(s * fps)) for s in seconds]
    return tuple(frame for frame in frames if any(frame.number % step == 0 for step in steps))


def _closest(a: np.ndarray, b: np.ndarray, within: int = 31) -> tuple[int, int]:
    """The least distance between a row of ``a`` and a row of ``b`` (PDQ codes, (n, 32)
    uint8), and how many pairs are at or under ``within``; in blocks, to bound memory."""
    if not len(a) or not len(b):
        return 256, 0
    least, close = 256, 0
    for start in range(0, len(a), 256):
        block = _pairwise(a[start : start + 256], b)
        least = min(least, int(block.min()))
        close += int((block <= within).sum())
    return least, close


def density_sweep(
    outcomes: Sequence[Outcome],
    hashable: set[str],
    variants: Sequence[tuple[float, ...]],
    listings: dict[str, dict[str, tuple[FrameHash, ...]]],
    default_listing: dict[str, tuple[FrameHash, ...]],
    fps: dict[str, float],
    hashed: Sequence[dict[str, Any]],
    photos: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """Recall and false matches at the default rule when the originals are listed at each
    density (``variants``: seconds per hash, several for a listing that joins them; queries
    stay at one hash a second, the service's default), what each listing
    costs in indexed frames (distinct frames over the quality cut, as the index holds them)
    beside the 1 s listing's, and how close frames of distinct videos come: listed to listed,
    and query to listed (the compilation's frames left out: they show other listed videos)."""
    checked = {
        name: thinned(frames, fps[name], *LISTED_SECONDS_PER_HASH) == default_listing.get(name)
        for name, frames in ((v["name"], v["every_frame"]) for v in hashed if "every_frame" in v)
    }
    base_kept = sum(
        len(_kept(thinned(v["every_frame"], fps[v["name"]], SECONDS_PER_HASH)))
        for v in hashed
        if v.get("every_frame")
    )
    default_kept = sum(len(_kept(frames)) for frames in default_listing.values())
    # The query side, per video group: every transform's frames, the still's PDQ as
    # submitted (no turned or trimmed variant), and each photo's video (distinct from all).
    queries: list[tuple[str, np.ndarray]] = []
    for video in hashed:
        group = group_of(video["name"])
        for transform, frames in video["queries"].items():
            if transform != INSIDE_LONGER:
                queries.append((group, _kept(frames)))
        if "still" in video:
            pdq = [
                q.hash.value for q in video["still"] if q.hash.algorithm is PDQ and not q.penalised
            ]
            queries.append((group, _words(pdq) if pdq else np.zeros((0, 32), np.uint8)))
    for photo in photos:
        queries.append((f"photo:{photo['name']}", _kept(photo["frames"])))
    rows: dict[str, Any] = {}
    table = [
        "listed s/hash | "
        + " | ".join(DENSITY_KINDS)
        + " | false | listed frames (x 1 s) | closest listed-listed | closest query-listed"
    ]
    for seconds in variants:
        name, label = density_list(seconds), density_label(seconds)
        listing = listings[name]
        per_kind = rule_table(outcomes, name, hashable)
        codes = {video: _kept(frames) for video, frames in listing.items()}
        names = sorted(codes)
        listed_least, listed_close = 256, 0
        for i, a in enumerate(names):
            others = [codes[b] for b in names[i + 1 :] if group_of(b) != group_of(a)]
            if others:
                least, close = _closest(codes[a], np.concatenate(others))
                listed_least, listed_close = min(listed_least, least), listed_close + close
        query_least, query_close = 256, 0
        for group, mine in queries:
            others = [codes[b] for b in names if group_of(b) != group]
            if others:
                least, close = _closest(mine, np.concatenate(others))
                query_least, query_close = min(query_least, least), query_close + close
        kept = sum(len(c) for c in codes.values())
        false = {kind: row["false"] for kind, row in per_kind.items() if row.get("false")}
        rows[label] = {
            "list": name,
            "recall": {k: per_kind[k]["recall"] for k in DENSITY_KINDS if k in per_kind},
            "recall_other": {k: v["recall"] for k, v in per_kind.items() if k not in DENSITY_KINDS},
            "queries": {k: v["queries"] for k, v in per_kind.items()},
            "missed": {
                k: per_kind[k]["missed"] for k in DENSITY_KINDS if per_kind.get(k, {}).get("missed")
            },
            "false_matches": sum(v["false_matches"] for v in per_kind.values()),
            **({"false": false} if false else {}),
            "listed_frames_sampled": sum(len(f) for f in listing.values()),
            "listed_frames_indexed": kept,
            "indexed_vs_1s": round(kept / base_kept, 2) if base_kept else None,
            "closest_distinct_listed_frames": listed_least,
            "distinct_listed_frame_pairs_at_or_under_31": listed_close,
            "closest_query_frame_to_distinct_listed": query_least,
            "query_to_distinct_listed_pairs_at_or_under_31": query_close,
        }
        row = rows[label]
        table.append(
            f"{label} | "
            + " | ".join(f"{row['recall'].get(k, float('nan')):.0%}" for k in DENSITY_KINDS)
            + f" | {row['false_matches']} | {kept} (x{row['indexed_vs_1s']})"
            + f" | {listed_least} | {query_least}"
        )
    return {
        "rule": "default (the store's default thresholds)",
        "query_seconds_per_hash": SECONDS_PER_HASH,
        "listed_videos": len(next(iter(listings.values()), {})),
        "listed_frames_indexed_at_1s": base_kept,
        "listed_frames_indexed_default_listing": default_kept,
        "default_listing_seconds_per_hash": list(LISTED_SECONDS_PER_HASH),
        "listings_derived_from_every_frame": "thinned(): the rule of sample_frames, no re-decode",
        "derived_default_listing_equals_hash_video": all(checked.values()),
        **(
            {"derived_default_listing_differs": sorted(n for n, ok in checked.items() if not ok)}
            if not all(checked.values())
            else {}
        ),
        "recall_counts_only": "originals with a frame over the quality cut in the default listing",
        "densities": rows,
        "table": table,
    }


# --- memory -----------------------------------------------------------------------------------

#: The long video: the corpus's 720p H.264 screen recording, upscaled once to 1080p at an
#: average 4 Mbit/s (a common 1080p streaming rate), then its packets repeated with shifted
#: timestamps. Remuxing makes hours of real H.264 in seconds, and decoding it costs what
#: decoding any 1080p H.264 of that rate costs; the decoder's memory follows the frame size and
#: its reference frames, not the content.
MEMORY_SOURCE = "forensics-samples-files__movie-hello.mp4"
MEMORY_BITRATE = 4_000_000


def long_video(minutes: float) -> Path:
    folder = BENCH_CACHE / "memory"
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"source-1080p-{MEMORY_BITRATE // 1000}k.mp4"
    if not source.is_file():
        data = (corpus.video_dir() / MEMORY_SOURCE).read_bytes()
        made = video_transforms.scaled(data, 1920, 1080, bitrate=MEMORY_BITRATE)
        source.with_suffix(".part").write_bytes(made)
        source.with_suffix(".part").rename(source)
    path = folder / f"loop-1080p-{MEMORY_BITRATE // 1000}k-{minutes:g}min.mp4"
    if not path.is_file():
        part = path.with_suffix(".part")
        with part.open("wb") as handle:
            video_transforms.loop_remux(source.read_bytes(), minutes * 60, handle)
        part.rename(path)
    return path


#: The child that is measured: a fresh interpreter that imports only the hashing path, reads
#: the file (as the service holds an upload: the whole body in memory) and hashes it.
MEMORY_CHILD = r"""
import dataclasses, json, resource, sys, time
from pathlib import Path
from hashmatch.media.video import DEFAULT_VIDEO_LIMITS
from hashmatch.signals.vpdq import hash_video

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

path, seconds, mode = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
start = status("VmRSS")
size = path.stat().st_size
limits = dataclasses.replace(
    DEFAULT_VIDEO_LIMITS, max_bytes=size, max_seconds=1e9, max_frames=10**9,
    max_decode_seconds=1e9,
)
wall, cpu = time.perf_counter(), time.process_time()
if mode == "bytes":  # the service: an upload is held in memory
    data = path.read_bytes()
    after_read = status("VmRSS")
    frames = hash_video(data, seconds_per_hash=seconds, limits=limits).frames
else:  # hashmatch hash: decoded from the open file
    after_read = status("VmRSS")
    with path.open("rb") as file:
        frames = hash_video(file, seconds_per_hash=seconds, limits=limits).frames
print(json.dumps({
    "file_bytes": size,
    "rss_start": start,
    "rss_after_read": after_read,
    "vm_hwm": status("VmHWM"),
    "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "frames_hashed": len(frames),
    "wall_s": time.perf_counter() - wall,
    "cpu_s": time.process_time() - cpu,
}))
"""


def part_memory(
    quick: bool, minutes: Sequence[float], modes: Sequence[str] = ("file", "bytes")
) -> dict[str, Any]:
    settings = {
        "part": "memory",
        "minutes": list(minutes),
        "video": f"1920x1080 H.264 at {MEMORY_BITRATE // 1000} kbit/s average, from "
        f"{MEMORY_SOURCE} upscaled once, then remuxed in a loop (no re-encoding)",
        "seconds_per_hash": SECONDS_PER_HASH,
        "measured": "VmHWM of a child process hashing the video: 'file' decodes it from the "
        "open file (hashmatch hash), 'bytes' reads it into memory first (the service's path, "
        "whose uploads are capped at 200 MB)",
        "modes": list(modes),
        "service_max_video_bytes": DEFAULT_VIDEO_LIMITS.max_bytes,
    }
    print("settings:", json.dumps(settings), flush=True)
    runs: dict[str, Any] = {}
    mb = 1 << 20
    for length in minutes:
        path = long_video(length)
        for mode in modes:
            done = subprocess.run(
                [sys.executable, "-c", MEMORY_CHILD, str(path), str(SECONDS_PER_HASH), mode],
                capture_output=True,
                text=True,
                check=True,
            )
            child = json.loads(done.stdout.strip().splitlines()[-1])
            over = child["vm_hwm"] - child["rss_after_read"]
            runs[f"{length:g}min-{mode}"] = {
                "file_mb": round(child["file_bytes"] / mb, 1),
                "rss_start_mb": round(child["rss_start"] / mb, 1),
                "rss_after_read_mb": round(child["rss_after_read"] / mb, 1),
                "peak_rss_mb": round(child["vm_hwm"] / mb, 1),
                "ru_maxrss_mb": round(child["ru_maxrss"] / mb, 1),
                "peak_over_start_plus_file_mb": round(over / mb, 1),
                "frames_hashed": child["frames_hashed"],
                "x_realtime_wall": round(length * 60 / child["wall_s"], 2),
                "x_realtime_per_core": round(length * 60 / child["cpu_s"], 2),
            }
            print(json.dumps({f"{length:g}min-{mode}": runs[f"{length:g}min-{mode}"]}), flush=True)
    overs = [run["peak_over_start_plus_file_mb"] for run in runs.values()]
    starts = [run["rss_start_mb"] for run in runs.values()]
    file_peaks = [run["peak_rss_mb"] for key, run in runs.items() if key.endswith("-file")]
    two_hours = 7200 * MEMORY_BITRATE / 8 / mb
    model = {
        "peak_mb": "file mode: start + working set, whatever the length; bytes mode: + the file",
        "start_mb": round(statistics.fmean(starts), 1),
        "working_set_mb": {"min": min(overs), "max": max(overs)},
        "file_mode_peak_mb": {"min": min(file_peaks), "max": max(file_peaks)}
        if file_peaks
        else None,
        "two_hours_at_this_rate_file_mb": round(two_hours, 1),
        "two_hours_bytes_mode_predicted_peak_mb": round(
            statistics.fmean(starts) + two_hours + max(overs), 1
        ),
        "longest_upload_under_service_limit_minutes_at_this_rate": round(
            DEFAULT_VIDEO_LIMITS.max_bytes * 8 / MEMORY_BITRATE / 60, 1
        ),
    }
    return {"settings": settings, "runs": runs, "model": model}


# --- HTTP -------------------------------------------------------------------------------------

HTTP_CLIP_SOURCE = "forensics-samples-files__movie-hello.mp4"
HTTP_CLIP_SECONDS = 30.0


def _client() -> Any:
    import httpx

    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    return httpx.Client(timeout=120, transport=transport)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_clip() -> bytes:
    """30 seconds of the corpus's 720p H.264 video, its packets looped (no re-encoding)."""
    data = (corpus.video_dir() / HTTP_CLIP_SOURCE).read_bytes()
    buffer = io.BytesIO()
    video_transforms.loop_remux(data, HTTP_CLIP_SECONDS, buffer)
    return buffer.getvalue()


def random_videos(count: int, frames: int, rng: np.random.Generator) -> Iterable[HashRow]:
    for k in range(count):
        codes = rng.integers(0, 256, size=(frames, 32), dtype=np.uint8)
        listed = [FrameHash(i * 30, float(i), codes[i].tobytes(), 100) for i in range(frames)]
        yield HashRow(1, Hash(VPDQ, frames_digest(listed)), f"random:{k}", (), pack_frames(listed))


def _percentiles(seconds: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {
        "n": int(ms.size),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
    }


def part_http(quick: bool, requests: int, listed_videos: int, listed_frames: int) -> dict[str, Any]:
    clip = http_clip()
    clip_info = video_transforms.probe(clip)
    settings = {
        "part": "http",
        "clip": f"{clip_info.width}x{clip_info.height} {clip_info.duration:.1f} s H.264, "
        f"{len(clip)} bytes ({HTTP_CLIP_SOURCE} looped)",
        "random_listed_videos": listed_videos,
        "frames_each": listed_frames,
        "requests": requests,
        "workers": 2,
        "client": "one thread, sequential requests, same machine",
        "cpus": os.cpu_count(),
    }
    print("settings:", json.dumps(settings), flush=True)
    rng = np.random.default_rng(SEED)
    real = [v for v in all_videos() if quick is False or v.name == HTTP_CLIP_SOURCE]
    real_rows = []
    for video in real:
        try:
            frames = hash_video(video.path.read_bytes())
        except HashmatchError:  # reported by the robustness part; not listed here
            continue
        if frames:
            real_rows.append(
                HashRow(
                    1,
                    Hash(VPDQ, frames_digest(frames)),
                    f"video:{video.name}",
                    (),
                    pack_frames(frames),
                )
            )
    folder = Path(tempfile.mkdtemp(prefix="hashmatch-bench-video-http-"))
    data_dir = folder / "index"
    store = Store.open(database_url(data_dir, None))
    store.lists.create("videos", owner=OWNER, category="csam", actor=OWNER)
    started = time.monotonic()
    store.entries.import_rows(
        "videos", random_videos(listed_videos, listed_frames, rng), actor=OWNER
    )
    store.entries.import_rows("videos", real_rows, actor=OWNER)
    import_s = time.monotonic() - started
    _, secret = store.keys.create(OWNER, frozenset({Role.MATCH}), actor=OWNER)
    store.close()
    auth = {"Authorization": f"Bearer {secret}"}

    # In-process baselines on the same clip: the search here (the server is not up yet);
    # decode alone and hash_video below, interleaved with the requests.
    frames = hash_video(clip)
    store = Store.open(database_url(data_dir, None))
    follower = Follower(store)
    load_started = time.monotonic()
    follower.load()
    load_s = time.monotonic() - load_started
    state = follower.state
    query = QueryFrames.of(frames)
    lists = frozenset({"videos"})
    searching = [
        _timed(lambda: lookup_video(state, query, organisation=OWNER, lists=lists))[0]
        for _ in range(max(10, requests))
    ]
    verdict = lookup_video(state, query, organisation=OWNER, lists=lists)
    in_process_found = [hit.match.reference for hit in verdict.blocks]
    indexed = state.size(PDQ)
    store.close()

    port = _free_port()
    env = {
        **os.environ,
        "HASHMATCH_DATA_DIR": str(data_dir),
        "HASHMATCH_RATE_LIMIT": "1000000",
        "HASHMATCH_RATE_BURST": "1000000",
    }
    env.pop("HASHMATCH_DATABASE_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "hashmatch", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        ready = time.monotonic()
        while True:
            try:
                if all(httpx.get(f"{base}/readyz", timeout=2).status_code == 200 for _ in range(4)):
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None:
                sys.exit("the server exited before it was ready")
            time.sleep(0.2)
        ready_s = time.monotonic() - ready
        lines = format_frames(frames).splitlines()
        with _client() as client:

            def upload() -> dict[str, Any]:
                response = client.post(
                    f"{base}/v1/match", content=clip, headers={**auth, "Content-Type": "video/mp4"}
                )
                response.raise_for_status()
                return dict(response.json())

            def hashes() -> dict[str, Any]:
                response = client.post(
                    f"{base}/v1/match/hashes", json={"videos": [{"frames": lines}]}, headers=auth
                )
                response.raise_for_status()
                return dict(response.json())

            for _ in range(2):  # warm-up: both workers' first video, imports, caches
                answer = upload()
                hashes()
            uploads, matched, match_only, hashing, floor = [], [], [], [], []
            # Round by round, so that drift hits every figure alike; the server is idle
            # while this process hashes.
            for _ in range(requests):
                began = time.perf_counter()
                answer = upload()
                uploads.append(time.perf_counter() - began)
                matched.append(answer["match"])
                began = time.perf_counter()
                hashes()
                match_only.append(time.perf_counter() - began)
                hashing.append(_timed(lambda: hash_video(clip))[0])
                floor.append(_timed(lambda: decode_floor(clip))[0])
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
    http = _percentiles(uploads)
    hash_s, floor_s = statistics.median(hashing), statistics.median(floor)
    search_s = statistics.median(searching)
    only = _percentiles(match_only)
    p50 = http["p50_ms"] / 1000
    where = {
        "decode_s": round(floor_s, 3),
        "rgb_and_pdq_s": round(hash_s - floor_s, 3),
        "search_in_process_s": round(search_s, 4),
        "match_hashes_route_s": round(only["p50_ms"] / 1000, 4),
        "upload_and_rest_s": round(p50 - hash_s - only["p50_ms"] / 1000, 3),
    }
    return {
        "settings": settings,
        "import_s": round(import_s, 1),
        "state_load_s": round(load_s, 1),
        "server_ready_s": round(ready_s, 1),
        "indexed_pdq_codes": indexed,
        "clip_frames_hashed": len(frames),
        "clip_frames_kept": len(query),
        "post_v1_match": http,
        "all_matched": all(matched),
        "found": [m["reference"] for m in answer.get("matches", [])][:5],
        "baselines_in_process": {
            "hash_video_s": round(hash_s, 3),
            "hash_video_p99_s": round(float(np.percentile(hashing, 99)), 3),
            "decode_floor_s": round(floor_s, 3),
            "lookup_video_s": _percentiles(searching),
            "found": in_process_found[:5],
        },
        "match_only_v1_match_hashes": only,
        "ratios": {
            "http_p50_vs_hash_video": round(p50 / hash_s, 3),
            "http_p99_vs_hash_video": round(http["p99_ms"] / 1000 / hash_s, 3),
            "hash_video_vs_decode_floor": round(hash_s / floor_s, 3),
            "match_only_p50_vs_http_p50": round(only["p50_ms"] / http["p50_ms"], 3),
        },
        "where_the_time_goes_at_p50": where,
        "target_p99_under_2s": http["p99_ms"] < 2000,
        "model": (
            "p99 ~= decode(clip) + hash(sampled frames) + search(kept frames x index) + HTTP; "
            f"here the clip decodes at {HTTP_CLIP_SECONDS / floor_s:.1f}x real time (wall), so a "
            f"{HTTP_CLIP_SECONDS:g} s 720p clip costs {floor_s:.2f} s before any hashing"
        ),
    }


# --- main -------------------------------------------------------------------------------------


def _minutes(text: str) -> list[float]:
    values = [float(x) for x in text.split(",") if x.strip()]
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError("comma-separated positive minutes")
    return values


def _densities(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or any(not (v >= 0 and v < float("inf")) for v in values):
        raise argparse.ArgumentTypeError("comma-separated seconds per hash, each >= 0")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (each part in minutes)")
    parser.add_argument(
        "--part", choices=("speed", "robustness", "memory", "http", "all"), default="all"
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--photos", type=int, help="photos shown in videos (default 30, quick 10)")
    parser.add_argument(
        "--memory-minutes", type=_minutes, help="video lengths (default 1,5,20; quick 1,3)"
    )
    parser.add_argument(
        "--memory-modes",
        default="file,bytes",
        help="file: decoded from the open file (hashmatch hash); bytes: held in memory first "
        "(the service's uploads); default both",
    )
    parser.add_argument(
        "--listed-seconds-per-hash",
        type=_densities,
        default=[],
        metavar="S,S,...",
        help="robustness: also list the originals at each of these densities (seconds per "
        "hash, 0 = every frame; e.g. 1,0.5,0.25,0.1,0), queries staying at 1 s, and report "
        "recall, false matches, indexed frames and the closest distinct frames of each",
    )
    parser.add_argument("--requests", type=int, help="HTTP requests (default 30, quick 10)")
    parser.add_argument("--listed-videos", type=int, default=1000)
    parser.add_argument("--listed-frames", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    parts = ("speed", "robustness", "memory", "http") if args.part == "all" else (args.part,)
    results: dict[str, Any] = {}
    for part in parts:
        if part == "speed":
            results[part] = part_speed(args.quick)
        elif part == "robustness":
            photos = args.photos or (10 if args.quick else 30)
            results[part] = part_robustness(
                args.quick, args.jobs, photos, args.listed_seconds_per_hash
            )
        elif part == "memory":
            minutes = args.memory_minutes or ([1, 3] if args.quick else [1, 5, 20])
            modes = tuple(m for m in args.memory_modes.split(",") if m)
            results[part] = part_memory(args.quick, minutes, modes)
        else:
            requests = args.requests or (10 if args.quick else 30)
            results[part] = part_http(args.quick, requests, args.listed_videos, args.listed_frames)
    result = results[parts[0]] if len(parts) == 1 else results
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"video-{args.part}" + ("-quick" if args.quick else "")
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
