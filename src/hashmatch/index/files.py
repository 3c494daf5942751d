"""The on-disk form of an index: one file, a JSON header, then raw aligned numpy arrays.

Loading reads each array straight into memory with ``np.fromfile`` (no parsing, no pickle), so
a 10-million-code index loads at disk or page-cache speed. Saving writes a temporary file and
renames it over the target, so a crash mid-save leaves the previous file intact.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"HMINDEX1"
ALIGN = 64
_DTYPES = {"uint8", "uint32", "int32", "int64", "bool"}


def _aligned(offset: int) -> int:
    return -(-offset // ALIGN) * ALIGN


def save_arrays(
    path: str | os.PathLike[str], meta: dict[str, Any], arrays: dict[str, np.ndarray]
) -> None:
    target = Path(path)
    entries: list[dict[str, Any]] = []
    header_size = ALIGN * 64  # room for the JSON header, grown below if needed
    while True:
        offset = header_size
        entries = []
        for name, array in arrays.items():
            entries.append(
                {
                    "name": name,
                    "dtype": str(array.dtype),
                    "shape": list(array.shape),
                    "offset": offset,
                    "nbytes": int(array.nbytes),
                }
            )
            offset = _aligned(offset + array.nbytes)
        header = json.dumps({"meta": meta, "arrays": entries}).encode()
        if len(MAGIC) + 8 + len(header) <= header_size:
            break
        header_size = _aligned(len(MAGIC) + 8 + len(header))
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as f:
            f.write(MAGIC + len(header).to_bytes(8, "little") + header)
            for entry, array in zip(entries, arrays.values(), strict=True):
                f.seek(int(entry["offset"]))
                np.ascontiguousarray(array).tofile(f)
            f.flush()
            os.fsync(f.fileno())
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)


def load_arrays(
    path: str | os.PathLike[str], kind: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    source = Path(path)
    size = source.stat().st_size
    with source.open("rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise ValueError(f"{source} is not a hashmatch index file")
        header_length = int.from_bytes(f.read(8), "little")
        if header_length > size:
            raise ValueError(f"{source}: corrupt header length")
        try:
            header = json.loads(f.read(header_length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{source}: corrupt header ({exc})") from None
        meta = header.get("meta", {})
        if meta.get("kind") != kind:
            raise ValueError(f"{source} holds a {meta.get('kind')!r} index, not {kind!r}")
        arrays = {}
        for entry in header["arrays"]:
            dtype, shape = entry["dtype"], tuple(int(n) for n in entry["shape"])
            if dtype not in _DTYPES or any(n < 0 for n in shape):
                raise ValueError(f"{source}: unexpected array {entry['name']!r}")
            count = math.prod(shape)
            nbytes = count * np.dtype(dtype).itemsize
            if nbytes != entry["nbytes"] or (nbytes and entry["offset"] + nbytes > size):
                raise ValueError(f"{source}: array {entry['name']!r} is truncated")
            f.seek(entry["offset"])
            arrays[entry["name"]] = np.fromfile(f, dtype=dtype, count=count).reshape(shape)
    return meta, arrays
