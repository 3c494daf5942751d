"""Hashing many local files: walking folders and spreading the work over processes.

This is the agencies' side: their material never leaves their machine, only the hashes do.
Results come back in input order, each file either hashed or failed with a reason; one bad
file never stops the run.

Images and videos go through the same run, told apart by their bytes (never by their names):
the algorithms asked for apply where they can (pixel signals to images, ``vpdq`` to videos,
digests of the bytes to both) and the rest are skipped for that file. A file none of them
applies to (an image when only ``vpdq`` is asked) is skipped, with a note, not failed: "hash the
videos of this folder" is a fair request.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from hashmatch.errors import HashmatchError, UnreadableFile, UnsupportedMedia
from hashmatch.media import MediaLimits, check_size
from hashmatch.media.video import DEFAULT_VIDEO_LIMITS, VideoInfo, VideoLimits, identify_video
from hashmatch.signals import Hash, SignalType, Source, hash_bytes
from hashmatch.signals.vpdq import FrameHash, frames_digest, hash_video

#: Suffixes of the video files a folder walk is expected to hold. A walk takes every file
#: whatever its name (content decides what it is); these only give a video a worker of its own.
VIDEO_SUFFIXES: Final = frozenset(
    {".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi", ".mpg", ".mpeg", ".ts", ".ogv", ".ogg"}
)
#: Bytes read to tell a video from an image before reading the whole file: every container's
#: signature (and MPEG-TS's sync bytes) lies well within it.
HEAD_BYTES: Final = 64 * 1024
#: Bytes read at a time when a video's digests are computed over its file.
_CHUNK_BYTES: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class VideoOptions:
    """How videos are hashed: vPDQ's sampling, and the limits a video must stay within."""

    limits: VideoLimits = DEFAULT_VIDEO_LIMITS
    #: One frame hashed every this many seconds; 0: every frame.
    seconds_per_hash: tuple[float, ...] = (1.0,)


DEFAULT_VIDEO_OPTIONS: Final = VideoOptions()


@dataclass(frozen=True, slots=True)
class VideoResult:
    """A video's vPDQ frames (``hashes`` holds their digest) and what was decoded."""

    frames: tuple[FrameHash, ...]
    info: VideoInfo | None = None


@dataclass(frozen=True, slots=True)
class FileResult:
    path: str
    size: int
    hashes: tuple[Hash, ...] = ()
    error: HashmatchError | None = None
    #: A video's frames, when ``vpdq`` was asked for.
    video: VideoResult | None = None
    #: The container's name for a video (``mp4``, ``matroska``, ...); ``None`` for an image.
    container: str | None = None
    #: Why nothing was hashed, for a file no algorithm asked for applies to (not an error).
    skipped: str | None = None


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named, and files below folders named, in a stable order.

    Hidden files and folders (dot names) inside a walked folder are skipped; a path named
    explicitly is always included, so that a missing or unreadable one is reported. Every
    other file is taken, images and videos (:data:`VIDEO_SUFFIXES`) alike: what a file is
    comes from its bytes.
    """
    for path in paths:
        if not path.is_dir():
            yield path
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith("."):
                    yield Path(root) / name


def for_video(algorithms: Sequence[SignalType]) -> tuple[SignalType, ...]:
    """What applies to a video: its own signals and digests of its bytes."""
    return tuple(a for a in algorithms if a.source in (Source.VIDEO, Source.BYTES))


def for_image(algorithms: Sequence[SignalType]) -> tuple[SignalType, ...]:
    """What applies to an image: every algorithm but videos'."""
    return tuple(a for a in algorithms if a.source is not Source.VIDEO)


def hash_file(
    path: Path,
    algorithms: Sequence[SignalType],
    limits: MediaLimits,
    video: VideoOptions = DEFAULT_VIDEO_OPTIONS,
) -> FileResult:
    """Hash one file, an image or a video; any failure becomes the result's ``error``, never
    an exception."""
    name = str(path)
    size = 0
    try:
        size = path.stat().st_size
        with path.open("rb") as stream:
            head = stream.read(HEAD_BYTES)
            container, refused = _identify(head)
            if container is not None:
                return _hash_video(name, size, stream, container, algorithms, video)
            if refused is not None and _decodes(algorithms):
                # Video-like but refused (FLV, a playlist, audio): say what it is, unless
                # only digests of its bytes were asked for.
                raise refused
            chosen = for_image(algorithms)
            if not chosen:
                return FileResult(name, size, skipped=_none_apply("not a video", algorithms))
            check_size(size, limits)
            data = _whole(stream)
        hashes = hash_bytes(data, chosen, limits)
    except HashmatchError as exc:
        return FileResult(name, size, error=exc)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return FileResult(name, size, error=UnreadableFile(f"cannot read file: {reason}"))
    return FileResult(name, len(data), tuple(hashes))


def _identify(head: bytes) -> tuple[str | None, UnsupportedMedia | None]:
    """The video container of a file's first bytes, or why a video-like file is refused."""
    if not head:
        return None, None  # empty: the image path reports it
    try:
        return identify_video(head), None
    except UnsupportedMedia as refused:
        return None, refused


def _whole(stream: BinaryIO) -> bytes:
    """The whole file in one read: one copy in memory (a 4 GB video must not take 8)."""
    stream.seek(0)
    return stream.read()


def _decodes(algorithms: Sequence[SignalType]) -> bool:
    return any(a.source is not Source.BYTES for a in algorithms)


def _hash_video(
    name: str,
    size: int,
    stream: BinaryIO,
    container: str,
    algorithms: Sequence[SignalType],
    options: VideoOptions,
) -> FileResult:
    """A video: its size checked before it is read, decoded from the open file (a few frames
    in memory, never the whole file), its frames hashed once whatever else is asked, and its
    digests computed over the file in chunks."""
    chosen = for_video(algorithms)
    if not chosen:
        return FileResult(name, size, skipped=_none_apply(f"a video ({container})", algorithms))
    check_size(size, MediaLimits(max_bytes=options.limits.max_bytes))
    hashed = None
    hashes: list[Hash] = []
    for signal in chosen:
        if signal.source is Source.VIDEO:
            if hashed is None:
                stream.seek(0)
                hashed = hash_video(
                    stream, seconds_per_hash=options.seconds_per_hash, limits=options.limits
                )
            hashes.append(Hash(signal, frames_digest(hashed.frames)))
        else:
            hashes.append(_streamed_digest(signal, stream))
    video = None if hashed is None else VideoResult(hashed.frames, hashed.info)
    return FileResult(name, size, tuple(hashes), video=video, container=container)


def _streamed_digest(signal: SignalType, stream: BinaryIO) -> Hash:
    """A digest of a whole file read in chunks, for the digests hashlib knows by name (md5,
    sha256); any other digest gets the file's bytes at once."""
    stream.seek(0)
    if signal.name not in hashlib.algorithms_available:
        return signal.hash_bytes(stream.read())
    digest = hashlib.new(signal.name, usedforsecurity=False)
    while chunk := stream.read(_CHUNK_BYTES):
        digest.update(chunk)
    return Hash(signal, digest.digest())


def _none_apply(what: str, algorithms: Sequence[SignalType]) -> str:
    asked = ",".join(a.name for a in algorithms)
    return f"{what}: none of the algorithms asked for ({asked}) applies"


def _hash_chunk(
    paths: Sequence[Path],
    algorithms: Sequence[SignalType],
    limits: MediaLimits,
    video: VideoOptions,
) -> list[FileResult]:
    return [hash_file(path, algorithms, limits, video) for path in paths]


def hash_files(
    paths: Iterable[Path],
    algorithms: Sequence[SignalType],
    limits: MediaLimits,
    jobs: int = 1,
    chunk_size: int = 4,
    video: VideoOptions = DEFAULT_VIDEO_OPTIONS,
) -> Iterator[FileResult]:
    """Hash every file, in order, with ``jobs`` worker processes (1: in this process)."""
    if jobs <= 1:
        for path in paths:
            yield hash_file(path, algorithms, limits, video)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        chunks = _chunks(paths, chunk_size)
        yield from _ordered(pool, chunks, algorithms, limits, video, jobs * 4)


def _chunks(paths: Iterable[Path], size: int) -> Iterator[list[Path]]:
    """Small files travel to the workers a few at a time; a video (by its name) goes alone,
    so that long decodes spread over the workers and progress shows file by file."""
    chunk: list[Path] = []
    for path in paths:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            if chunk:
                yield chunk
                chunk = []
            yield [path]
            continue
        chunk.append(path)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _ordered(
    pool: Executor,
    chunks: Iterator[list[Path]],
    algorithms: Sequence[SignalType],
    limits: MediaLimits,
    video: VideoOptions,
    window: int,
) -> Iterator[FileResult]:
    """Keep ``window`` chunks in flight: bounded memory however many files there are."""
    pending: deque[Future[list[FileResult]]] = deque()
    for chunk in chunks:
        pending.append(pool.submit(_hash_chunk, chunk, algorithms, limits, video))
        if len(pending) >= window:
            yield from pending.popleft().result()
    while pending:
        yield from pending.popleft().result()


def default_jobs() -> int:
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)
