"""``hashmatch hash``: hash image and video files and folders locally (the agencies' side: the
material never leaves the machine, only the hashes do)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from hashmatch.cli.common import progress, stderr, write_output
from hashmatch.config import Settings

if TYPE_CHECKING:
    from hashmatch.hashsets.batch import FileResult, VideoOptions
    from hashmatch.hashsets.write import RecordWriter

EXIT_OK = 0
EXIT_FAILURES = 1
#: A local video may be this large (the service's own cap, ``HASHMATCH_MAX_VIDEO_BYTES``, is
#: for uploads). It is read into memory and decoded from there, as the service decodes.
CLI_MAX_VIDEO_BYTES: Final = 4_000_000_000
#: How ``hashmatch hash`` samples a video by default: for listing. vPDQ's one frame a second
#: finds a copy sampled in step with it, but handheld footage changes by ~64 bits in a tenth of
#: a second, so a clip or a still cut between two sampled frames is missed; adding the frames
#: a tenth of a second apart took clip recall from 50% to 94% and stills from 44% to 92% with
#: 0 false matches, for 9.8x the listed frames (``bench_video.py --part robustness
#: --listed-seconds-per-hash``). Uploads are sampled once a second (the service's setting).
LISTING_INTERVALS: Final = (1.0, 0.1)
#: Where ``-f vpdq`` puts each video's frames when it writes several: ``DIR/<name>.vpdq.txt``.
VPDQ_SUFFIX: Final = ".vpdq.txt"


def video_options(
    settings: Settings,
    *,
    max_bytes: int | None = None,
    seconds_per_hash: tuple[float, ...] | None = None,
) -> VideoOptions:
    """The CLI's video limits: the settings' (``HASHMATCH_MAX_VIDEO_*``), except the byte cap,
    :data:`CLI_MAX_VIDEO_BYTES` unless given; sampling from the settings unless given."""
    from hashmatch.hashsets.batch import VideoOptions

    limits = dataclasses.replace(
        settings.video_limits, max_bytes=max_bytes if max_bytes else CLI_MAX_VIDEO_BYTES
    )
    intervals = (settings.video_seconds_per_hash,) if seconds_per_hash is None else seconds_per_hash
    return VideoOptions(limits=limits, seconds_per_hash=intervals)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from hashmatch.errors import InvalidField
    from hashmatch.hashsets.batch import default_jobs, hash_files, iter_files
    from hashmatch.hashsets.write import Format, RecordWriter
    from hashmatch.signals import Source, parse_many

    algorithms = parse_many(args.algorithms)
    output_format = Format(args.format)
    jobs = args.jobs if args.jobs and args.jobs > 0 else default_jobs()
    files = list(iter_files(Path(p) for p in args.paths))
    video = video_options(
        settings,
        max_bytes=args.max_video_bytes,
        seconds_per_hash=args.seconds_per_hash or LISTING_INTERVALS,
    )
    folder: Path | None = None
    if output_format is Format.VPDQ:
        # Meta's text form holds one video's frames and nothing else: only vpdq is computed.
        algorithms = tuple(a for a in algorithms if a.source is Source.VIDEO)
        if not algorithms:
            raise InvalidField("--format", "vpdq writes videos' frames: ask for vpdq (-a)")
        folder = _vpdq_folder(args.output, len(files))
    tally = _Tally(len(files))
    with (
        write_output(None if folder else args.output) as stream,
        progress(total=len(files), desc="hashing", unit="file") as bar,
    ):
        writer = RecordWriter(stream, output_format)
        names: set[str] = set()
        for result in hash_files(files, algorithms, settings.media_limits, jobs=jobs, video=video):
            bar.update(1)
            if result.error is not None:
                bar.write(f"hashmatch: {result.path}: {result.error.message}", file=sys.stderr)
            if folder is not None and result.video is not None:
                target = _unique(folder, Path(result.path), names)
                with target.open("w", encoding="utf-8", newline="") as text:
                    _write(RecordWriter(text, output_format), result)
                print(target)
            else:
                _write(writer, result)
            tally.add(result)
    return tally.finish(output_format, writer.skipped_videos, args.summary)


def _write(writer: RecordWriter, result: FileResult) -> None:
    from hashmatch.hashsets.write import ErrorRecord, HashRecord, VideoRecord
    from hashmatch.signals import Source

    if result.error is not None:
        writer.write(ErrorRecord(result.path, result.error))
        return
    for value in result.hashes:
        if value.algorithm.source is Source.VIDEO and result.video is not None:
            info = result.video.info
            writer.write(
                VideoRecord(
                    result.path,
                    value,
                    result.video.frames,
                    result.size,
                    fps=None if info is None else info.fps,
                    duration=None if info is None else info.duration,
                )
            )
        else:
            writer.write(HashRecord(result.path, value, result.size))


@dataclasses.dataclass
class _Tally:
    """What the run did, for the summary line and the exit status."""

    files: int
    failed: int = 0
    videos: int = 0
    skipped: int = 0
    #: signal type -> hashes flagged low quality
    low_quality: Counter[str] = dataclasses.field(default_factory=Counter)

    def add(self, result: FileResult) -> None:
        if result.error is not None:
            self.failed += 1
        elif result.skipped is not None:
            self.skipped += 1
        else:
            self.videos += result.container is not None
            for value in result.hashes:
                if value.low_quality:
                    self.low_quality[value.algorithm.name] += 1

    def finish(self, output_format: str, skipped_videos: int, always: bool) -> int:
        hashed = self.files - self.failed - self.skipped
        summary = f"hashed {hashed} of {self.files} files"
        if self.videos:
            summary += f" ({self.videos} videos)"
        if self.failed:
            summary += f", {self.failed} failed"
        if self.skipped:
            summary += f", {self.skipped} skipped (no algorithm asked for applies to them)"
        if self.low_quality:
            flagged = ", ".join(f"{n} {name}" for name, n in sorted(self.low_quality.items()))
            summary += f", low-quality hashes flagged: {flagged}"
        if always or self.failed or self.low_quality or self.skipped:
            stderr(summary)
        if skipped_videos:
            stderr(
                f"the vpdq frames of {skipped_videos} videos were not written: {output_format} "
                "holds one hash a row; use --format jsonl (or vpdq, Meta's text form)"
            )
        if output_format == "vpdq" and not self.videos and not self.failed:
            stderr("no video among the inputs: nothing written")
            return EXIT_FAILURES
        return EXIT_FAILURES if self.failed else EXIT_OK


def _vpdq_folder(output: str | None, inputs: int) -> Path | None:
    """``-f vpdq`` writes one video: to standard output or the file ``-o`` names; several
    inputs go each to ``DIR/<name>.vpdq.txt`` in the folder ``-o`` names (made if missing)."""
    from hashmatch.errors import InvalidField

    target = None if output in (None, "-") else Path(str(output))
    if target is not None and target.is_dir():
        return target
    if inputs <= 1:
        return None
    if target is None:
        raise InvalidField(
            "--output",
            "--format vpdq holds one video: give -o DIR for several inputs "
            f"(each video to DIR/<name>{VPDQ_SUFFIX})",
        )
    target.mkdir(parents=True, exist_ok=True)
    return target


def _unique(folder: Path, source: Path, taken: set[str]) -> Path:
    """``DIR/<name>.vpdq.txt``, numbered when two inputs share a name (``a/x.mp4``,
    ``b/x.mp4``); ``lists import`` takes ``<name>`` as the video's reference."""
    stem = source.stem or source.name
    name = f"{stem}{VPDQ_SUFFIX}"
    count = 1
    while name in taken or (folder / name).exists():
        count += 1
        name = f"{stem}-{count}{VPDQ_SUFFIX}"
    taken.add(name)
    return folder / name


def seconds_per_hash_arg(text: str) -> tuple[float, ...]:
    """``1`` or ``1,0.1``: the intervals a video's frames are sampled at (their union)."""
    values = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {item!r}") from None
        if not value >= 0 or value == float("inf"):
            raise argparse.ArgumentTypeError("seconds per hash must be 0 or more")
        values.append(value)
    return tuple(values)


def byte_count_arg(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of bytes: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("the byte cap must be positive")
    return value


def add_parser(commands: Any) -> None:
    from hashmatch.signals import DEFAULT_SIGNALS, Source, all_signals

    names = ", ".join(s.name for s in all_signals())
    # Images' defaults, and every video signal (vpdq) after the first: pdq,vpdq,md5.
    videos = [s for s in all_signals() if s.source is Source.VIDEO]
    defaults = [*DEFAULT_SIGNALS[:1], *videos, *DEFAULT_SIGNALS[1:]]
    default = ",".join(s.name for s in dict.fromkeys(defaults))
    command = commands.add_parser(
        "hash",
        help="hash image and video files and folders locally",
        description="Hash image and video files (folders recursively); what a file is comes "
        "from its bytes. Nothing leaves this machine; share the output. Pixel signals (pdq, "
        "phash) apply to images, vpdq to videos, digests (md5, sha256) to both; what does not "
        "apply to a file is skipped for it. Exit status 1 if any file failed.",
    )
    command.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    command.add_argument(
        "-a",
        "--algorithms",
        default=default,
        help=f"comma-separated: {names} (default: {default}: pdq,md5 for images, vpdq,md5 for "
        "videos)",
    )
    command.add_argument(
        "-f",
        "--format",
        choices=["jsonl", "csv", "tx", "vpdq"],
        default="jsonl",
        help="jsonl (default; a video is one record with its frames), csv with a header row, "
        "tx lines ('pdq <hex>'), or vpdq: Meta's text form of one video's frames (several "
        f"videos: one DIR/<name>{VPDQ_SUFFIX} each, with -o DIR). csv and tx cannot carry a "
        "video's frames: only its digests are written there",
    )
    command.add_argument(
        "-o", "--output", help="write here instead of standard output (-f vpdq: a folder)"
    )
    command.add_argument(
        "-j", "--jobs", type=int, default=0, help="worker processes (default: all cores)"
    )
    command.add_argument(
        "--seconds-per-hash",
        type=seconds_per_hash_arg,
        help="videos: one frame hashed every this many seconds, or the union of several "
        "(1,0.1); 0: every frame. Default 1,0.1: vPDQ's frames a second apart and those a tenth "
        "apart, so that clips and stills cut anywhere in a listed video are found (about 10x "
        "the frames of 1 alone; see the README). Use 1 for plain vPDQ, or to hash uploads for "
        "/v1/match/hashes",
    )
    command.add_argument(
        "--max-video-bytes",
        type=byte_count_arg,
        help=f"largest video to hash (default: {CLI_MAX_VIDEO_BYTES:_}). A video is read into "
        "memory and decoded from there, so each worker (-j) needs about that much RAM; the "
        "other video limits come from HASHMATCH_MAX_VIDEO_* settings",
    )
    command.add_argument(
        "--summary", action="store_true", help="always print a summary line on stderr"
    )
    command.set_defaults(handler=run)
