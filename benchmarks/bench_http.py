"""The service over HTTP on loopback: hash batches, single hashes, images, and a soak.

Starts a real ``hashmatch serve`` (SQLite, an index of ``--entries`` random PDQ hashes, 90% of
the queried hashes absent) and drives it from threads of this process: the client shares the
machine's cores with the server, as a co-located load generator would.

Baseline, in the same run: the same work done in this process with no HTTP at all (one thread,
the service's own match state over the same database, the same hashing path). The ratio
``http / (in_process x workers)`` is the share of the machine's matching capacity that reaches
clients over HTTP.

    python benchmarks/bench_http.py [--entries 1000000] [--workers 2] [--soak 300]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from hashmatch.hashsets.read import read_hash_set
from hashmatch.matching.follower import Follower
from hashmatch.matching.lookup import lookup, matchable_lists
from hashmatch.matching.probes import ProbeGuard
from hashmatch.signals import Hash, Query, query_hashes
from hashmatch.store import Role, Store, database_url


def _client() -> httpx.Client:
    # TCP_NODELAY: without it a small POST (headers and body written separately) waits out
    # the server's delayed ACK, ~40 ms, which would be measured as service latency.
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    return httpx.Client(timeout=30, transport=transport)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_rss(pid: int) -> int:
    """RSS of a process and its children, in bytes."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for each in pids:
        status = Path(f"/proc/{each}/status")
        if status.exists():
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def closed_loop(
    threads: int, seconds: float, call: Callable[[httpx.Client], int]
) -> dict[str, float]:
    """``threads`` clients calling back to back; returns units/s and error counts."""
    done = [0] * threads
    errors = [0] * threads
    stop = time.monotonic() + seconds

    def worker(slot: int) -> None:
        with _client() as client:
            while time.monotonic() < stop:
                try:
                    done[slot] += call(client)
                except httpx.HTTPStatusError:
                    errors[slot] += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    start = time.monotonic()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return {"per_second": sum(done) / (time.monotonic() - start), "errors": float(sum(errors))}


def paced(
    rate: float, seconds: float, call: Callable[[httpx.Client], int], threads: int = 4
) -> dict[str, float]:
    """Open loop at ``rate`` requests/s; latency percentiles of what was sent."""
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()
    interval = 1.0 / rate
    start = time.monotonic()
    count = int(rate * seconds)

    def worker(slot: int) -> None:
        with _client() as client:
            for n in range(slot, count, threads):
                delay = start + n * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                began = time.monotonic()
                status = call(client)
                with lock:
                    latencies.append(time.monotonic() - began)
                    statuses.append(status)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    ms = np.asarray(latencies) * 1000
    return {
        "requests": float(len(ms)),
        "achieved_rate": len(ms) / (time.monotonic() - start),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "server_errors": float(sum(s >= 500 for s in statuses)),
    }


def in_process(seconds: float, call: Callable[[], int]) -> float:
    """Units per second of ``call`` run back to back in this thread."""
    done = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        done += call()
    return done / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=15, help="per throughput phase")
    parser.add_argument("--soak", type=float, default=300, help="soak seconds (0: skip)")
    parser.add_argument("--images", type=Path, help="folder of JPEGs (default: synthetic 1 MP)")
    args = parser.parse_args()
    settings = {k: str(v) for k, v in vars(args).items()} | {
        "python": platform.python_version(),
        "cpus": str(os.cpu_count()),
        "absent_share": "90%",
        "client": "threads in the same machine",
    }
    print("settings:", json.dumps(settings), flush=True)
    rng = np.random.default_rng(11)
    folder = Path(tempfile.mkdtemp(prefix="hashmatch-bench-"))
    data_dir = folder / "index"
    store = Store.open(database_url(data_dir, None))
    store.lists.create("big", owner="bench", category="csam", actor="bench")
    codes = rng.integers(0, 256, size=(args.entries, 32), dtype=np.uint8)
    text = "".join(f"pdq {c.tobytes().hex()}\n" for c in codes).encode()
    store.entries.import_rows("big", read_hash_set(io.BytesIO(text)), actor="bench")
    _, secret = store.keys.create("bench", frozenset({Role.MATCH}), actor="bench")
    store.close()
    auth = {"Authorization": f"Bearer {secret}"}

    port = free_port()
    env = {
        **os.environ,
        "HASHMATCH_DATA_DIR": str(data_dir),
        "HASHMATCH_RATE_LIMIT": "1000000",
        "HASHMATCH_RATE_BURST": "1000000",
    }
    env.pop("HASHMATCH_DATABASE_URL", None)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hashmatch",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        while True:
            try:
                if all(httpx.get(f"{base}/readyz", timeout=2).status_code == 200 for _ in range(4)):
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        ready_s = time.monotonic() - started

        def batch(client: httpx.Client) -> int:
            present = codes[rng.integers(0, args.entries, 100)]
            absent = rng.integers(0, 256, size=(900, 32), dtype=np.uint8)
            hashes = [
                {"algorithm": "pdq", "value": c.tobytes().hex()}
                for c in np.concatenate([present, absent])
            ]
            response = client.post(f"{base}/v1/match/hashes", json={"hashes": hashes}, headers=auth)
            response.raise_for_status()
            return len(hashes)

        def single(client: httpx.Client) -> int:
            value = (
                codes[rng.integers(0, args.entries)]
                if rng.random() < 0.1
                else rng.integers(0, 256, 32, dtype=np.uint8)
            )
            return client.post(
                f"{base}/v1/match/hashes",
                headers=auth,
                json={"hashes": [{"algorithm": "pdq", "value": value.tobytes().hex()}]},
            ).status_code

        if args.images:
            jpegs = [p.read_bytes() for p in sorted(args.images.glob("*.jp*g"))[:50]]
        else:
            jpegs = []
            for seed in range(20):
                pixels = np.random.default_rng(seed).integers(
                    0, 256, size=(24, 32, 3), dtype=np.uint8
                )
                buffer = io.BytesIO()
                Image.fromarray(pixels).resize((1224, 918), Image.Resampling.BICUBIC).save(
                    buffer, "JPEG", quality=88
                )
                jpegs.append(buffer.getvalue())

        def image(client: httpx.Client) -> int:
            data = jpegs[int(rng.integers(0, len(jpegs)))]
            response = client.post(
                f"{base}/v1/match", content=data, headers={**auth, "Content-Type": "image/jpeg"}
            )
            return response.status_code

        def image_counted(client: httpx.Client) -> int:
            status = image(client)
            if status >= 400:
                raise httpx.HTTPStatusError("bad", request=None, response=None)  # type: ignore[arg-type]
            return 1

        result: dict[str, object] = {"settings": settings, "ready_s": ready_s}
        result["hash_batches"] = closed_loop(4, args.seconds, batch)
        result["single_hash_at_200rps"] = paced(200, args.seconds, single)
        result["images"] = closed_loop(4, args.seconds, image_counted)
        baseline = baseline_in_process(data_dir, codes, jpegs, rng, args.seconds)
        result["baseline_in_process_one_thread"] = baseline
        result["ratios"] = {
            "hash_batches_http_vs_in_process": result["hash_batches"]["per_second"]  # type: ignore[index]
            / (baseline["hash_batches_per_second"] * args.workers),
            "images_http_vs_in_process": result["images"]["per_second"]  # type: ignore[index]
            / (baseline["images_per_second"] * args.workers),
        }
        result["images_at_30rps"] = paced(30, args.seconds, image)
        if args.soak:
            rss_before = tree_rss(server.pid)
            capacity = float(result["images"]["per_second"])  # type: ignore[index]
            soak = paced(max(1.0, 0.8 * capacity), args.soak, image)
            result["soak"] = {
                **soak,
                "rate": 0.8 * capacity,
                "rss_growth": tree_rss(server.pid) / rss_before - 1,
            }
        print(json.dumps(result, indent=2))
    finally:
        server.terminate()
        server.wait(timeout=30)


def baseline_in_process(
    data_dir: Path,
    codes: np.ndarray,
    jpegs: list[bytes],
    rng: np.random.Generator,
    seconds: float,
) -> dict[str, float]:
    """The same matching without HTTP: the service's match state and lookup (lists, probe check,
    verdicts), one thread, this process."""
    store = Store.open(database_url(data_dir, None))
    try:
        follower = Follower(store)
        follower.load()
        matcher = follower.state
        lists = matchable_lists(matcher, "bench")
        guard = ProbeGuard()

        def batch() -> int:
            present = codes[rng.integers(0, len(codes), 100)]
            absent = rng.integers(0, 256, size=(900, 32), dtype=np.uint8)
            hashes = [Hash.from_hex("pdq", c.tobytes().hex()) for c in np.vstack([present, absent])]
            items = [[Query(value)] for value in hashes]
            lookup(matcher, items, organisation="bench", lists=lists, guard=guard)
            return len(hashes)

        def image() -> int:
            _, queries = query_hashes(jpegs[int(rng.integers(0, len(jpegs)))])
            lookup(matcher, [queries], organisation="bench", lists=lists, guard=guard)
            return 1

        return {
            "hash_batches_per_second": in_process(seconds, batch),
            "images_per_second": in_process(seconds, image),
        }
    finally:
        store.close()


if __name__ == "__main__":
    main()
