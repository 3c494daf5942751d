"""Exact Hamming range search: hashmatch's index vs FAISS IndexBinaryFlat vs HMA's configuration.

One run, one thread, the same data for every index: half uniform random codes, half clusters
of near-duplicates; queries 90% absent and 10% planted at distances 0-31 from a stored code.
Brute force (IndexBinaryFlat) is the oracle: every index's results are compared with it.

    python benchmarks/bench_index.py [--sizes 1000000,10000000] [--queries 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from hashmatch.index import HammingIndex

SearchFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray, np.ndarray]]


def rss_bytes() -> int:
    """Resident set size, after handing freed heap memory back to the system so that a
    later delta measures what was allocated since, not what was reused."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def make_codes(rng: np.random.Generator, count: int, nbytes: int) -> np.ndarray:
    """Half uniform random, half clusters of ~20 near-duplicates (0-15 bits from a centre)."""
    uniform = rng.integers(0, 256, size=(count - count // 2, nbytes), dtype=np.uint8)
    clustered = np.empty((count // 2, nbytes), dtype=np.uint8)
    centres = rng.integers(0, 256, size=(max(1, count // 40), nbytes), dtype=np.uint8)
    chunk = 250_000
    for start in range(0, clustered.shape[0], chunk):
        size = min(chunk, clustered.shape[0] - start)
        members = centres[rng.integers(0, centres.shape[0], size)]
        flip_rate = rng.uniform(0, 15 / (nbytes * 8), size)[:, None]
        flips = np.packbits(rng.random((size, nbytes * 8)) < flip_rate, axis=1)
        clustered[start : start + size] = members ^ flips
    codes = np.concatenate([uniform, clustered])
    return codes[rng.permutation(count)]


def flip_bits(rng: np.random.Generator, code: np.ndarray, count: int) -> np.ndarray:
    bits = np.unpackbits(code)
    positions = rng.choice(bits.size, size=count, replace=False)
    bits[positions] ^= 1
    return np.packbits(bits)


def make_queries(
    rng: np.random.Generator, codes: np.ndarray, count: int, max_planted: int
) -> np.ndarray:
    planted = count // 10
    queries = rng.integers(0, 256, size=(count, codes.shape[1]), dtype=np.uint8)
    sources = rng.integers(0, codes.shape[0], planted)
    for i, source in enumerate(sources):
        queries[i] = flip_bits(rng, codes[source], int(rng.integers(0, max_planted + 1)))
    return queries[rng.permutation(count)]


def result_sets(
    result: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> list[set[tuple[int, int]]]:
    lims, distances, ids = result
    return [
        set(
            zip(
                ids[lims[i] : lims[i + 1]].tolist(),
                distances[lims[i] : lims[i + 1]].tolist(),
                strict=True,
            )
        )
        for i in range(lims.size - 1)
    ]


def faiss_search(index: faiss.IndexBinary) -> SearchFn:
    def search(queries: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # FAISS's binary range search is strict (distance < radius).
        lims, distances, ids = index.range_search(queries, max_distance + 1)
        return lims, distances.astype(np.int32), ids

    return search


def latencies(search: SearchFn, queries: np.ndarray, max_distance: int) -> dict[str, float]:
    times = []
    for query in queries:
        one = query[None, :]
        start = time.perf_counter()
        search(one, max_distance)
        times.append(time.perf_counter() - start)
    ms = np.asarray(times) * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }


def batch_qps(search: SearchFn, queries: np.ndarray, max_distance: int) -> float:
    start = time.perf_counter()
    search(queries, max_distance)
    return float(queries.shape[0] / (time.perf_counter() - start))


def measure_build(build: Callable[[], object], count: int) -> tuple[object, dict[str, float]]:
    gc.collect()
    before = rss_bytes()
    start = time.perf_counter()
    index = build()
    seconds = time.perf_counter() - start
    gc.collect()
    return index, {"build_s": seconds, "bytes_per_hash": (rss_bytes() - before) / count}


def bench_size(args: argparse.Namespace, count: int, bits: int, radius: int) -> dict[str, object]:
    rng = np.random.default_rng(args.seed + count + bits)
    nbytes = bits // 8
    codes = make_codes(rng, count, nbytes)
    ids = np.arange(count, dtype=np.int64)
    queries = make_queries(rng, codes, args.queries, max_planted=radius)
    sample = queries[: args.baseline_queries]
    report: dict[str, object] = {"codes": count, "bits": bits, "max_distance": radius}
    print(f"-- {count} codes of {bits} bits, max_distance {radius}", flush=True)

    flat, flat_build = measure_build(lambda: _flat(codes, bits), count)
    flat_search = faiss_search(flat)  # type: ignore[arg-type]
    truth = result_sets(flat_search(sample, radius))
    report["IndexBinaryFlat"] = {
        **flat_build,
        **latencies(flat_search, sample, radius),
        "batch_qps": batch_qps(flat_search, sample, radius),
    }
    del flat, flat_search
    gc.collect()

    def build_ours() -> HammingIndex:
        index = HammingIndex(bits)
        index.add(ids, codes)
        index.compact()
        return index

    ours, ours_build = measure_build(build_ours, count)
    assert isinstance(ours, HammingIndex)
    ours_report: dict[str, object] = {**ours_build, "array_bytes_per_hash": ours.nbytes / count}
    ours_report["identical_to_brute_force"] = result_sets(ours.search(sample, radius)) == truth
    ours_report.update(latencies(ours.search, queries, radius))
    ours_report["batch_qps"] = batch_qps(ours.search, queries, radius)
    ours_report["matches_per_query"] = float(np.diff(ours.search(queries, radius)[0]).mean())
    for other in args.extra_radii if bits == 256 else []:
        extra = latencies(ours.search, queries[: args.baseline_queries], other)
        ours_report[f"max_distance_{other}"] = extra
    ours_report.update(_churn(ours, rng, codes, count))
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "index.bin")
        start = time.perf_counter()
        ours.save(path)
        ours_report["save_s"] = time.perf_counter() - start
        start = time.perf_counter()
        loaded = HammingIndex.load(path)
        ours_report["load_s"] = time.perf_counter() - start
        ours_report["load_identical"] = result_sets(loaded.search(sample, radius)) == result_sets(
            ours.search(sample, radius)
        )
        del loaded
    report["hashmatch"] = ours_report
    del ours
    gc.collect()

    if not args.skip_hma:
        hma, hma_build = measure_build(lambda: _hma(codes, ids, bits, radius), count)
        hma_search = faiss_search(hma)  # type: ignore[arg-type]
        report["HMA_MultiHash"] = {
            **hma_build,
            "identical_to_brute_force": result_sets(hma_search(sample, radius)) == truth,
            **latencies(hma_search, sample, radius),
            "batch_qps": batch_qps(hma_search, sample, radius),
        }
        del hma, hma_search
        gc.collect()
    _ratios(report)
    print(json.dumps(report), flush=True)
    return report


def _churn(
    index: HammingIndex, rng: np.random.Generator, codes: np.ndarray, count: int
) -> dict[str, object]:
    """Time to add 10k new codes and to remove 10k stored ones (the calls themselves)."""
    new_ids = np.arange(count, count + 10_000, dtype=np.int64)
    new_codes = codes[rng.integers(0, count, 10_000)] ^ np.uint8(1)
    start = time.perf_counter()
    index.add(new_ids, np.ascontiguousarray(new_codes))
    add_s = time.perf_counter() - start
    gone = rng.choice(count, 10_000, replace=False).astype(np.int64)
    start = time.perf_counter()
    index.remove(gone)
    remove_s = time.perf_counter() - start
    start = time.perf_counter()
    index.wait_for_compaction()
    return {
        "add_10k_s": add_s,
        "remove_10k_s": remove_s,
        "compaction_after_s": time.perf_counter() - start,
    }


def _flat(codes: np.ndarray, bits: int) -> faiss.IndexBinaryFlat:
    index = faiss.IndexBinaryFlat(bits)
    index.add(codes)
    return index


def _hma(codes: np.ndarray, ids: np.ndarray, bits: int, radius: int) -> faiss.IndexBinary:
    """HMA's PDQ index: IndexBinaryIDMap2(IndexBinaryMultiHash(256, 16, 16)), nflip=1.

    For 64-bit codes the same design with 4 tables of 16 bits and enough flips to be exact.
    """
    nhash = bits // 16
    inner = faiss.IndexBinaryMultiHash(bits, nhash, 16)
    inner.nflip = radius // nhash
    index = faiss.IndexBinaryIDMap2(inner)
    index.add_with_ids(codes, ids)  # faiss's wrapper keeps a reference to ``inner``
    return index


def _ratios(report: dict[str, object]) -> None:
    ours = report["hashmatch"]
    assert isinstance(ours, dict)
    ratios = {}
    for name in ("IndexBinaryFlat", "HMA_MultiHash"):
        other = report.get(name)
        if isinstance(other, dict):
            ratios[f"p50_speedup_vs_{name}"] = other["p50_ms"] / ours["p50_ms"]
            ratios[f"batch_speedup_vs_{name}"] = ours["batch_qps"] / other["batch_qps"]
            ratios[f"memory_ratio_vs_{name}"] = ours["bytes_per_hash"] / max(
                other["bytes_per_hash"], 1e-9
            )
    report["ratios"] = ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--baseline-queries", type=int, default=200, help="for the slow baselines")
    parser.add_argument("--extra-radii", default="47,63")
    parser.add_argument("--phash-size", type=int, default=10_000_000, help="64-bit codes (0: skip)")
    parser.add_argument("--skip-hma", action="store_true")
    parser.add_argument("--seed", type=int, default=20261129)
    args = parser.parse_args()
    args.extra_radii = [int(r) for r in args.extra_radii.split(",") if r]
    faiss.omp_set_num_threads(1)
    settings = {
        "sizes": args.sizes,
        "queries": args.queries,
        "baseline_queries": args.baseline_queries,
        "planted": "10% of queries, 0-31 bits from a stored code",
        "data": "half uniform random, half clusters of ~20 near-duplicates",
        "threads": 1,
        "faiss": faiss.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print("settings:", json.dumps(settings), flush=True)
    results = [bench_size(args, int(size), 256, 31) for size in args.sizes.split(",")]
    if args.phash_size:
        results.append(bench_size(args, args.phash_size, 64, 10))
    summary = {"settings": settings, "results": results}
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
