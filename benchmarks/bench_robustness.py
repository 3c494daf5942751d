"""Robustness on real photographs: recall at 99.99% precision, per transform and pipeline.

For every photo of the corpus (real photographs nobody on the team made, see ``corpus.py``) and
every transform of ``transforms.py``, the transformed upload is hashed by each pipeline and
compared with the hash of every original:

- ``pdq_hma``: PDQ as Meta's HMA computes it (full-resolution RGB, one hash, no variants);
- ``phash``: imagehash's pHash, one hash;
- ``hashmatch``: the service's query path (:func:`hashmatch.signals.query_hashes`): PDQ of the
  8 rotations and flips and of the picture inside a frame; the distance to an original is the
  smallest over those variants, so every variant's false positives are counted.

Per transform and pipeline it reports the largest threshold that keeps precision >= 99.99%
against all non-matching originals, the recall there, the recall at the service's default
thresholds, and the false positives of the defaults. ``all_pairs`` gives the false-positive
rate of the defaults over every pair of distinct photos. Results go to JSON, a markdown table
and a PNG chart; ``--check BASELINE`` fails when a recall drops more than a point below it.

    python benchmarks/bench_robustness.py [--quick] [--images DIR] [--out DIR] [--check FILE]
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus
from corpus import image_files
from hashmatch.errors import HashmatchError
from hashmatch.signals import PDQ, PHASH, VARIANT_PENALTY, hash_bytes, query_hashes
from transforms import TARGETS, TRANSFORMS, upload

PIPELINES = ("pdq_hma", "phash", "hashmatch")
BITS = {"pdq_hma": 256, "phash": 64, "hashmatch": 256}
PRECISION = 0.9999
#: Originals are brought to at most this long side: what a repost of a phone photo weighs,
#: and it keeps a 500-photo run within minutes.
WORKING_SIDE = 1024
SEED = 20261129


def default_threshold(pipeline: str) -> int:
    return (PHASH if pipeline == "phash" else PDQ).default_threshold


# --- hashing (in worker processes) ------------------------------------------------------------


def _pdq_hma(data: bytes) -> bytes:
    """HMA: the whole image decoded to RGB at full resolution, EXIF ignored, one PDQ (the
    service's PDQ of the pixels as given, without its reference-exact preparation)."""
    return PDQ.hash_image(Image.open(io.BytesIO(data)).convert("RGB")).value


def _phash(data: bytes) -> bytes:
    return PHASH.hash_image(Image.open(io.BytesIO(data))).value


Probe = list[tuple[bytes, int]]  # each hash of one upload, with the bits its match must beat


def _hashmatch_query(data: bytes) -> Probe:
    """The service's PDQ query hashes; variants pay the service's penalty, as they do there."""
    _, queries = query_hashes(data)
    return [
        (q.hash.value, VARIANT_PENALTY if q.penalised else 0)
        for q in queries
        if q.hash.algorithm is PDQ
    ]


def _original_bytes(path: Path) -> bytes:
    """The listed image: the photo at no more than WORKING_SIDE, as a high-quality JPEG."""
    with Image.open(path) as opened:
        image = opened.convert("RGB")
        image.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=95)
        return buffer.getvalue()


def hash_photo(task: tuple[int, str, Sequence[str]]) -> dict[str, Any]:
    """Stored hashes of one original and query hashes of each of its transformed uploads, or
    ``{"error": ...}`` for a file that cannot be read or decoded (it is left out, not fatal)."""
    try:
        return _hash_photo(*task)
    except (OSError, ValueError, HashmatchError) as exc:
        return {"error": f"{task[1]}: {exc}"}


def _hash_photo(index: int, path: str, transforms: Sequence[str]) -> dict[str, Any]:
    original = _original_bytes(Path(path))
    image = Image.open(io.BytesIO(original)).convert("RGB")
    stored = {
        "pdq_hma": _pdq_hma(original),
        "phash": _phash(original),
        "hashmatch": hash_bytes(original, [PDQ])[0].value,
    }
    queries: dict[str, dict[str, Probe]] = {}
    for position, name in enumerate(transforms):
        rng = np.random.default_rng([SEED, index, position])
        data = upload(image, name, rng)
        queries[name] = {
            "pdq_hma": [(_pdq_hma(data), 0)],
            "phash": [(_phash(data), 0)],
            "hashmatch": _hashmatch_query(data),
        }
    # The original itself as an upload, through every variant: for the all-pairs false positives.
    return {"stored": stored, "queries": queries, "identity": _hashmatch_query(original)}


# --- scoring ----------------------------------------------------------------------------------


def _words(codes: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(codes), dtype=np.uint64).reshape(len(codes), -1)


def distance_matrix(queries: list[Probe], stored: list[bytes]) -> np.ndarray:
    """(n, n): the smallest distance (plus its penalty) from any variant of query i to
    original j: matching at threshold t is then ``distance <= t``, as in the service."""
    stored_words = _words(stored)
    out = np.empty((len(queries), len(stored)), dtype=np.int32)
    for i, variants in enumerate(queries):
        codes = _words([code for code, _ in variants])
        penalties = np.asarray([penalty for _, penalty in variants])[:, np.newaxis]
        xor = codes[:, np.newaxis, :] ^ stored_words[np.newaxis, :, :]
        out[i] = (np.bitwise_count(xor).sum(axis=2) + penalties).min(axis=0)
    return out


def counts(distances: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives at every threshold 0..bits: query i's own original is the
    match, every other original a false one."""
    n = distances.shape[0]
    # A penalty may carry a distance past the hash's length: it then matches at no threshold.
    distances = np.minimum(distances, bits + 1)
    positives = np.diagonal(distances)
    negatives = distances[~np.eye(n, dtype=bool)]
    tp = np.cumsum(np.bincount(positives, minlength=bits + 2)[: bits + 1])
    fp = np.cumsum(np.bincount(negatives, minlength=bits + 2)[: bits + 1])
    return tp, fp


def threshold_at_precision(tp: np.ndarray, fp: np.ndarray) -> int:
    """The largest threshold below the first at which precision falls under PRECISION."""
    precision = tp / np.maximum(tp + fp, 1)
    failing = np.flatnonzero((tp + fp > 0) & (precision < PRECISION))
    return int(failing[0] - 1) if failing.size else int(tp.size - 1)


#: The false-positive budget the service's defaults are chosen for: one false match per 10^12
#: comparisons of distinct images (a 10M-entry list checked against 100,000 uploads).
FALSE_POSITIVE_BUDGET = 1e-12


def tail_threshold(
    distances: np.ndarray, budget: float = FALSE_POSITIVE_BUDGET
) -> dict[str, float]:
    """The threshold at which distinct pairs would match with probability ``budget``, by
    extrapolating the lower tail of their distances.

    A benchmark of n photos sees n^2 pairs, far fewer than a service compares; 99.99% precision
    on a few hundred photos allows thresholds no large list could bear. So the log of the
    empirical tail probability (from the closest pairs up to the 1st percentile, where it is
    close to a straight line) is fitted by least squares and followed down to ``budget``.
    """
    ordered = np.sort(distances)
    values, first = np.unique(ordered, return_index=True)
    cdf = (first + np.bincount(np.searchsorted(values, ordered))) / ordered.size
    # Points with at least 10 pairs at or below them, up to the 1st percentile.
    keep = (cdf * ordered.size >= 10) & (cdf <= 0.01)
    if keep.sum() < 3:
        return {"threshold": float("nan"), "bits_per_decade": float("nan")}
    slope, intercept = np.polyfit(values[keep], np.log10(cdf[keep]), 1)
    threshold = (np.log10(budget) - intercept) / slope
    return {"threshold": float(np.floor(threshold)), "bits_per_decade": float(1 / slope)}


def evaluate(photos: list[dict[str, Any]], transforms: Sequence[str]) -> dict[str, Any]:
    n = len(photos)
    tables: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for name in transforms:
        for pipeline in PIPELINES:
            stored = [p["stored"][pipeline] for p in photos]
            queries = [p["queries"][name][pipeline] for p in photos]
            tables[name, pipeline] = counts(distance_matrix(queries, stored), BITS[pipeline])
    thresholds = {key: threshold_at_precision(*value) for key, value in tables.items()}
    # One threshold per pipeline that holds the precision for every transform at once: the
    # service has one threshold per algorithm, not one per transform.
    common = {p: min(thresholds[name, p] for name in transforms) for p in PIPELINES}
    results: dict[str, dict[str, dict[str, float]]] = {}
    for (name, pipeline), (tp, fp) in tables.items():
        default = default_threshold(pipeline)
        results.setdefault(name, {})[pipeline] = {
            "threshold_at_precision": thresholds[name, pipeline],
            "recall_at_precision": float(tp[thresholds[name, pipeline]] / n),
            "recall_at_common": float(tp[common[pipeline]] / n),
            "recall_at_default": float(tp[default] / n),
            "false_positives_at_default": int(fp[default]),
        }
    all_pairs: dict[str, dict[str, Any]] = {}
    for pipeline in PIPELINES:
        stored = [p["stored"][pipeline] for p in photos]
        # The originals themselves as uploads (every variant of hashmatch's query included).
        identity = (
            [p["identity"] for p in photos]
            if pipeline == "hashmatch"
            else [[(code, 0)] for code in stored]
        )
        off = distance_matrix(identity, stored)[~np.eye(n, dtype=bool)]
        default = default_threshold(pipeline)
        all_pairs[pipeline] = {
            "pairs": int(off.size),
            "false_positives_at_default": int((off <= default).sum()),
            "false_positive_rate_at_default": float((off <= default).mean()),
            "closest_distinct_pair": int(off.min()),
            "distance_1st_percentile": float(np.percentile(off, 1)),
            "tail_fit": tail_threshold(off),
        }
    return {"transforms": results, "common_thresholds": common, "all_pairs": all_pairs}


# --- output -----------------------------------------------------------------------------------


SHOWN = ("hashmatch", "pdq_hma", "phash")


def markdown(result: dict[str, Any]) -> str:
    common = result["common_thresholds"]
    head = ["transform", "target"]
    head += [f"{p} @99.99% (t)" for p in SHOWN]
    head += [f"{p} @t={common[p]}" for p in SHOWN]
    head += [f"{p} @default t={default_threshold(p)}" for p in SHOWN]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in result["transforms"].items():
        target = TARGETS.get(name)
        cells = [name, f"{target:.1%}" if target else ""]
        cells += [
            f"{row[p]['recall_at_precision']:.1%} ({row[p]['threshold_at_precision']})"
            for p in SHOWN
        ]
        cells += [f"{row[p]['recall_at_common']:.1%}" for p in SHOWN]
        cells += [f"{row[p]['recall_at_default']:.1%}" for p in SHOWN]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "| pipeline | pairs of distinct photos | FP at default | FP rate | closest pair |",
        "|---|---|---|---|---|",
    ]
    for pipeline, r in result["all_pairs"].items():
        lines.append(
            f"| {pipeline} (t={default_threshold(pipeline)}) | {r['pairs']} | "
            f"{r['false_positives_at_default']} | {r['false_positive_rate_at_default']:.2e} | "
            f"{r['closest_distinct_pair']} |"
        )
    return "\n".join(lines) + "\n"


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    transforms = result["transforms"]
    names = list(transforms)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(14, 5))
    for offset, pipeline in zip((-0.27, 0, 0.27), SHOWN, strict=True):
        recalls = [transforms[n][pipeline]["recall_at_precision"] * 100 for n in names]
        ax.bar(x + offset, recalls, width=0.27, label=pipeline)
    ax.set_xticks(x, names, rotation=60, ha="right")
    ax.set_ylabel("recall at precision >= 99.99% (%)")
    ax.set_ylim(0, 101)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    ax.set_title("Recall by transform and pipeline", pad=28)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


METRICS = ("recall_at_precision", "recall_at_common", "recall_at_default")


def load_baseline(path: Path) -> dict[str, Any]:
    """A baseline written by this benchmark, checked before any photo is hashed."""
    try:
        baseline = json.loads(path.read_text())
        rows = baseline["transforms"]
        for row in rows.values():
            for old in row.values():
                if not all(isinstance(old[metric], int | float) for metric in METRICS):
                    raise TypeError("a recall is not a number")
    except OSError as exc:
        sys.exit(f"cannot read the baseline {path}: {exc.strerror}")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        sys.exit(f"{path} is not a robustness baseline ({type(exc).__name__}: {exc})")
    return dict(baseline)


def check(result: dict[str, Any], baseline: dict[str, Any], tolerance: float = 0.01) -> list[str]:
    """Every recall that fell more than ``tolerance`` below the baseline (or is missing from
    this run), and every default threshold that no longer keeps precision >= 99.99% on every
    transform."""
    drops = [
        f"{pipeline} default {default_threshold(pipeline)} is above the threshold that keeps "
        f"99.99% precision on every transform ({common})"
        for pipeline, common in result.get("common_thresholds", {}).items()
        if default_threshold(pipeline) > common
    ]
    for name, row in baseline["transforms"].items():
        for pipeline, old in row.items():
            new = result["transforms"].get(name, {}).get(pipeline)
            if new is None:
                drops.append(f"{name} {pipeline}: in the baseline but not measured")
                continue
            for metric in METRICS:
                if new[metric] < old[metric] - tolerance:
                    drops.append(
                        f"{name} {pipeline} {metric}: {old[metric]:.3f} -> {new[metric]:.3f}"
                    )
    return drops


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, help="a folder of photos instead of the corpus")
    parser.add_argument("--quick", action="store_true", help="about 150 photos (for CI)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N photos")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--check", type=Path, help="baseline JSON: fail on a drop > 1 point")
    parser.add_argument("--jobs", type=_positive, default=os.cpu_count() or 1)
    args = parser.parse_args()

    baseline = load_baseline(args.check) if args.check else None
    if args.images is not None and not args.images.is_dir():
        sys.exit(f"--images {args.images}: not a folder")
    folder = args.images or corpus.robustness_photos(quick=args.quick)
    paths = image_files(folder, min_pixels=256 * 256)
    if args.limit:
        paths = paths[: args.limit]
    transforms = list(TRANSFORMS)
    settings = {
        "photos": len(paths),
        "corpus": "--images" if args.images else ("quick" if args.quick else "full"),
        "transforms": transforms,
        "pipelines": list(PIPELINES),
        "precision": PRECISION,
        "working_side": WORKING_SIDE,
        "defaults": {p: default_threshold(p) for p in PIPELINES},
        "seed": SEED,
        "jobs": args.jobs,
        "python": platform.python_version(),
    }
    print("settings:", json.dumps(settings), flush=True)
    started = time.monotonic()
    tasks = [(i, str(p), transforms) for i, p in enumerate(paths)]
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        hashed = list(
            tqdm(pool.imap(hash_photo, tasks, chunksize=2), total=len(tasks), desc="photos")
        )
    photos = [photo for photo in hashed if "error" not in photo]
    for photo in hashed:
        if "error" in photo:
            print(f"left out: {photo['error']}", file=sys.stderr)
    if len(photos) < 2:
        sys.exit(f"{folder}: {len(photos)} usable photos of at least 256x256; need 2 or more")
    settings["photos"] = len(photos)
    result = {"settings": settings, **evaluate(photos, transforms)}
    result["seconds"] = time.monotonic() - started
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "robustness-quick" if args.quick else "robustness"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (args.out / f"{stem}.md").write_text(table)
    chart(result, args.out / f"{stem}.png")
    print(table)
    print(json.dumps(result))
    if args.check and baseline is not None:
        drops = check(result, baseline)
        if drops:
            print("robustness check failed:", *drops, sep="\n  ")
            sys.exit(1)
        print(f"no recall more than 1 point below {args.check}; defaults within 99.99% precision")


if __name__ == "__main__":
    main()
