"""Crops and small rotations at the service's default rule: index-side vs query-side hashes.

Exploration for the robustness issue on reframed reposts (crops, small turns, caption boxes,
busy frames). The rule is the service's default: PDQ within 31 bits for the image as submitted,
within 31 - VARIANT_PENALTY (25) for a match through any other hash. Four directions:

- ``a``: today: the query path (:func:`bench_robustness._hashmatch_query`) against the listed
  image's single PDQ (``hashmatch hash`` of the original);
- ``b_K*``: index-side augmentation: the entry also listed with K PDQs of reframed originals
  (centred and one-sided crops, turns with their inner crop), each hashed by ``hashmatch hash``
  (:func:`hash_bytes`). ``_pen`` sets make a match through a listed extra beat 25 bits too;
- ``c*``: query-side: the upload also hashed after inner crops and de-rotations (``c6``), and
  of its mirror image too (``c12``), each a variant at 25 bits;
- ``d_*``: both.

Per configuration: recall per transform at the rule; over all pairs of distinct photos the
closest query-hash / listed-hash distance, the pairs within the rule, and the expected false
matches per query against a 10M-entry list from a fit of the lower tail of the per-pair
distances (as :func:`bench_robustness.tail_threshold` fits it); K (index memory multiple is
1 + K) and query hashes per upload.

    python benchmarks/bench_reframing.py [--photos N] [--jobs 2]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus
import transforms as tf
from bench_robustness import SEED, WORKING_SIDE, _hashmatch_query, _original_bytes, _words
from corpus import image_files
from hashmatch.errors import HashmatchError
from hashmatch.media import decode
from hashmatch.signals import PDQ, VARIANT_PENALTY, hash_bytes

RULE = PDQ.default_threshold  # 31: the image as submitted
LIST_SIZE = 10_000_000
#: The issue's budget: expected false matches per query against a LIST_SIZE-entry list.
PER_QUERY_BUDGET = 1e-6
QUICK_PHOTOS = 150
#: Padding for absent hashes: never within any rule.
FAR = 10_000


# --- geometry ---------------------------------------------------------------------------------


def inner_scale(degrees: float, width: int, height: int) -> float:
    """The largest scale s such that the centred s*width x s*height rectangle lies inside the
    frame turned by ``degrees`` (the corners a turn exposes are then cut away)."""
    theta = math.radians(abs(degrees))
    c, s = math.cos(theta), math.sin(theta)
    half_w, half_h = width / 2, height / 2
    return min(half_w / (half_w * c + half_h * s), half_h / (half_w * s + half_h * c))


def centred_crop(image: Image.Image, share: float) -> Image.Image:
    """Keep ``1 - share`` of each side, centred."""
    keep_w, keep_h = round(image.width * (1 - share)), round(image.height * (1 - share))
    left, top = (image.width - keep_w) // 2, (image.height - keep_h) // 2
    return image.crop((left, top, left + keep_w, top + keep_h))


def side_crop(image: Image.Image, share: float, side: str) -> Image.Image:
    """Cut ``share`` of the width (left, right) or of the height (top, bottom) from one side."""
    w, h = image.size
    cut_w, cut_h = round(w * share), round(h * share)
    box = {
        "left": (cut_w, 0, w, h),
        "right": (0, 0, w - cut_w, h),
        "top": (0, cut_h, w, h),
        "bottom": (0, 0, w, h - cut_h),
    }[side]
    return image.crop(box)


def corner_crop(image: Image.Image, share: float, corner: str) -> Image.Image:
    """Keep ``1 - share`` of each side, anchored at one corner (``"tl"``, ``"tr"``, ...)."""
    keep_w, keep_h = round(image.width * (1 - share)), round(image.height * (1 - share))
    left = image.width - keep_w if corner[1] == "r" else 0
    top = image.height - keep_h if corner[0] == "b" else 0
    return image.crop((left, top, left + keep_w, top + keep_h))


def turn_inner(image: Image.Image, degrees: float) -> Image.Image:
    """Turned about the centre, then the largest centred crop (same aspect) with no corner."""
    turned = image.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=False)
    return centred_crop(turned, 1 - inner_scale(degrees, image.width, image.height))


Reframe = Callable[[Image.Image], Image.Image]


def _crop_op(share: float) -> Reframe:
    return lambda image: centred_crop(image, share)


def _side_op(share: float, side: str) -> Reframe:
    return lambda image: side_crop(image, share, side)


def _corner_op(share: float, corner: str) -> Reframe:
    return lambda image: corner_crop(image, share, corner)


def _turn_op(degrees: float) -> Reframe:
    return lambda image: turn_inner(image, degrees)


#: Reframings of the original that may be listed beside its own PDQ (index side).
LISTED: dict[str, Reframe] = {
    "crop5": _crop_op(0.05),
    "crop10": _crop_op(0.10),
    "left10": _side_op(0.10, "left"),
    "right10": _side_op(0.10, "right"),
    "top10": _side_op(0.10, "top"),
    "bottom10": _side_op(0.10, "bottom"),
    "turn+3": _turn_op(3),
    "turn-3": _turn_op(-3),
    "turn+6": _turn_op(6),
    "turn-6": _turn_op(-6),
    "turn+4.5": _turn_op(4.5),
    "turn-4.5": _turn_op(-4.5),
    **{f"corner5_{corner}": _corner_op(0.05, corner) for corner in ("tl", "tr", "bl", "br")},
}

#: The listed sets tried: K extra hashes per entry.
LISTED_SETS: dict[str, list[str]] = {
    "K2": ["crop5", "crop10"],
    "K6": ["crop5", "crop10", "left10", "right10", "top10", "bottom10"],
    "K4": ["crop5", "crop10", "turn+3", "turn-3"],
    "K8": ["crop5", "crop10", "left10", "right10", "top10", "bottom10", "turn+3", "turn-3"],
    "K10": [
        *["crop5", "crop10", "left10", "right10", "top10", "bottom10"],
        *["turn+3", "turn-3", "turn+6", "turn-6"],
    ],
    "K12": [
        *["crop5", "crop10", "left10", "right10", "top10", "bottom10"],
        *["turn+3", "turn-3", "turn+6", "turn-6", "turn+4.5", "turn-4.5"],
    ],
    # A grid for crops at any offset: the 5% crop at the centre and at the four corners.
    "K6g": ["crop5", "crop10", "corner5_tl", "corner5_tr", "corner5_bl", "corner5_br"],
    "K14g": [
        *["crop5", "crop10", "left10", "right10", "top10", "bottom10"],
        *["corner5_tl", "corner5_tr", "corner5_bl", "corner5_br"],
        *["turn+6", "turn-6", "turn+4.5", "turn-4.5"],
    ],
}

#: Reframings of the decoded upload that may be queried beside the service's variants (query
#: side): inner crops, and de-rotations with their inner crop.
QUERIED: dict[str, Reframe] = {
    "crop5": _crop_op(0.05),
    "crop10": _crop_op(0.10),
    "turn+3": _turn_op(3),
    "turn-3": _turn_op(-3),
    "turn+6": _turn_op(6),
    "turn-6": _turn_op(-6),
}


# --- transforms of the upload ------------------------------------------------------------------


def _centred(share: float) -> tf.Transform:
    return lambda image, _rng: centred_crop(image, share)


def _one_side(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """10% cut from one side, the side drawn per photo."""
    sides = ("left", "right", "top", "bottom")
    return side_crop(image, 0.10, sides[int(rng.integers(0, 4))])


def _mirror_crop(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Mirrored, then 5% of each side cut at a random offset (``transforms.crop``)."""
    return tf.crop(0.05)(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), rng)


#: Each transform with the JPEG quality it is uploaded at.
TRANSFORMS: dict[str, tuple[tf.Transform, int]] = {
    "crop_5%_centred": (_centred(0.05), tf.UPLOAD_QUALITY),
    "crop_10%_centred": (_centred(0.10), tf.UPLOAD_QUALITY),
    "crop_5%": (tf.TRANSFORMS["crop_5%"], tf.UPLOAD_QUALITY),
    "crop_10%": (tf.TRANSFORMS["crop_10%"], tf.UPLOAD_QUALITY),
    "crop_10%_one_side": (_one_side, tf.UPLOAD_QUALITY),
    "rotate_+4deg": (tf.rotate(4), tf.UPLOAD_QUALITY),
    "rotate_-4deg": (tf.rotate(-4), tf.UPLOAD_QUALITY),
    "rotate_+6deg": (tf.rotate(6), tf.UPLOAD_QUALITY),
    "rotate_-6deg": (tf.rotate(-6), tf.UPLOAD_QUALITY),
    "caption_box": (tf.caption_box, tf.UPLOAD_QUALITY),
    "vignette": (tf.vignette, tf.UPLOAD_QUALITY),
    "mirror_crop5_jpeg60": (_mirror_crop, 60),
}


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


# --- hashing (in worker processes) ------------------------------------------------------------


def _probe(data: bytes) -> dict[str, Any]:
    """The service's query hashes of one upload (with their penalties), the query-side extras
    of it and of its mirror image, and the seconds each part took."""
    started = time.perf_counter()
    base = _hashmatch_query(data)
    query_seconds = time.perf_counter() - started
    image = decode(data).image  # the same decode the query path hashes from
    extras, extras_seconds = [], []
    for op in QUERIED.values():
        started = time.perf_counter()
        extras.append(PDQ.hash_image(op(image)).value)
        extras_seconds.append(time.perf_counter() - started)
    mirror = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    mirrored = [PDQ.hash_image(op(mirror)).value for op in QUERIED.values()]
    return {
        "base": base,
        "extras": extras,
        "mirrored": mirrored,
        "query_seconds": query_seconds,
        "extras_seconds": extras_seconds,
    }


def hash_photo(task: tuple[int, str]) -> dict[str, Any]:
    try:
        return _hash_photo(*task)
    except (OSError, ValueError, HashmatchError) as exc:
        return {"error": f"{task[1]}: {exc}"}


def _hash_photo(index: int, path: str) -> dict[str, Any]:
    original = _original_bytes(Path(path))
    image = Image.open(io.BytesIO(original)).convert("RGB")
    started = time.perf_counter()
    listed = {"base": hash_bytes(original, [PDQ])[0].value}
    list_seconds = time.perf_counter() - started
    extra_list_seconds = 0.0  # hashing only: the reframed JPEG stands for an agency's file
    for name, op in LISTED.items():
        reframed = _jpeg(op(image), 95)
        started = time.perf_counter()
        listed[name] = hash_bytes(reframed, [PDQ])[0].value
        extra_list_seconds += time.perf_counter() - started
    uploads: dict[str, dict[str, Any]] = {}
    for position, (name, (transform, quality)) in enumerate(TRANSFORMS.items()):
        rng = np.random.default_rng([SEED, index, 1000 + position])
        uploads[name] = _probe(_jpeg(transform(image, rng), quality))
    return {
        "listed": listed,
        "uploads": uploads,
        "identity": _probe(original),
        "list_seconds": list_seconds,
        "extra_list_seconds": extra_list_seconds,
    }


# --- scoring ----------------------------------------------------------------------------------

#: Slots of the listed hashes, in a fixed order: 0 is the original's own PDQ.
LISTED_SLOTS = ["base", *LISTED]


def _query_table(probes: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, m, 4) words of every query hash, (n, m) penalties and (n, m) kinds (0 the service's
    hashes, then :func:`extra_kind` of each query-side extra, -1 padding)."""
    width = max(len(p["base"]) for p in probes) + 2 * len(QUERIED)
    n = len(probes)
    words = np.zeros((n, width, 4), dtype=np.uint64)
    penalty = np.full((n, width), FAR, dtype=np.int32)
    kind = np.full((n, width), -1, dtype=np.int8)
    for i, p in enumerate(probes):
        rows = [(code, pen, 0) for code, pen in p["base"]]
        rows += [
            (code, VARIANT_PENALTY, extra_kind(name, False))
            for name, code in zip(QUERIED, p["extras"], strict=True)
        ]
        rows += [
            (code, VARIANT_PENALTY, extra_kind(name, True))
            for name, code in zip(QUERIED, p["mirrored"], strict=True)
        ]
        words[i, : len(rows)] = _words([code for code, _, _ in rows])
        penalty[i, : len(rows)] = [pen for _, pen, _ in rows]
        kind[i, : len(rows)] = [k for _, _, k in rows]
    return words, penalty, kind


def hamming(queries: np.ndarray, listed: np.ndarray) -> np.ndarray:
    """(n, m) x (n', l) hashes -> (n, m, n', l) Hamming distances."""
    out = np.empty((queries.shape[0], queries.shape[1], *listed.shape[:2]), dtype=np.int16)
    for i in range(queries.shape[0]):
        xor = queries[i][:, np.newaxis, np.newaxis, :] ^ listed[np.newaxis]
        out[i] = np.bitwise_count(xor).sum(axis=3)
    return out


Config = dict[str, Any]


def extra_kind(name: str, mirrored: bool) -> int:
    """The kind of a query-side extra: 1.. for the upload's, then as many for its mirror's."""
    return 1 + list(QUERIED).index(name) + (len(QUERIED) if mirrored else 0)


def queried(names: Sequence[str], mirrored: bool = False) -> tuple[int, ...]:
    """The kinds a configuration queries: the service's hashes and the named extras."""
    kinds = [extra_kind(name, False) for name in names]
    if mirrored:
        kinds += [extra_kind(name, True) for name in names]
    return (0, *kinds)


TURNS = ["turn+3", "turn-3", "turn+6", "turn-6"]
QUERY_SETS: dict[str, tuple[int, ...]] = {
    "c6": queried(list(QUERIED)),
    "c12": queried(list(QUERIED), mirrored=True),
    "cturns4": queried(TURNS),
    "cturns8": queried(TURNS, mirrored=True),
    "ccrops2": queried(["crop5", "crop10"]),
    "ccrops4": queried(["crop5", "crop10"], mirrored=True),
}


def configurations() -> list[Config]:
    plain: Config = {"listed": [], "queried": (0,), "listed_penalty": False}
    configs: list[Config] = [{"name": "a_today", **plain}]
    for key, names in LISTED_SETS.items():
        configs.append({**plain, "name": f"b_{key}", "listed": names})
    for key in ("K8", "K12"):
        configs.append(
            {**plain, "name": f"b_{key}_pen", "listed": LISTED_SETS[key], "listed_penalty": True}
        )
    for cname, kinds in QUERY_SETS.items():
        configs.append({**plain, "name": cname, "queried": kinds})
    for key in ("K4", "K8", "K12"):
        for cname in ("c6", "c12"):
            for pen in (False, True):
                configs.append(
                    {
                        "name": f"d_{key}_{cname}" + ("_pen" if pen else ""),
                        "listed": LISTED_SETS[key],
                        "queried": QUERY_SETS[cname],
                        "listed_penalty": pen,
                    }
                )
    # Ablations: which side's hashes carry the turns and crops.
    for key in ("K2", "K6", "K4", "K8", "K12", "K6g", "K14g"):
        for cname in ("c6", "cturns4", "cturns8", "ccrops2", "ccrops4"):
            name = f"d_{key}_{cname}"
            if not any(c["name"] == name for c in configs):
                configs.append(
                    {
                        **plain,
                        "name": name,
                        "listed": LISTED_SETS[key],
                        "queried": QUERY_SETS[cname],
                    }
                )
    return configs


def effective(
    distances: np.ndarray, penalty: np.ndarray, kind: np.ndarray, config: Config
) -> np.ndarray:
    """(n, m, n', l) Hamming distances -> (n, n') the closest distance plus the penalty the
    rule adds to it (matching is ``<= RULE``), over the configuration's hashes only."""
    slots = [0, *(LISTED_SLOTS.index(name) for name in config["listed"])]
    listed_pen = np.zeros(len(slots), dtype=np.int32)
    if config["listed_penalty"]:
        listed_pen[1:] = VARIANT_PENALTY
    query_pen = np.where(np.isin(kind, config["queried"]), penalty, FAR)  # (n, m)
    d = distances[:, :, :, slots].astype(np.int32)
    pen = np.maximum(query_pen[:, :, np.newaxis, np.newaxis], listed_pen)
    return (d + pen).min(axis=(1, 3))  # type: ignore[no-any-return]


def tail_estimate(off: np.ndarray) -> dict[str, float]:
    """Per-pair probability of a distinct pair within the rule and the expected false matches
    per query against a LIST_SIZE-entry list, by the least-squares line through log10 of the
    empirical lower tail (points with >= 10 pairs, up to the 1st percentile), the selection
    :func:`bench_robustness.tail_threshold` fits."""
    ordered = np.sort(off)
    values, first = np.unique(ordered, return_index=True)
    cdf = (first + np.bincount(np.searchsorted(values, ordered))) / ordered.size
    keep = (cdf * ordered.size >= 10) & (cdf <= 0.01)
    if keep.sum() < 3:
        nan = float("nan")
        return {"bits_per_decade": nan, "per_pair_at_rule": nan, "per_query_10M": nan}
    slope, intercept = np.polyfit(values[keep], np.log10(cdf[keep]), 1)
    per_pair = 10 ** float(intercept + slope * RULE)
    # The rule's distance at which the same line meets the per-query budget.
    budget_at = (math.log10(PER_QUERY_BUDGET / LIST_SIZE) - intercept) / slope
    return {
        "bits_per_decade": float(1 / slope),
        "per_pair_at_rule": per_pair,
        "per_query_10M": per_pair * LIST_SIZE,
        "margin_bits": float(budget_at - RULE),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=QUICK_PHOTOS, help="first N quick photos")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    folder = corpus.robustness_photos(quick=True)
    paths = image_files(folder, min_pixels=256 * 256)[: args.photos]
    configs = configurations()
    settings = {
        "photos": len(paths),
        "corpus": "quick",
        "rule": {"submitted": RULE, "variants": RULE - VARIANT_PENALTY},
        "transforms": list(TRANSFORMS),
        "listed_candidates": list(LISTED),
        "listed_sets": LISTED_SETS,
        "queried_extras": list(QUERIED),
        "configurations": [c["name"] for c in configs],
        "list_size": LIST_SIZE,
        "per_query_budget": PER_QUERY_BUDGET,
        "working_side": WORKING_SIDE,
        "seed": SEED,
        "jobs": args.jobs,
        "python": platform.python_version(),
    }
    print("settings:", json.dumps(settings), flush=True)
    started = time.monotonic()
    tasks = [(i, str(p)) for i, p in enumerate(paths)]
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        hashed = list(pool.imap(hash_photo, tasks, chunksize=2))
    photos = [photo for photo in hashed if "error" not in photo]
    for photo in hashed:
        if "error" in photo:
            print(f"left out: {photo['error']}", file=sys.stderr)
    if len(photos) < 2:
        sys.exit(f"{len(photos)} usable photos; need 2 or more")
    hashing_seconds = time.monotonic() - started
    n = len(photos)
    listed = np.stack([_words([p["listed"][slot] for slot in LISTED_SLOTS]) for p in photos])
    off_diagonal = ~np.eye(n, dtype=bool)

    # Recall: each transformed upload against its own entry only.
    own: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for name in TRANSFORMS:
        words, penalty, kind = _query_table([p["uploads"][name] for p in photos])
        d = np.stack([hamming(words[i : i + 1], listed[i : i + 1])[0, :, 0] for i in range(n)])
        own[name] = (d[:, :, np.newaxis, :], penalty, kind)  # (n, m, 1, l)
    # False matches: each original as an upload against every other entry.
    id_words, id_penalty, id_kind = _query_table([p["identity"] for p in photos])
    id_distances = hamming(id_words, listed)

    base_count = np.mean([len(p["identity"]["base"]) for p in photos])
    query_s = float(np.mean([p["identity"]["query_seconds"] for p in photos]))
    # Seconds of each query-side extra (its mirror's taken as the same), by kind.
    extra_s = np.mean([p["identity"]["extras_seconds"] for p in photos], axis=0)
    kind_seconds = {
        extra_kind(name, m): float(extra_s[j])
        for j, name in enumerate(QUERIED)
        for m in (False, True)
    }
    list_s = float(np.mean([p["list_seconds"] for p in photos]))
    extra_list_s = float(np.mean([p["extra_list_seconds"] for p in photos])) / len(LISTED)
    rows = []
    for config in configs:
        recall = {}
        for name, (d, penalty, kind) in own.items():
            diagonal = effective(d, penalty, kind, config)[:, 0]
            recall[name] = float((diagonal <= RULE).mean())
        off = effective(id_distances, id_penalty, id_kind, config)[off_diagonal]
        raw = np.where(
            np.isin(id_kind, config["queried"])[:, :, np.newaxis, np.newaxis],
            id_distances,
            FAR,
        )
        slots = [0, *(LISTED_SLOTS.index(name) for name in config["listed"])]
        raw_min = raw[:, :, :, slots].min(axis=(1, 3))[off_diagonal]
        extras = len(config["queried"]) - 1
        extras_seconds = sum(kind_seconds[kind] for kind in config["queried"][1:])
        k = len(config["listed"])
        row = {
            "configuration": config["name"],
            "K": k,
            "index_memory_multiple": 1 + k,
            "listed_extras_penalised": config["listed_penalty"],
            "query_hashes_per_upload": float(base_count + extras),
            "query_multiple": float((base_count + extras) / base_count),
            "query_extras": extras,
            "hashing_multiple_est": (query_s + extras_seconds) / query_s,
            "listing_hash_multiple_est": (list_s + k * extra_list_s) / list_s,
            "recall": recall,
            "false": {
                "pairs": int(off.size),
                "closest_raw": int(raw_min.min()),
                "closest_with_penalty": int(off.min()),
                "pairs_within_rule": int((off <= RULE).sum()),
                "distance_1st_percentile": float(np.percentile(off, 1)),
                **tail_estimate(off),
            },
        }
        row["meets_false_budget"] = bool(
            row["false"]["pairs_within_rule"] == 0
            and row["false"]["per_query_10M"] <= PER_QUERY_BUDGET
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        "summary": {
            "photos": n,
            "seconds": time.monotonic() - started,
            "hashing_seconds": hashing_seconds,
            "service_query_hashes_mean": float(base_count),
            "query_path_ms": query_s * 1000,
            "queried_extra_ms": {name: float(extra_s[j]) * 1000 for j, name in enumerate(QUERIED)},
            "listing_hash_ms": list_s * 1000,
            "recall": {r["configuration"]: r["recall"] for r in rows},
            "per_query_10M": {r["configuration"]: r["false"]["per_query_10M"] for r in rows},
            "meets_false_budget": {r["configuration"]: r["meets_false_budget"] for r in rows},
        }
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
