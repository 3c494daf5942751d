"""Console pages at scale: server time per page with a 1M-entry list and 100k audit rows,
side by side with the nearest JSON API call, through a real ``hashmatch serve``.

Each page is requested ``--rounds`` times after a warm-up; the server's own time comes from the
``Server-Timing`` header every console response carries (the time to the first byte of the
response, in the app), the client's from the round trip on loopback. The JSON API's routes send
no such header: they are compared by round trip, and so is each page.

    python benchmarks/bench_console.py [--entries 1000000] [--audit 100000] [--rounds 60]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import insert

from hashmatch.hashsets.read import read_hash_set
from hashmatch.store import Role, StaffRole, Store, database_url
from hashmatch.store.schema import audit

PASSWORD = "benchmark passphrase"
LIMIT_MS = 100.0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def prepare(folder: Path, entries: int, audit_rows: int) -> tuple[str, list[str]]:
    """A data directory with the big list, a few small ones, people, keys and audit rows;
    returns an API key and some references to search for."""
    rng = np.random.default_rng(7)
    store = Store.open(database_url(folder, None))
    store.lists.create("big", owner="bench", category="csam", actor="bench")
    for n in range(5):
        store.lists.create(f"small-{n}", owner="bench", category="ncii", actor="bench")
    codes = rng.integers(0, 256, size=(entries, 32), dtype=np.uint8)
    references = [f"case-{n:07d}" for n in range(entries)]
    text = "".join(
        f"pdq,{code.tobytes().hex()},{ref}\n" for code, ref in zip(codes, references, strict=True)
    )
    started = time.monotonic()
    parsed = read_hash_set(io.BytesIO(("algorithm,hash,reference\n" + text).encode()))
    report = store.entries.import_rows("big", parsed, actor="bench")
    print(f"imported {report.added} entries in {time.monotonic() - started:.0f} s", flush=True)
    store.users.create("bench", "admin", StaffRole.ADMIN, actor="bench", password=PASSWORD)
    for n in range(20):
        store.users.create(
            "bench", f"analyst{n}", StaffRole.ANALYST, actor="bench", password=PASSWORD
        )
    _, secret = store.keys.create("bench", frozenset({Role.ADMIN, Role.MATCH}), actor="bench")
    actions = ["entries.import", "entries.withdraw", "list.update", "key.create", "user.create"]
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "at": now - dt.timedelta(minutes=audit_rows - n),
            "actor": f"user:analyst{n % 20}:bench" if n % 3 else f"key:{n % 7}:bench",
            "action": actions[n % len(actions)],
            "target": "big" if n % 2 else f"small-{n % 5}",
            "counts": {"added": n % 100},
            "reason": None,
            "details": None,
        }
        for n in range(audit_rows)
    ]
    with store.database.write_transaction() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(insert(audit), rows[start : start + 5000])
    store.close()
    return secret, [references[len(references) // 2], references[-1]]


def sign_in(client: httpx.Client) -> None:
    page = client.get("/console/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    done = client.post(
        "/console/login",
        data={"login": "admin", "password": PASSWORD, "csrf": token.group(1)},
    )
    assert done.status_code == 200 and "/console/login" not in str(done.url), done.status_code


def measure(client: httpx.Client, path: str, rounds: int) -> dict[str, float]:
    for _ in range(3):
        client.get(path)
    server, trip = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        response = client.get(path)
        trip.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
        timing = re.search(r"dur=([0-9.]+)", response.headers.get("server-timing", ""))
        if timing:
            server.append(float(timing.group(1)))

    def p95(values: list[float]) -> float:
        return round(float(np.percentile(values, 95)), 1) if values else float("nan")

    result = {
        "round_trip_p50_ms": round(statistics.median(trip), 1),
        "round_trip_p95_ms": p95(trip),
    }
    if server:
        result |= {
            "server_p50_ms": round(statistics.median(server), 1),
            "server_p95_ms": p95(server),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--audit", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    settings = {k: str(v) for k, v in vars(args).items()} | {
        "python": platform.python_version(),
        "cpus": str(os.cpu_count()),
        "database": "sqlite (the embedded default)",
        "workers": "1",
        "target": f"server p95 <= {LIMIT_MS} ms per page",
    }
    print("settings:", json.dumps(settings), flush=True)
    folder = Path(tempfile.mkdtemp(prefix="hashmatch-bench-console-"))
    secret, references = prepare(folder, args.entries, args.audit)
    port = free_port()
    env = {
        **os.environ,
        "HASHMATCH_DATA_DIR": str(folder),
        "HASHMATCH_RATE_LIMIT": "1000000",
        "HASHMATCH_RATE_BURST": "1000000",
    }
    env.pop("HASHMATCH_DATABASE_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "hashmatch", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None:
                raise SystemExit("the server stopped")
            time.sleep(0.3)
        console = httpx.Client(base_url=base, timeout=30, follow_redirects=True)
        sign_in(console)
        api = httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {secret}"})
        middle_id = args.entries // 2
        since = (dt.datetime.now(dt.UTC) - dt.timedelta(days=20)).date().isoformat()
        pairs = [
            ("overview", "/console/", "/v1/lists"),
            ("list, first page", "/console/lists/big", "/v1/lists/big/entries?limit=50"),
            (
                "list, a page in the middle",
                f"/console/lists/big?after={middle_id}",
                f"/v1/lists/big/entries?limit=50&after={middle_id}",
            ),
            (
                "list, search by reference",
                f"/console/lists/big?reference={references[0]}",
                f"/v1/lists/big/entries?limit=50&after={middle_id}",
            ),
            (
                "list, search by hash prefix",
                "/console/lists/big?hash=00ff00ff",
                f"/v1/lists/big/entries?limit=50&after={middle_id}",
            ),
            (
                "list, search by label",
                "/console/lists/big?label=nothing-has-this",
                f"/v1/lists/big/entries?limit=50&after={middle_id}",
            ),
            ("audit, newest", "/console/audit", "/v1/changes?limit=50"),
            (
                "audit, by person",
                "/console/audit?actor=user%3Aanalyst3%3Abench",
                "/v1/changes?limit=50",
            ),
            ("audit, by action", "/console/audit?action=key.create", "/v1/changes?limit=50"),
            ("audit, date range", f"/console/audit?from={since}", "/v1/changes?limit=50"),
            ("keys", "/console/keys", "/v1/lists"),
            ("people", "/console/people", "/v1/lists"),
            ("exchanges", "/console/exchanges", "/v1/exchange/peers"),
            ("test an image (form)", "/console/test", "/healthz"),
        ]
        results: list[dict[str, object]] = []
        worst = 0.0
        within = 0
        for name, page, baseline in pairs:
            measured = measure(console, page, args.rounds)
            against = measure(api, baseline, args.rounds)
            row = {
                "page": name,
                "path": page,
                **measured,
                "baseline": baseline,
                "baseline_round_trip_p95_ms": against["round_trip_p95_ms"],
                "ratio_p95": round(measured["round_trip_p95_ms"] / against["round_trip_p95_ms"], 2),
                "within_target": measured.get("server_p95_ms", float("inf")) <= LIMIT_MS,
            }
            results.append(row)
            worst = max(worst, measured.get("server_p95_ms", 0.0))
            within += bool(row["within_target"])
            print(json.dumps(row), flush=True)
        summary = {
            "pages": len(results),
            "within_target": within,
            "worst_server_p95_ms": worst,
        }
        print(json.dumps({"result": results, "summary": summary}), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
