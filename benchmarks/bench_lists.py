"""Durable lists: bulk import, restart, and cross-process freshness, on SQLite and PostgreSQL.

For each database: import N PDQ rows from a CSV file (parse + one transaction), restart a
matcher holding them (from the database, then from a snapshot) until it answers a match, and
measure how long a change committed by another process takes to be matched (or no longer
matched) by a follower polling the change log.

    python benchmarks/bench_lists.py [--rows 1000000] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, text

from hashmatch.hashsets.read import read_hash_set
from hashmatch.matching.follower import Follower
from hashmatch.signals import PDQ, Hash
from hashmatch.store import Store

POSTGRES = os.environ.get(
    "HASHMATCH_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

WRITER = """
import sys, time, io
from hashmatch.store import Store
from hashmatch.hashsets.read import read_hash_set
store = Store.open(sys.argv[1])
for line in sys.stdin:
    verb, value = line.split()
    if verb == "add":
        rows = read_hash_set(io.BytesIO(f"pdq {value} {value}\\n".encode()))
        store.entries.import_rows("fresh", rows, actor="bench")
    else:
        store.withdrawals.withdraw("fresh", actor="bench", reason="bench", references=[value])
    print(time.time(), flush=True)
"""


def write_csv(path: Path, rows: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    sample: list[str] = []
    with path.open("w") as f:
        f.write("algorithm,hash,reference\n")
        for start in range(0, rows, 100_000):
            codes = rng.integers(0, 256, size=(min(100_000, rows - start), 32), dtype=np.uint8)
            hexes = [code.tobytes().hex() for code in codes]
            sample.extend(hexes[:10])
            f.writelines(f"pdq,{h},ref-{start + i}\n" for i, h in enumerate(hexes))
    return sample


def fresh_database(backend: str, folder: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{folder / 'bench.db'}"
    name = f"hm_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return POSTGRES.rsplit("/", 1)[0] + f"/{name}"


def drop_database(url: str) -> None:
    if not url.startswith("postgresql"):
        return
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def time_until_match(matcher: Follower, value: str, present: bool, timeout: float = 5.0) -> float:
    query = [Hash.from_hex("pdq", value)]
    while True:
        if bool(matcher.state.match(query)[0]) == present:
            return time.time()
        if timeout <= 0:
            raise TimeoutError(value)
        time.sleep(0.002)
        timeout -= 0.002


def freshness(url: str, rounds: int, poll: float) -> dict[str, float]:
    store = Store.open(url)
    store.lists.create("fresh", owner="bench", category="other", actor="bench")
    follower = Follower(store)
    follower.load()
    follower.start(poll_seconds=poll)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdin is not None and writer.stdout is not None
    delays: dict[str, list[float]] = {"add": [], "withdraw": []}
    rng = np.random.default_rng(7)
    try:
        for _ in range(rounds):
            value = rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex()
            for verb, present in (("add", True), ("withdraw", False)):
                writer.stdin.write(f"{verb} {value}\n")
                writer.stdin.flush()
                committed = float(writer.stdout.readline())
                delays[verb].append(time_until_match(follower, value, present) - committed)
    finally:
        writer.stdin.close()
        writer.wait(timeout=30)
        follower.stop()
        store.close()
    out: dict[str, float] = {"poll_seconds": poll}
    for verb, values in delays.items():
        out[f"{verb}_median_s"] = statistics.median(values)
        out[f"{verb}_max_s"] = max(values)
    return out


def bench_backend(
    backend: str, rows: int, csv_path: Path, sample: list[str], args: argparse.Namespace
) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as folder:
        url = fresh_database(backend, Path(folder))
        try:
            store = Store.open(url)
            store.lists.create("big", owner="bench", category="csam", actor="bench")
            start = time.perf_counter()
            with csv_path.open("rb") as stream:
                report = store.entries.import_rows("big", read_hash_set(stream), actor="bench")
            import_s = time.perf_counter() - start
            assert report.added == rows, report.as_dict()
            store.close()

            snapshots = Path(folder) / "snapshots"
            probe = [Hash.from_hex("pdq", sample[3])]
            start = time.perf_counter()
            restarted = Follower(Store.open(url), snapshots)
            restarted.load()
            assert restarted.state.match(probe)[0]
            from_database_s = time.perf_counter() - start
            restarted.save_snapshot()
            restarted.store.close()
            start = time.perf_counter()
            again = Follower(Store.open(url), snapshots)
            again.load()
            assert again.state.match(probe)[0] and again.state.size(PDQ) == rows
            from_snapshot_s = time.perf_counter() - start
            again.store.close()
            result: dict[str, object] = {
                "backend": backend,
                "rows": rows,
                "import_s": import_s,
                "import_rows_per_s": rows / import_s,
                "restart_from_database_s": from_database_s,
                "restart_from_snapshot_s": from_snapshot_s,
                "freshness": freshness(url, args.rounds, args.poll),
            }
        finally:
            drop_database(url)
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--rounds", type=int, default=20, help="freshness add/withdraw rounds")
    parser.add_argument("--poll", type=float, default=0.2, help="follower poll interval, s")
    args = parser.parse_args()
    settings = {
        "rows": args.rows,
        "backends": args.backends,
        "freshness_rounds": args.rounds,
        "poll_seconds": args.poll,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print("settings:", json.dumps(settings), flush=True)
    with tempfile.TemporaryDirectory() as folder:
        csv_path = Path(folder) / "hashes.csv"
        sample = write_csv(csv_path, args.rows, seed=1)
        results = [
            bench_backend(b, args.rows, csv_path, sample, args) for b in args.backends.split(",")
        ]
    print(json.dumps({"settings": settings, "results": results}, indent=2))


if __name__ == "__main__":
    main()
