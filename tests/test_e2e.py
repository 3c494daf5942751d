"""End to end: real `hashmatch serve` processes on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

from dbs import database


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SERVER_PIDS: list[int] = []


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@contextmanager
def serve(env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "hashmatch", "serve", "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    SERVER_PIDS.append(process.pid)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "service not ready within 60 s"
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


def make_key(env: dict[str, str], org: str) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hashmatch",
            "keys",
            "create",
            "--org",
            org,
            "--role",
            "match",
            "--role",
            "contribute",
        ],
        env={**os.environ, **env},
        capture_output=True,
        timeout=60,
        check=True,
    )
    return str(json.loads(result.stdout)["key"])


def test_one_service_end_to_end(tmp_path: Path) -> None:
    env = {"HASHMATCH_DATA_DIR": str(tmp_path / "index")}
    env.update({k: "" for k in ("HASHMATCH_DATABASE_URL",) if k in os.environ})
    key = make_key(env, "kcsc")
    auth = {"Authorization": f"Bearer {key}"}
    with serve(env) as base:
        assert httpx.get(f"{base}/v1/lists").status_code == 401
        created = httpx.post(
            f"{base}/v1/lists", json={"name": "l", "category": "ncii"}, headers=auth
        )
        assert created.status_code == 201
        value = "ab" * 32
        httpx.post(
            f"{base}/v1/lists/l/entries",
            headers=auth,
            json={"entries": [{"algorithm": "pdq", "hash": value, "reference": "r"}]},
        )
        deadline = time.monotonic() + 2
        query = {"hashes": [{"algorithm": "pdq", "value": value}]}
        while not httpx.post(f"{base}/v1/match/hashes", json=query, headers=auth).json()["match"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "hashmatch_requests_total" in httpx.get(f"{base}/metrics").text
    # a clean shutdown leaves a snapshot for a fast restart
    assert list((tmp_path / "index" / "snapshots").glob("snapshot-*/manifest.json"))


def test_two_services_on_one_postgresql_follow_each_other(tmp_path: Path) -> None:
    with database("postgresql", tmp_path) as url:
        env_a = {"HASHMATCH_DATABASE_URL": url, "HASHMATCH_DATA_DIR": str(tmp_path / "a")}
        env_b = {"HASHMATCH_DATABASE_URL": url, "HASHMATCH_DATA_DIR": str(tmp_path / "b")}
        key = make_key(env_a, "kcsc")
        auth = {"Authorization": f"Bearer {key}"}
        with serve(env_a) as a, serve(env_b) as b:
            httpx.post(f"{a}/v1/lists", json={"name": "l", "category": "ncii"}, headers=auth)
            value = np.random.default_rng(1).integers(0, 256, 32, dtype=np.uint8).tobytes().hex()
            query = {"hashes": [{"algorithm": "pdq", "value": value}]}
            added = httpx.post(
                f"{a}/v1/lists/l/entries",
                headers=auth,
                json={"entries": [{"algorithm": "pdq", "hash": value, "reference": "r"}]},
            )
            assert added.json()["added"] == 1
            committed = time.monotonic()
            while not httpx.post(f"{b}/v1/match/hashes", json=query, headers=auth).json()["match"]:
                assert time.monotonic() - committed < 1.0, "not matched through B within 1 s"
                time.sleep(0.02)
            httpx.post(
                f"{a}/v1/lists/l/withdrawals",
                headers=auth,
                json={"reason": "victim", "references": ["r"]},
            )
            committed = time.monotonic()
            while httpx.post(f"{b}/v1/match/hashes", json=query, headers=auth).json()["match"]:
                assert time.monotonic() - committed < 1.0, "still matched through B after 1 s"
                time.sleep(0.02)


def test_workers_serve_and_stop_together(tmp_path: Path) -> None:
    env = {"HASHMATCH_DATA_DIR": str(tmp_path / "index"), "HASHMATCH_WORKERS": "2"}
    key = make_key(env, "kcsc")
    auth = {"Authorization": f"Bearer {key}"}
    with serve(env) as base:
        httpx.post(f"{base}/v1/lists", json={"name": "l", "category": "ncii"}, headers=auth)
        value = "cd" * 32
        httpx.post(
            f"{base}/v1/lists/l/entries",
            headers=auth,
            json={"entries": [{"algorithm": "pdq", "hash": value}]},
        )
        query = {"hashes": [{"algorithm": "pdq", "value": value}]}
        workers = [p for p in children_of(SERVER_PIDS[-1]) if "spawn" in _cmdline(p)]
        assert len(workers) == 2
        deadline = time.monotonic() + 3
        # fresh connections land on either worker: every one must see the entry within 1 s
        seen = 0
        while seen < 20:
            assert time.monotonic() < deadline, "a worker did not follow the change"
            matched = httpx.post(f"{base}/v1/match/hashes", json=query, headers=auth).json()[
                "match"
            ]
            seen = seen + 1 if matched else 0
    assert not [p for p in workers if Path(f"/proc/{p}").exists()], "workers outlived the service"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_videos_end_to_end_and_across_a_restart(tmp_path: Path) -> None:
    """A real service hashes a video, lists it, matches a clip of it and a still from it, and
    after a restart (from its snapshot) still does."""
    from videos import encode_video, panning_frames

    env = {"HASHMATCH_DATA_DIR": str(tmp_path / "index")}
    env.update({k: "" for k in ("HASHMATCH_DATABASE_URL",) if k in os.environ})
    key = make_key(env, "kcsc")
    auth = {"Authorization": f"Bearer {key}"}
    frames = list(panning_frames(16, 10, seed=4))
    original = encode_video(iter(frames), 10)
    clip = encode_video(iter(frames[60:130]), 10)
    mp4 = {**auth, "Content-Type": "video/mp4"}
    with serve(env) as base:
        httpx.post(f"{base}/v1/lists", json={"name": "v", "category": "ncii"}, headers=auth)
        hashed = httpx.post(f"{base}/v1/hash", content=original, headers=mp4, timeout=30)
        assert hashed.status_code == 200, hashed.text
        entry = {"algorithm": "vpdq", "frames": hashed.json()["video"]["frames"], "reference": "r"}
        added = httpx.post(f"{base}/v1/lists/v/entries", json={"entries": [entry]}, headers=auth)
        assert added.json()["added"] == 1
        deadline = time.monotonic() + 5
        while not httpx.post(f"{base}/v1/match", content=clip, headers=mp4, timeout=30).json()[
            "match"
        ]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    with serve(env) as base:
        result = httpx.post(f"{base}/v1/match", content=clip, headers=mp4, timeout=30).json()
        assert result["match"] is True and result["matches"][0]["reference"] == "r"
        ranges = result["matches"][0]["video"]["listed_ranges"]
        assert ranges and 5 <= ranges[0][0] <= 7
