"""Lines of a hash set, read in bounded memory.

A hash set may be a 2 GB file without a newline: the stream is read in 64 KiB chunks and no
line is held beyond ``max_line_bytes``; a longer line is reported (as ``None``) and skipped up
to its newline. ``\n`` and ``\r\n`` both end a line; a UTF-8 byte order mark on the first line
is dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO, Final

CHUNK_BYTES: Final = 1 << 16
BOM: Final = b"\xef\xbb\xbf"


def split_lines(stream: BinaryIO, max_line_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, line without its \\n or \\r\\n)``; ``None`` for a line over the limit.

    Holds at most one chunk plus ``max_line_bytes + 1`` bytes of a line (the extra byte being
    a ``\\r`` that may turn out to end it); an over-long line is dropped as it is read.
    """
    number = 0
    pending = bytearray()
    too_long = False
    while True:
        chunk = stream.read(CHUNK_BYTES)
        if not isinstance(chunk, bytes | bytearray):
            raise TypeError(f"hash sets are read from a binary stream, read {type(chunk).__name__}")
        if not chunk:
            break
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            stop = len(chunk) if end < 0 else end
            if not too_long:
                if len(pending) + stop - start > max_line_bytes + 1:
                    too_long = True  # drop what we have; skip the rest up to the newline
                    pending.clear()
                else:
                    pending += chunk[start:stop]
            if end < 0:
                break
            number += 1
            yield number, _finish(pending, number, too_long, max_line_bytes)
            pending.clear()
            too_long = False
            start = end + 1
    if pending or too_long:
        number += 1
        yield number, _finish(pending, number, too_long, max_line_bytes)


def _finish(pending: bytearray, number: int, too_long: bool, max_line_bytes: int) -> bytes | None:
    if too_long:
        return None
    line = bytes(pending[:-1] if pending.endswith(b"\r") else pending)
    if number == 1:
        line = line.removeprefix(BOM)
    return None if len(line) > max_line_bytes else line
