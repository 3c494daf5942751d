"""Hashing many local files: walking folders and spreading the work over processes.

This is the agencies' side: their material never leaves their machine, only the hashes do.
Results come back in input order, each file either hashed or failed with a reason; one bad
file never stops the run.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from hashmatch.errors import HashmatchError, UnreadableFile
from hashmatch.media import MediaLimits, check_size
from hashmatch.signals import Hash, SignalType, hash_bytes


@dataclass(frozen=True, slots=True)
class FileResult:
    path: str
    size: int
    hashes: tuple[Hash, ...] = ()
    error: HashmatchError | None = None


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named, and files below folders named, in a stable order.

    Hidden files and folders (dot names) inside a walked folder are skipped; a path named
    explicitly is always included, so that a missing or unreadable one is reported.
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


def hash_file(path: Path, algorithms: Sequence[SignalType], limits: MediaLimits) -> FileResult:
    """Hash one file; any failure becomes the result's ``error``, never an exception."""
    name = str(path)
    size = 0
    try:
        size = path.stat().st_size
        check_size(size, limits)
        data = path.read_bytes()
        hashes = hash_bytes(data, algorithms, limits)
    except HashmatchError as exc:
        return FileResult(name, size, error=exc)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return FileResult(name, size, error=UnreadableFile(f"cannot read file: {reason}"))
    return FileResult(name, len(data), tuple(hashes))


def _hash_chunk(
    paths: Sequence[Path], algorithms: Sequence[SignalType], limits: MediaLimits
) -> list[FileResult]:
    return [hash_file(path, algorithms, limits) for path in paths]


def hash_files(
    paths: Iterable[Path],
    algorithms: Sequence[SignalType],
    limits: MediaLimits,
    jobs: int = 1,
    chunk_size: int = 4,
) -> Iterator[FileResult]:
    """Hash every file, in order, with ``jobs`` worker processes (1: in this process)."""
    if jobs <= 1:
        for path in paths:
            yield hash_file(path, algorithms, limits)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        yield from _ordered(pool, _chunks(paths, chunk_size), algorithms, limits, jobs * 4)


def _chunks(paths: Iterable[Path], size: int) -> Iterator[list[Path]]:
    chunk: list[Path] = []
    for path in paths:
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
    window: int,
) -> Iterator[FileResult]:
    """Keep ``window`` chunks in flight: bounded memory however many files there are."""
    pending: deque[Future[list[FileResult]]] = deque()
    for chunk in chunks:
        pending.append(pool.submit(_hash_chunk, chunk, algorithms, limits))
        if len(pending) >= window:
            yield from pending.popleft().result()
    while pending:
        yield from pending.popleft().result()


def default_jobs() -> int:
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)
