"""A million-row hash set uploaded through the console: the server's memory and the seconds of
its validation and commit, beside the same file through the JSON API.

Generates a CSV of ``--rows`` random PDQ hashes (``algorithm,hash,reference``) into the cache
(``HASHMATCH_BENCH_CACHE``, default ``~/.cache/hashmatch-bench``), then, for each path, starts a
real ``hashmatch serve`` (one worker, SQLite, a fresh data directory with one empty list) and
samples the server's resident memory (``VmRSS`` in ``/proc``, its workers' too, every 20 ms)
while it works:

- console: sign in as an analyst, ``POST /console/lists/{name}/upload`` (multipart, the CSRF
  token first; the server stages the file and runs the import as a rolled-back dry run for the
  report), then ``POST /console/uploads/{id}/commit`` (the real import, re-reading the staged
  chunks);
- api (the baseline): ``POST /v1/lists/{name}/entries`` with the file as multipart field
  ``file`` (the import streamed as the body arrives).

Memory is reported above the server's idle resident size (after start-up and a first page), as
the peak during each request and the peak until the new entries are matchable (the replica's
index grows by the entries, whichever path added them).

    python benchmarks/bench_console_upload.py [--rows 1000000] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench_http import free_port, tree_rss
from hashmatch.store import Role, StaffRole, Store, database_url

CACHE = Path(os.environ.get("HASHMATCH_BENCH_CACHE", Path.home() / ".cache" / "hashmatch-bench"))
LIST = "bulk"
ORG = "bench"
LOGIN = "bench-analyst"
PASSWORD = "a long benchmark password"
MIB = 1024 * 1024
_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def hash_set(rows: int) -> Path:
    """The CSV of ``rows`` random PDQ hashes, made once and kept in the cache."""
    path = CACHE / f"console-upload-{rows}.csv"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2026)
    partial = path.with_suffix(".partial")
    with partial.open("w") as out:
        out.write("algorithm,hash,reference\n")
        for start in range(0, rows, 100_000):
            codes = rng.integers(0, 256, size=(min(100_000, rows - start), 32), dtype=np.uint8)
            out.writelines(
                f"pdq,{code.tobytes().hex()},row-{start + n}\n" for n, code in enumerate(codes)
            )
    partial.rename(path)
    return path


def last_hash(path: Path) -> str:
    with path.open("rb") as source:
        source.seek(-200, os.SEEK_END)
        line = source.read().decode().strip().splitlines()[-1]
    return line.split(",")[1]


class Sampler:
    """The process's resident size every 20 ms; :meth:`peak` since the last :meth:`mark`."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._peak = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                value = tree_rss(self._pid)
            except OSError:
                return
            with self._lock:
                self._peak = max(self._peak, value)
            time.sleep(0.02)

    def mark(self) -> None:
        with self._lock:
            self._peak = tree_rss(self._pid)

    def peak(self) -> int:
        with self._lock:
            return self._peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Server:
    """``hashmatch serve`` over a fresh data directory holding one empty list, an analyst and
    keys to add and to match."""

    def __init__(self, folder: Path, workers: int) -> None:
        data_dir = folder / "index"
        store = Store.open(database_url(data_dir, None))
        store.lists.create(LIST, owner=ORG, category="csam", actor="bench")
        store.users.create(ORG, LOGIN, StaffRole.ANALYST, actor="bench", password=PASSWORD)
        _, add = store.keys.create(ORG, frozenset({Role.CONTRIBUTE}), actor="bench")
        _, match = store.keys.create(ORG, frozenset({Role.MATCH}), actor="bench")
        store.close()
        self.add_key = {"Authorization": f"Bearer {add}"}
        self.match_key = {"Authorization": f"Bearer {match}"}
        port = free_port()
        env = {
            **os.environ,
            "HASHMATCH_DATA_DIR": str(data_dir),
            "HASHMATCH_RATE_LIMIT": "1000000",
            "HASHMATCH_RATE_BURST": "1000000",
        }
        env.pop("HASHMATCH_DATABASE_URL", None)
        command = [sys.executable, "-m", "hashmatch", "serve", "--port", str(port)]
        self.log = folder / "server.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*command, "--workers", str(workers)], env=env, stdout=log, stderr=log
            )
        self.base = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        while True:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() - started > 120:
                raise RuntimeError("the server did not become ready")
            time.sleep(0.2)

    def matchable(self, value: str, timeout: float = 600) -> float:
        """Seconds until ``value`` matches (the replica has applied the import)."""
        started = time.monotonic()
        body = {"hashes": [{"algorithm": "pdq", "value": value}]}
        while time.monotonic() - started < timeout:
            answer = httpx.post(
                f"{self.base}/v1/match/hashes", json=body, headers=self.match_key, timeout=30
            )
            answer.raise_for_status()
            if answer.json()["match"]:
                return time.monotonic() - started
            time.sleep(0.1)
        raise RuntimeError("the import never became matchable")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def _csrf(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "no CSRF token on the page"
    return found.group(1)


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def console_run(server: Server, path: Path, sampler: Sampler, idle: int) -> dict[str, Any]:
    client = httpx.Client(base_url=server.base, timeout=1800, follow_redirects=True)
    page = client.get("/console/login")
    signed = client.post(
        "/console/login",
        data={"login": LOGIN, "password": PASSWORD, "csrf": _csrf(page.text)},
    )
    assert signed.status_code == 200 and "hm_session" in client.cookies, signed.text[:300]
    form = client.get(f"/console/lists/{LIST}/upload")
    sampler.mark()
    with path.open("rb") as source:
        staged, validate_s = timed(
            lambda: client.post(
                f"/console/lists/{LIST}/upload",
                data={"csrf": _csrf(form.text)},
                files={"file": (path.name, source, "text/csv")},
            )
        )
    validate_peak = sampler.peak()
    assert staged.status_code == 200 and "/console/uploads/" in str(staged.url), staged.text[:500]
    counts = dict(re.findall(r'data-count="(\w+)">([\d,]+)<', staged.text))
    sampler.mark()
    committed, commit_s = timed(
        lambda: client.post(
            str(staged.url) + "/commit", data={"csrf": _csrf(staged.text)}, follow_redirects=False
        )
    )
    commit_peak = sampler.peak()
    assert committed.status_code == 303, committed.text[:500]
    matchable_s = server.matchable(last_hash(path))
    settled_peak = sampler.peak()
    return {
        "validate_s": round(validate_s, 2),
        "commit_s": round(commit_s, 2),
        "matchable_after_commit_s": round(matchable_s, 2),
        "report": {name: int(value.replace(",", "")) for name, value in counts.items()},
        "redirect": committed.headers["location"],
        "idle_rss_mb": round(idle / MIB, 1),
        "peak_above_idle_mb": {
            "validate": round((validate_peak - idle) / MIB, 1),
            "commit": round((commit_peak - idle) / MIB, 1),
            "until_matchable": round((max(settled_peak, validate_peak) - idle) / MIB, 1),
        },
    }


def api_run(server: Server, path: Path, sampler: Sampler, idle: int) -> dict[str, Any]:
    sampler.mark()
    with path.open("rb") as source:
        imported, import_s = timed(
            lambda: httpx.post(
                f"{server.base}/v1/lists/{LIST}/entries",
                files={"file": (path.name, source, "text/csv")},
                headers=server.add_key,
                timeout=1800,
            )
        )
    import_peak = sampler.peak()
    assert imported.status_code == 200, imported.text[:500]
    report = imported.json()
    matchable_s = server.matchable(last_hash(path))
    settled_peak = sampler.peak()
    return {
        "import_s": round(import_s, 2),
        "matchable_after_import_s": round(matchable_s, 2),
        "report": {k: report[k] for k in ("added", "duplicates", "rejected")},
        "idle_rss_mb": round(idle / MIB, 1),
        "peak_above_idle_mb": {
            "import": round((import_peak - idle) / MIB, 1),
            "until_matchable": round((settled_peak - idle) / MIB, 1),
        },
    }


def measured(
    workers: int, path: Path, run: Callable[[Server, Path, Sampler, int], dict[str, Any]]
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hashmatch-bench-") as folder:
        server = Server(Path(folder), workers)
        try:
            # Idle: started, and a page and a match served (imports, allocator warmed up).
            httpx.get(f"{server.base}/console/login", timeout=30)
            httpx.post(
                f"{server.base}/v1/match/hashes",
                json={"hashes": [{"algorithm": "pdq", "value": "00" * 32}]},
                headers=server.match_key,
                timeout=30,
            )
            time.sleep(1)
            idle = tree_rss(server.process.pid)
            sampler = Sampler(server.process.pid)
            try:
                return run(server, path, sampler, idle)
            except Exception:
                print(server.log.read_text()[-5000:], file=sys.stderr)
                raise
            finally:
                sampler.stop()
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    path = hash_set(args.rows)
    settings = {
        "rows": args.rows,
        "file_mb": round(path.stat().st_size / MIB, 1),
        "file": str(path),
        "workers": args.workers,
        "database": "sqlite",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "rss": "server VmRSS (with its worker processes) every 20 ms, above its idle size",
    }
    print("settings:", json.dumps(settings), flush=True)
    result: dict[str, Any] = {"settings": settings}
    result["console"] = measured(args.workers, path, console_run)
    print("console:", json.dumps(result["console"]), flush=True)
    result["api_baseline"] = measured(args.workers, path, api_run)
    console, api = result["console"], result["api_baseline"]
    result["console_vs_api"] = {
        "seconds": round((console["validate_s"] + console["commit_s"]) / api["import_s"], 2),
        "peak_mb_above_idle": {
            "console": max(console["peak_above_idle_mb"].values()),
            "api": max(api["peak_above_idle_mb"].values()),
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
