"""Hashing throughput on real photographs: hashmatch vs HMA's approach vs the decode floor.

Each round runs every pipeline over the same in-memory files, one thread, interleaved so that
machine noise hits all of them alike; the median round counts. Also measures how far each
pipeline's PDQ lands from Meta's reference preparation (``thumbnail((512, 512))``).

    python benchmarks/bench_hashing.py [--images DIR] [--rounds 5] [--min-megapixels 2]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import imagehash
import numpy as np
import pdqhash
import PIL
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import image_files, photo_dir
from hashmatch.media import HASH_SIDE
from hashmatch.signals import MD5, PDQ, PHASH, Hash, hash_bytes

ALGORITHMS = (PDQ, PHASH, MD5)


def _pdq_hex(pixels: np.ndarray) -> str:
    bits, _quality = pdqhash.compute(pixels)
    return bytes(np.packbits(np.asarray(bits, dtype=np.uint8))).hex()


def hashmatch_pipeline(data: bytes) -> str:
    return hash_bytes(data, ALGORITHMS)[0].hex


def hma_pipeline(data: bytes) -> str:
    """HMA: full-resolution decode, PDQ and pHash on every pixel, no EXIF handling."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    pdq = _pdq_hex(np.asarray(image))
    imagehash.phash(image)
    hashlib.md5(data, usedforsecurity=False).digest()
    return pdq


def reference_pdq(data: bytes) -> str:
    """Meta's reference preparation, thumbnail((512, 512)) then PDQ, of the upright image.

    EXIF orientation is applied after the thumbnail so that drift is measured on the same
    picture hashmatch hashes, not counted for rotating it the way it is displayed.
    """
    image = Image.open(io.BytesIO(data))
    image.thumbnail((HASH_SIDE, HASH_SIDE))
    upright = ImageOps.exif_transpose(image)
    return _pdq_hex(np.asarray(upright.convert("RGB")))


def floor_rgb(data: bytes) -> None:
    """The bare reduced-size decode, colour: JPEG DCT scaling to >= 512 px, nothing else."""
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", (HASH_SIDE, HASH_SIDE))
    image.load()


def floor_same(data: bytes) -> None:
    """The bare decode hashmatch does (luma-only where it drafts), without any hashing."""
    image = Image.open(io.BytesIO(data))
    if image.format == "JPEG":
        luma = image.mode == "RGB" and min(image.size) >= 2 * HASH_SIDE
        image.draft("L" if luma else None, (HASH_SIDE, HASH_SIDE))
    image.load()


PIPELINES: dict[str, Callable[[bytes], object]] = {
    "hashmatch": hashmatch_pipeline,
    "hma": hma_pipeline,
    "floor_same_decode": floor_same,
    "floor_rgb_decode": floor_rgb,
}


def time_round(pipeline: Callable[[bytes], object], datas: list[bytes]) -> float:
    start = time.perf_counter()
    for data in datas:
        pipeline(data)
    return len(datas) / (time.perf_counter() - start)


def drift(datas: list[bytes]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    references = [Hash.from_hex("pdq", reference_pdq(d)) for d in datas]
    upright = [d for d in datas if _orientation(d) == 1]  # HMA ignores EXIF orientation
    out["upright_files"] = {"count": len(upright)}
    for name in ("hashmatch", "hma"):
        pipeline = PIPELINES[name]
        bits = [
            Hash.from_hex("pdq", str(pipeline(d))).distance(r)
            for d, r in zip(datas, references, strict=True)
            if name == "hashmatch" or _orientation(d) == 1
        ]
        out[name] = {"mean_bits": statistics.fmean(bits), "max_bits": max(bits)}
    return out


def _orientation(data: bytes) -> int:
    value = Image.open(io.BytesIO(data)).getexif().get(0x0112, 1)
    return value if isinstance(value, int) else 1


def cli_startup(sample: Path) -> float:
    """Wall time of ``hashmatch hash`` on one file, process start included (best of 3)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "hashmatch", "hash", "-j", "1", str(sample)],
            check=True,
            capture_output=True,
        )
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, help="folder of photos (default: the corpus)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-megapixels", type=float, default=2.0)
    parser.add_argument("--limit", type=int, default=0, help="use at most this many files")
    parser.add_argument(
        "--formats", default="JPEG", help="comma-separated Pillow formats to keep (default JPEG)"
    )
    args = parser.parse_args()

    folder = args.images or photo_dir()
    formats = {f.strip().upper() for f in args.formats.split(",")}
    files = image_files(folder, int(args.min_megapixels * 1_000_000), formats)
    if args.limit:
        files = files[: args.limit]
    if not files:
        sys.exit(f"no images of >= {args.min_megapixels} MP under {folder}")
    datas = [f.read_bytes() for f in files]
    megapixels = [Image.open(io.BytesIO(d)).size for d in datas]
    settings = {
        "images": str(folder),
        "files": len(files),
        "mean_megapixels": statistics.fmean(w * h / 1e6 for w, h in megapixels),
        "mean_bytes": statistics.fmean(len(d) for d in datas),
        "formats": sorted(formats),
        "rounds": args.rounds,
        "algorithms": [a.name for a in ALGORITHMS],
        "threads": 1,
        "python": platform.python_version(),
        "pillow": PIL.__version__,
        "machine": platform.machine(),
    }
    print("settings:", json.dumps(settings), flush=True)

    for pipeline in PIPELINES.values():  # warm-up: imports, allocator, caches
        pipeline(datas[0])
    rates: dict[str, list[float]] = {name: [] for name in PIPELINES}
    for round_index in range(args.rounds):
        names = list(PIPELINES)
        names = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in names:
            rates[name].append(time_round(PIPELINES[name], datas))
    median = {name: statistics.median(values) for name, values in rates.items()}

    result = {
        "settings": settings,
        "images_per_second": median,
        "ms_per_image": {name: 1000 / rate for name, rate in median.items()},
        "ratios": {
            "hashmatch_vs_hma_throughput": median["hashmatch"] / median["hma"],
            "hashmatch_time_vs_same_decode_floor": median["floor_same_decode"]
            / median["hashmatch"],
            "hashmatch_time_vs_rgb_decode_floor": median["floor_rgb_decode"] / median["hashmatch"],
        },
        "pdq_bits_from_reference": drift(datas),
        "cli_one_file_seconds": cli_startup(files[0]),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
