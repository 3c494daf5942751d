"""Outcome reports: batch ingestion against a plain bulk insert, and the match path's cost.

For each database: N reports in batches through ``Store.outcomes.report`` (verifying every
match id, checking every item, one transaction per batch, its audit row), first as new reports
and then again as updates; the baseline is the same rows written by a plain ``executemany``
INSERT in one transaction per batch, with nothing checked. Then, in memory: what stamping a
hit (its match id and its count) adds to building the hit's response (``MatchOut``).

    python benchmarks/bench_outcomes.py [--reports 50000] [--batch 10000]
        [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, delete, insert, text

from hashmatch.matching.counts import MatchRecorder
from hashmatch.matching.state import Match
from hashmatch.matching.tokens import MatchTokens
from hashmatch.matching.verdict import Hit, MatchOut
from hashmatch.signals import PDQ
from hashmatch.store import Store
from hashmatch.store.schema import outcomes

POSTGRES = os.environ.get(
    "HASHMATCH_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def postgres_database() -> str:
    name = f"hm_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return POSTGRES.rsplit("/", 1)[0] + f"/{name}"


def drop_postgres(url: str) -> None:
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def ingest(url: str, reports: int, batch: int) -> dict[str, Any]:
    store = Store.open(url)
    try:
        store.lists.create("l", owner="kcsc", category="ncii", actor="bench")
        list_id = store.lists.get("l").id
        tokens = store.outcomes.tokens()
        matched = int(time.time()) - 3600
        ids = [tokens.issue(i, list_id, "ncc", matched) for i in range(1, reports + 1)]
        acted = dt.datetime.fromtimestamp(matched + 600, dt.UTC).isoformat()
        batches = [
            [{"match_id": i, "outcome": "removed", "acted_at": acted} for i in ids[s : s + batch]]
            for s in range(0, reports, batch)
        ]
        timings: dict[str, float] = {}
        for phase in ("new", "update"):
            start = time.perf_counter()
            for items in batches:
                done = store.outcomes.report("ncc", items, actor="bench")  # type: ignore[arg-type]
                assert done.rejected == 0
            timings[phase] = time.perf_counter() - start
        # The baseline: the same rows, unchecked, by a plain executemany, one transaction each.
        org_id = store.lists.organisation_id("ncc")
        now = dt.datetime.now(dt.UTC)
        at = dt.datetime.fromtimestamp(matched, dt.UTC)
        rows = [
            {
                "match_id": f"b{i}",
                "organisation_id": org_id,
                "list_id": list_id,
                "entry_id": i,
                "matched_at": at,
                "outcome": "removed",
                "acted_at": at + dt.timedelta(seconds=600),
                "reported_at": now,
                "updated_at": now,
            }
            for i in range(reports)
        ]
        start = time.perf_counter()
        for s in range(0, reports, batch):
            with store.database.engine.begin() as conn:
                conn.execute(insert(outcomes), rows[s : s + batch])
        timings["baseline"] = time.perf_counter() - start
        with store.database.engine.begin() as conn:
            conn.execute(delete(outcomes).where(outcomes.c.match_id.like("b%")))
    finally:
        store.close()
    rate = {name: round(reports / seconds) for name, seconds in timings.items()}
    return {
        "reports_per_second": rate,
        "new_vs_baseline": round(timings["baseline"] / timings["new"], 3),
        "update_vs_baseline": round(timings["baseline"] / timings["update"], 3),
    }


def match_path(hits: int) -> dict[str, Any]:
    """Microseconds per hit: building its response as before, and stamping it too."""
    recorder = MatchRecorder(MatchTokens(b"k" * 32))
    matches = [
        Hit(Match("l", 1, "kcsc", "block", "ncii", i, f"ref-{i}", ("a",), PDQ, 12, 31))
        for i in range(hits)
    ]

    class Unstamped:  # the response as it was built before match ids
        def match_id(self, _: Match) -> str:
            return ""

    timings = {}
    for name, stamp in (("response", Unstamped()), ("response_stamped", recorder.stamp("ncc"))):
        start = time.perf_counter()
        for hit in matches:
            MatchOut.of(hit, "ncc", stamp).model_dump()  # type: ignore[arg-type]
        timings[name] = (time.perf_counter() - start) / hits * 1e6
    stamp = recorder.stamp("ncc")
    start = time.perf_counter()
    for hit in matches:
        stamp.match_id(hit.match)
    timings["stamp_only"] = (time.perf_counter() - start) / hits * 1e6
    return {
        "microseconds_per_hit": {k: round(v, 3) for k, v in timings.items()},
        "stamped_vs_response": round(timings["response_stamped"] / timings["response"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--hits", type=int, default=100_000)
    args = parser.parse_args()
    settings = {
        "reports": args.reports,
        "batch": args.batch,
        "backends": args.backends,
        "hits": args.hits,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    print("settings:", json.dumps(settings), flush=True)
    results: dict[str, Any] = {}
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                results[backend] = ingest(
                    f"sqlite:///{Path(tmp) / 'bench.db'}", args.reports, args.batch
                )
        else:
            url = postgres_database()
            try:
                results[backend] = ingest(url, args.reports, args.batch)
            finally:
                drop_postgres(url)
        print(backend, json.dumps(results[backend]), flush=True)
    results["match_path"] = match_path(args.hits)
    print(json.dumps({"settings": settings, "results": results}, indent=2))


if __name__ == "__main__":
    main()
