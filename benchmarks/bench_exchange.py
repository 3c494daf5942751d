"""The exchange between two instances: initial sync, propagation, wire size, and faults.

A publisher (instance ``ncc``, SQLite) holds a list of ``--entries`` random PDQ hashes owned by
``ncc``, offered to ``kcsc`` (TLP GREEN when the CLI has ``--tlp``) and accepted; a subscriber
(instance ``kcsc``, SQLite or a fresh PostgreSQL database) follows it with
``hashmatch exchange add ncc``. Both are real ``hashmatch serve`` subprocesses on loopback,
driven by this process; the machine's cores are shared by all three.

1. initial sync: ``exchange add`` until the mirror ``ncc:big`` holds every entry (its rows in
   the subscriber's database), and until its last entry matches over HTTP. Baseline, in the
   same run: the same file imported with ``hashmatch lists import`` into an empty database of
   the subscriber's backend; the ratio sync / import is the price of the exchange over a local
   import.
2. propagation: one entry added at the origin until it matches at the subscriber (polled every
   20 ms), then withdrawn until it no longer does; p50 and max over ``--trials``.
3. wire size: the whole feed read from the start with the exchange key and gzip, as the fetcher
   reads it (pages of 20,000), compressed body bytes per entry.
4. faults: a fresh subscriber behind a :class:`faultproxy.FaultProxy` (seeded random faults
   at rate 0.3 until ``--faults`` were applied), killed with SIGKILL and restarted twice during
   its sync, the publisher killed and restarted once, entries added and withdrawn at the origin
   all along; then faults off, quiescence, ``exchange verify --no-repair`` and both sides
   exported and compared: entries lost and duplicated.

    python benchmarks/bench_exchange.py [--entries 1000000] [--trials 50] [--faults 100]
        [--subscriber sqlite|postgresql|both] [--quick]
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from faultproxy import ALL_FAULTS, FaultProxy  # noqa: E402

HASHMATCH = str(Path(sys.executable).parent / "hashmatch")
PG_ADMIN = os.environ.get(
    "HASHMATCH_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
LIST = "big"
MIRROR = f"ncc:{LIST}"
POLL = 0.02  # the propagation poll, seconds

TARGETS = {
    "initial_sync_s": 60.0,  # stated for 1M entries
    "propagation_p50_s": 1.0,
    "propagation_max_s": 3.0,
    "wire_bytes_per_entry": 64.0,
    "faults_lost": 0,
    "faults_duplicated": 0,
}


class BenchError(Exception):
    """A wait that ran out, or a step that failed: the message says which."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.2) -> Any:
    """``check()`` until it returns something truthy; BenchError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except (httpx.HTTPError, OSError) as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_error!r})" if last_error else ""
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}{extra}")
        time.sleep(every)


# --- databases --------------------------------------------------------------------------------


class Databases:
    """Fresh PostgreSQL databases, dropped at the end."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def create(self) -> str:
        name = f"hm_bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"

    def drop_all(self) -> None:
        for name in self.created:
            try:
                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except psycopg.Error as exc:
                print(f"warning: could not drop database {name}: {exc}", file=sys.stderr)
        self.created.clear()


# --- instances --------------------------------------------------------------------------------


class Instance:
    """One hashmatch: its data folder, its database, its CLI, and its server subprocess."""

    def __init__(
        self, name: str, folder: Path, database_url: str | None, extra_env: dict[str, str] | None
    ) -> None:
        self.name = name
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url
        self.port = free_port()
        self.env = {
            **os.environ,
            "HASHMATCH_DATA_DIR": str(folder),
            "HASHMATCH_INSTANCE_NAME": name,
            "HASHMATCH_PORT": str(self.port),
            "HASHMATCH_RATE_LIMIT": "1000000",
            "HASHMATCH_RATE_BURST": "1000000",
            "HASHMATCH_LOG_LEVEL": "warning",
            **(extra_env or {}),
        }
        self.env.pop("HASHMATCH_DATABASE_URL", None)
        if database_url:
            self.env["HASHMATCH_DATABASE_URL"] = database_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._engine: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def backend(self) -> str:
        return "postgresql" if self.database_url else "sqlite"

    def cli(
        self, *args: str, check: bool = True, timeout: float = 1800
    ) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run(
                [HASHMATCH, *args],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError(
                f"{self.name}: hashmatch {' '.join(args)} ran over {timeout} s"
            ) from exc
        if check and done.returncode != 0:
            raise BenchError(
                f"{self.name}: hashmatch {' '.join(args)} exited {done.returncode}: "
                f"{done.stderr.strip()[-800:]}"
            )
        return done

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args).stdout)

    def start(self, timeout: float = 600) -> float:
        """Start ``hashmatch serve``; seconds until /readyz answered 200."""
        assert self.proc is None or self.proc.poll() is not None
        self.starts += 1
        log = (self.folder / f"serve-{self.starts}.log").open("wb")
        began = time.monotonic()
        self.proc = subprocess.Popen(
            [HASHMATCH, "serve", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                tail = (self.folder / f"serve-{self.starts}.log").read_text(errors="replace")
                raise BenchError(f"{self.name}: serve exited {self.proc.returncode}: {tail[-800:]}")
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200

        wait_for(f"{self.name} /readyz", ready, timeout)
        return time.monotonic() - began

    def kill(self) -> None:
        """SIGKILL: no shutdown, no lease released."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def live_count(self, list_name: str) -> int:
        """Live entries of a list, read straight from the database (cheap enough to poll)."""
        if self._engine is None:
            url = self.database_url or f"sqlite:///{self.folder / 'hashmatch.db'}"
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
            self._engine = create_engine(url, pool_pre_ping=True)
        with self._engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT count(*) FROM entries e JOIN lists l ON e.list_id = l.id "
                    "WHERE l.name = :name AND e.withdrawn_at IS NULL"
                ),
                {"name": list_name},
            ).first()
        return int(row[0]) if row else 0

    def create_key(self, org: str, role: str) -> str:
        if role in self.cli("keys", "create", "-h").stdout:
            return str(self.cli_json("keys", "create", "--org", org, "--role", role)["key"])
        # The CLI does not offer this role (yet): the store's own API, as the CLI would.
        code = (
            "import os, sys\n"
            "from pathlib import Path\n"
            "from hashmatch.store import Role, Store, database_url\n"
            "store = Store.open(database_url(Path(os.environ['HASHMATCH_DATA_DIR']),"
            " os.environ.get('HASHMATCH_DATABASE_URL')))\n"
            "_, secret = store.keys.create(sys.argv[1], frozenset({Role(sys.argv[2])}),"
            " actor='bench')\n"
            "store.close()\n"
            "print(secret)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, org, role],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise BenchError(f"{self.name}: creating a {role} key failed: {done.stderr[-800:]}")
        return done.stdout.strip()


def client() -> httpx.Client:
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    return httpx.Client(timeout=30, transport=transport)


class Matcher:
    """``POST /v1/match/hashes`` at the subscriber, one hash at a time."""

    def __init__(self, sub: Instance, key: str) -> None:
        self.sub = sub
        self.headers = {"Authorization": f"Bearer {key}"}
        self.http = client()

    def matches(self, value: str) -> bool:
        response = self.http.post(
            f"{self.sub.url}/v1/match/hashes",
            headers=self.headers,
            json={"hashes": [{"algorithm": "pdq", "value": value}]},
        )
        if response.status_code != 200:
            raise BenchError(f"match answered {response.status_code}: {response.text[:300]}")
        return bool(response.json()["match"])

    def close(self) -> None:
        self.http.close()


class Origin:
    """Adds and withdrawals at the publisher, with its ``ncc`` contribute key."""

    def __init__(self, pub: Instance, key: str) -> None:
        self.pub = pub
        self.headers = {"Authorization": f"Bearer {key}"}
        self.http = client()

    def add(self, value: str, reference: str) -> None:
        response = self.http.post(
            f"{self.pub.url}/v1/lists/{LIST}/entries",
            headers=self.headers,
            json={"entries": [{"algorithm": "pdq", "hash": value, "reference": reference}]},
        )
        if response.status_code != 200:
            raise BenchError(f"add answered {response.status_code}: {response.text[:300]}")

    def withdraw(self, *references: str) -> int:
        response = self.http.post(
            f"{self.pub.url}/v1/lists/{LIST}/withdrawals",
            headers=self.headers,
            json={
                "reason": "benchmark",
                "references": list(references),
                "reason_class": "victim_request",
            },
        )
        if response.status_code not in (200, 404):
            raise BenchError(f"withdraw answered {response.status_code}: {response.text[:300]}")
        return response.status_code

    def close(self) -> None:
        self.http.close()


def random_hex(rng: np.random.Generator) -> str:
    return rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex()


# --- the phases ---------------------------------------------------------------------------------


def new_subscriber(
    folder: Path, backend: str, dbs: Databases, exchange_key: str, tag: str
) -> tuple[Instance, Matcher, Path]:
    url = dbs.create() if backend == "postgresql" else None
    sub = Instance("kcsc", folder / f"sub-{backend}-{tag}", url, None)
    match_key = sub.create_key("kcsc", "match")
    key_file = sub.folder / "ncc.key"
    key_file.write_text(exchange_key + "\n")
    key_file.chmod(0o600)
    sub.start()
    return sub, Matcher(sub, match_key), key_file


def initial_sync(
    pub: Instance,
    folder: Path,
    backend: str,
    dbs: Databases,
    exchange_key: str,
    csv_file: Path,
    n: int,
    last_hash: str,
) -> tuple[dict[str, Any], Instance, Matcher]:
    result: dict[str, Any] = {}
    # Baseline first, on an idle machine: the same file imported into an empty database.
    base_url = dbs.create() if backend == "postgresql" else None
    base = Instance("kcsc", folder / f"baseline-{backend}", base_url, None)
    base.cli("lists", "create", "local", "--owner", "kcsc", "--category", "ncii")
    began = time.monotonic()
    base.cli("lists", "import", "local", str(csv_file))
    result["baseline_import_s"] = time.monotonic() - began
    imported = base.live_count("local")
    base.stop()
    if imported != n:
        raise BenchError(f"baseline import holds {imported} entries, not {n}")

    sub, matcher, key_file = new_subscriber(folder, backend, dbs, exchange_key, "sync")
    # The origin's live entries now: an earlier backend's fault phase added and withdrew some.
    expected = pub.live_count(LIST)
    result["origin_entries"] = expected
    timeout = 120 + n / 1000  # 1M: 18 min before giving up
    began = time.monotonic()
    sub.cli(
        "exchange", "add", "ncc", "--url", pub.url, "--key-file", str(key_file), "--org", "kcsc"
    )
    first_entry = wait_for(
        "the first mirrored entry", lambda: sub.live_count(MIRROR) > 0, timeout, 0.1
    )
    result["first_entry_s"] = time.monotonic() - began if first_entry else None
    wait_for(
        f"{expected} entries in {MIRROR}", lambda: sub.live_count(MIRROR) >= expected, timeout, 0.25
    )
    result["sync_s"] = time.monotonic() - began
    wait_for("the last entry to match", lambda: matcher.matches(last_hash), 300, 0.05)
    result["sync_matchable_s"] = time.monotonic() - began
    result["mirror_entries"] = sub.live_count(MIRROR)
    result["ratio_sync_vs_import"] = result["sync_s"] / result["baseline_import_s"]
    result["entries_per_second"] = n / result["sync_s"]
    verify = sub.cli("exchange", "verify", "ncc", "--no-repair", check=False)
    result["verify_equal"] = verify.returncode == 0
    result["verify"] = _json_or_text(verify)
    return result, sub, matcher


def propagation(
    origin: Origin, matcher: Matcher, trials: int, rng: np.random.Generator, tag: str
) -> dict[str, Any]:
    adds: list[float] = []
    withdrawals: list[float] = []
    failures: list[str] = []
    for trial in range(trials):
        value = random_hex(rng)
        reference = f"T{tag}{trial}"
        began = time.monotonic()
        origin.add(value, reference)
        try:
            wait_for(
                f"trial {trial}: the added entry to match",
                lambda: matcher.matches(value),  # noqa: B023 - called before the loop moves on
                30,
                POLL,
            )
            adds.append(time.monotonic() - began)
        except BenchError as exc:
            failures.append(str(exc))
            continue
        began = time.monotonic()
        origin.withdraw(reference)
        try:
            wait_for(
                f"trial {trial}: the withdrawn entry to stop matching",
                lambda: not matcher.matches(value),  # noqa: B023 - called before the loop moves on
                30,
                POLL,
            )
            withdrawals.append(time.monotonic() - began)
        except BenchError as exc:
            failures.append(str(exc))

    def summary(values: list[float]) -> dict[str, float | None]:
        if not values:
            return {"p50_s": None, "p90_s": None, "max_s": None}
        return {
            "p50_s": float(np.percentile(values, 50)),
            "p90_s": float(np.percentile(values, 90)),
            "max_s": float(max(values)),
        }

    return {
        "trials": trials,
        "add": summary(adds),
        "withdraw": summary(withdrawals),
        "timeouts": len(failures),
        "failures": failures[:5],
    }


def wire_size(pub: Instance, exchange_key: str, n: int) -> dict[str, Any]:
    """The whole feed from the start, pages of 20,000 as the fetcher asks, gzip."""
    headers = {"Authorization": f"Bearer {exchange_key}", "Accept-Encoding": "gzip"}
    cursor = ""
    raw_bytes = 0
    body_bytes = 0
    header_bytes = 0
    pages = 0
    entries = 0
    began = time.monotonic()
    with client() as http:
        while True:
            params = {"cursor": cursor, "limit": "20000", "wait": "0"}
            with http.stream(
                "GET", f"{pub.url}/v1/exchange/feed", params=params, headers=headers, timeout=300
            ) as response:
                if response.status_code != 200:
                    raise BenchError(f"feed answered {response.status_code}")
                raw = b"".join(response.iter_raw())
                header_bytes += sum(len(k) + len(v) + 4 for k, v in response.headers.raw) + 17
                encoding = response.headers.get("content-encoding", "")
            raw_bytes += len(raw)
            body = gzip.decompress(raw) if encoding == "gzip" else raw
            body_bytes += len(body)
            page = json.loads(body)
            pages += 1
            entries += sum(len(e.get("entries", [])) for e in page["events"] if e["type"] == "add")
            cursor = page["cursor"]
            if not page["more"]:
                break
            if pages > n // 1000 + 100:
                raise BenchError("the feed never said it had no more")
    seconds = time.monotonic() - began
    return {
        "pages": pages,
        "entries_sent": entries,
        "gzip_body_bytes": raw_bytes,
        "bytes_per_entry": raw_bytes / n,
        "bytes_per_entry_with_headers": (raw_bytes + header_bytes) / n,
        "uncompressed_bytes_per_entry": body_bytes / n,
        "read_s": seconds,
    }


def _json_or_text(done: subprocess.CompletedProcess[str]) -> Any:
    try:
        return json.loads(done.stdout)
    except ValueError:
        return {"exit": done.returncode, "stdout": done.stdout[-500:], "stderr": done.stderr[-500:]}


def export_set(inst: Instance, name: str, path: Path) -> collections.Counter[tuple[str, str]]:
    inst.cli("lists", "export", name, "--format", "jsonl", "-o", str(path))
    found: collections.Counter[tuple[str, str]] = collections.Counter()
    with path.open() as lines:
        for line in lines:
            if line.strip():
                row = json.loads(line)
                found[(str(row["hash"]).lower(), str(row.get("reference")))] += 1
    return found


def faults_phase(
    pub: Instance,
    origin: Origin,
    folder: Path,
    backend: str,
    dbs: Databases,
    exchange_key: str,
    n: int,
    fault_budget: int,
    seed: int,
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    proxy = FaultProxy(pub.url, timeout_delay=2.0)
    sub: Instance | None = None
    matcher: Matcher | None = None
    churn_stop = threading.Event()
    churn_stats = collections.Counter[str]()
    events: list[dict[str, Any]] = []
    began = time.monotonic()

    def note(what: str, **extra: Any) -> None:
        events.append({"t_s": round(time.monotonic() - began, 2), "event": what, **extra})

    def churn() -> None:
        live: list[str] = []
        counter = 0
        with client() as http:
            churner = Origin(pub, origin.headers["Authorization"].removeprefix("Bearer "))
            churner.http.close()
            churner.http = http
            while not churn_stop.is_set():
                try:
                    if not live or pick.random() < 0.55:
                        counter += 1
                        reference = f"C{seed}-{counter}"
                        churner.add(random_hex(rng), reference)
                        live.append(reference)
                        churn_stats["added"] += 1
                    else:
                        if pick.random() < 0.5:
                            reference = live.pop(pick.randrange(len(live)))
                        else:
                            # Never R<n>: the next backend's sync waits for it to match.
                            reference = f"R{pick.randrange(1, n)}"
                        status = churner.withdraw(reference)
                        churn_stats["withdrawn" if status == 200 else "withdraw_404"] += 1
                except (httpx.HTTPError, BenchError):
                    churn_stats["errors"] += 1
                    churn_stop.wait(0.5)
                churn_stop.wait(pick.uniform(0.05, 0.3))

    churner_thread = threading.Thread(target=churn, name="churn", daemon=True)
    result: dict[str, Any] = {"backend": backend}
    try:
        sub, matcher, key_file = new_subscriber(folder, backend, dbs, exchange_key, "faults")
        proxy.random_faults(0.3, seed=seed, kinds=ALL_FAULTS)
        churner_thread.start()
        sub.cli(
            "exchange",
            "add",
            "ncc",
            "--url",
            proxy.url,
            "--key-file",
            str(key_file),
            "--org",
            "kcsc",
        )
        note("exchange add (through the proxy)")
        deadline = time.monotonic() + 900 + n / 1000
        kills = 0
        publisher_killed = False
        synced_at: float | None = None
        while True:
            if time.monotonic() > deadline:
                raise BenchError(
                    f"faults phase: after {deadline - began:.0f} s, {kills} subscriber kills, "
                    f"{sum(proxy.stats.faults.values())} faults: gave up"
                )
            count = sub.live_count(MIRROR)
            if synced_at is None and count >= n * 0.99:
                synced_at = time.monotonic() - began
                note("mirror holds 99% of the list", count=count)
            if kills < 2 and (count >= n * (kills + 1) / 3 or synced_at is not None):
                sub.kill()
                kills += 1
                note(f"subscriber SIGKILL #{kills}", count=count, during_sync=synced_at is None)
                ready = sub.start()
                note(f"subscriber restarted #{kills}", ready_s=round(ready, 2))
                continue
            if kills == 2 and not publisher_killed and (count >= n * 0.8 or synced_at is not None):
                pub.kill()
                publisher_killed = True
                note("publisher SIGKILL", count=count, during_sync=synced_at is None)
                time.sleep(1.0)
                ready = pub.start()
                note("publisher restarted", ready_s=round(ready, 2))
                continue
            applied = sum(proxy.stats.faults.values())
            if publisher_killed and synced_at is not None and applied >= fault_budget:
                break
            time.sleep(0.1)
        note("faults budget reached", faults=sum(proxy.stats.faults.values()))
        proxy.clear()
        churn_stop.set()
        churner_thread.join(timeout=30)
        note("faults cleared, churn stopped")

        # Quiescence: a last entry at the origin matches at the subscriber (the fetcher is
        # alive and past every change), then verify compares count and digest.
        sentinel = random_hex(rng)
        origin.add(sentinel, f"Q{seed}")
        assert matcher is not None
        quiet = time.monotonic()
        wait_for(
            "the sentinel entry to match after the faults",
            lambda: matcher.matches(sentinel),
            300,
            0.1,
        )
        result["recovery_s"] = time.monotonic() - quiet
        note("sentinel matched")

        verify: dict[str, Any] = {}
        attempts: list[Any] = []

        def verified() -> bool:
            done = sub.cli("exchange", "verify", "ncc", "--no-repair", check=False)
            verify.clear()
            verify["report"] = _json_or_text(done)
            attempts.append(verify["report"])
            return done.returncode == 0

        try:
            wait_for("exchange verify ncc --no-repair to report equal", verified, 120, 2.0)
            result["verify_equal"] = True
        except BenchError as exc:
            result["verify_equal"] = False
            result["verify_error"] = str(exc)
        result["verify"] = verify.get("report")
        result["verify_attempts"] = len(attempts)
        result["verify_first_unequal"] = attempts[0] if len(attempts) > 1 else None
        note("verified", equal=result["verify_equal"])

        theirs = export_set(pub, LIST, folder / f"origin-{backend}.jsonl")
        ours = export_set(sub, MIRROR, folder / f"mirror-{backend}.jsonl")
        origin_keys = set(theirs)
        mirror_keys = set(ours)
        result["origin_entries"] = sum(theirs.values())
        result["mirror_entries"] = sum(ours.values())
        result["lost"] = len(origin_keys - mirror_keys)
        result["duplicated"] = sum(c - 1 for c in ours.values() if c > 1)
        result["extra"] = len(mirror_keys - origin_keys)  # withdrawn at the origin, live here
        if result["lost"]:
            result["lost_sample"] = sorted(origin_keys - mirror_keys)[:3]
        if result["extra"]:
            result["extra_sample"] = sorted(mirror_keys - origin_keys)[:3]
        stats = proxy.stats
        result["faults_applied"] = sum(stats.faults.values())
        result["faults_by_kind"] = dict(sorted(stats.faults.items()))
        result["proxy_requests"] = stats.requests
        result["proxy_upstream_errors"] = stats.upstream_errors
        result["subscriber_kills"] = kills
        result["publisher_kills"] = int(publisher_killed)
        result["churn"] = dict(churn_stats)
        peer = sub.cli_json("exchange", "show", "ncc")
        result["peer"] = {k: peer.get(k) for k in ("cursor", "failures", "last_error")}
        result["seconds"] = time.monotonic() - began
        return result
    finally:
        result["events"] = events
        churn_stop.set()
        if churner_thread.is_alive():
            churner_thread.join(timeout=30)
        proxy.close()
        if matcher is not None:
            matcher.close()
        if sub is not None:
            sub.stop()
        if pub.proc is None or pub.proc.poll() is not None:
            pub.start()  # the publisher is shared with the next backend's phases


# --- main ---------------------------------------------------------------------------------------


def setup_publisher(folder: Path, n: int, seed: int) -> tuple[Instance, Path, str, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    hexes = [c.tobytes().hex() for c in codes]
    csv_file = folder / "entries.csv"
    with csv_file.open("w") as out:
        out.write("algorithm,hash,reference\n")
        out.writelines(f"pdq,{h},R{i}\n" for i, h in enumerate(hexes, 1))
    pub = Instance("ncc", folder / "publisher", None, None)
    tlp = ["--tlp", "GREEN"] if "--tlp" in pub.cli("lists", "create", "-h").stdout else []
    pub.cli(
        "lists", "create", LIST, "--owner", "ncc", "--category", "ncii", "--share", "kcsc", *tlp
    )
    began = time.monotonic()
    pub.cli("lists", "import", LIST, str(csv_file))
    import_s = time.monotonic() - began
    pub.cli("shares", "accept", LIST, "--org", "kcsc")
    count = pub.live_count(LIST)
    if count != n:
        raise BenchError(f"the publisher's list holds {count} entries, not {n}")
    info = {"import_s": import_s, "entries": count, "tlp": tlp[1] if tlp else "AMBER (default)"}
    return pub, csv_file, hexes[-1], info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--faults", type=int, default=100, help="random faults to apply")
    parser.add_argument("--subscriber", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="20000 entries, 10 trials, 20 faults")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    if args.quick:
        args.entries, args.trials, args.faults = 20_000, 10, 20
    backends = ["sqlite", "postgresql"] if args.subscriber == "both" else [args.subscriber]
    settings = {k: str(v) for k, v in vars(args).items()} | {
        "python": platform.python_version(),
        "cpus": str(os.cpu_count()),
        "publisher": "SQLite, same machine",
        "fault_rate": "0.3",
        "fault_kinds": ",".join(ALL_FAULTS),
        "timeout_fault_delay_s": "2",
        "exchange_wait_s": os.environ.get("HASHMATCH_EXCHANGE_WAIT", "25 (default)"),
        "propagation_poll_s": str(POLL),
    }
    print("settings:", json.dumps(settings), flush=True)

    folder = Path(tempfile.mkdtemp(prefix="hashmatch-bench-exchange-"))
    dbs = Databases()
    pub: Instance | None = None
    origin: Origin | None = None
    result: dict[str, Any] = {"settings": settings}
    try:
        pub, csv_file, last_hash, result["publisher"] = setup_publisher(
            folder, args.entries, args.seed
        )
        ncc_key = pub.create_key("ncc", "contribute")
        exchange_key = pub.create_key("kcsc", "exchange")
        pub.start()
        origin = Origin(pub, ncc_key)
        try:
            result["wire"] = wire_size(pub, exchange_key, args.entries)
        except BenchError as exc:
            result["wire"] = {"error": str(exc)}
        print("wire:", json.dumps(result["wire"]), file=sys.stderr, flush=True)
        rng = np.random.default_rng(args.seed + 1)
        for backend in backends:
            section: dict[str, Any] = {}
            result[backend] = section
            sub: Instance | None = None
            matcher: Matcher | None = None
            try:
                section["initial_sync"], sub, matcher = initial_sync(
                    pub, folder, backend, dbs, exchange_key, csv_file, args.entries, last_hash
                )
                print(
                    f"{backend} sync:",
                    json.dumps(section["initial_sync"]),
                    file=sys.stderr,
                    flush=True,
                )
                section["propagation"] = propagation(origin, matcher, args.trials, rng, backend[0])
                print(
                    f"{backend} propagation:",
                    json.dumps(section["propagation"]),
                    file=sys.stderr,
                    flush=True,
                )
            except BenchError as exc:
                section["error"] = str(exc)
            finally:
                if matcher is not None:
                    matcher.close()
                if sub is not None:
                    sub.stop()
            try:
                section["faults"] = faults_phase(
                    pub,
                    origin,
                    folder,
                    backend,
                    dbs,
                    exchange_key,
                    args.entries,
                    args.faults,
                    args.seed,
                )
            except BenchError as exc:
                section["faults"] = {"error": str(exc)}
            print(f"{backend} faults:", json.dumps(section["faults"]), file=sys.stderr, flush=True)
        result["targets"] = TARGETS
        result["pass"] = judge(result, backends)
        result["all_pass"] = all(result["pass"].values())
        print(json.dumps(result, indent=2, default=str))
    finally:
        if origin is not None:
            origin.close()
        if pub is not None:
            pub.stop()
        dbs.drop_all()
        if args.keep:
            print(f"kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def judge(result: dict[str, Any], backends: list[str]) -> dict[str, bool]:
    verdicts: dict[str, bool] = {}
    wire = result.get("wire", {}).get("bytes_per_entry")
    verdicts["wire_bytes_per_entry"] = wire is not None and wire <= TARGETS["wire_bytes_per_entry"]
    for backend in backends:
        section = result.get(backend, {})
        sync = section.get("initial_sync", {}).get("sync_s")
        verdicts[f"{backend}_initial_sync"] = sync is not None and sync <= TARGETS["initial_sync_s"]
        prop = section.get("propagation", {})
        for side in ("add", "withdraw"):
            stats = prop.get(side, {})
            p50, worst = stats.get("p50_s"), stats.get("max_s")
            verdicts[f"{backend}_propagation_{side}_p50"] = (
                p50 is not None and p50 <= TARGETS["propagation_p50_s"] and not prop.get("timeouts")
            )
            verdicts[f"{backend}_propagation_{side}_max"] = (
                worst is not None
                and worst <= TARGETS["propagation_max_s"]
                and not prop.get("timeouts")
            )
        faults = section.get("faults", {})
        verdicts[f"{backend}_faults_lost"] = faults.get("lost") == TARGETS["faults_lost"]
        verdicts[f"{backend}_faults_duplicated"] = (
            faults.get("duplicated") == TARGETS["faults_duplicated"]
            and faults.get("extra") == 0
            and faults.get("verify_equal") is True
        )
    return verdicts


if __name__ == "__main__":
    main()
