"""Imports never half-land: kill -9 mid-import, and malformed files, on both databases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import hashmatch_env, run_hashmatch
from dbs import BACKENDS, database
from hashmatch.hashsets.read import DEFAULT_MAX_LINE_BYTES
from hashmatch.matching.follower import Follower
from hashmatch.signals import PDQ
from hashmatch.store import Store


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as database_url:
        yield database_url


def cli_env(url: str, tmp_path: Path) -> dict[str, str]:
    return hashmatch_env(database_url=url, data_dir=tmp_path / "index")


def import_file(url: str, tmp_path: Path, path: Path, timeout: float = 120) -> dict[str, Any]:
    """``hashmatch lists import l PATH`` in a real process; its JSON report."""
    result = run_hashmatch(
        "lists", "import", "l", path, env=cli_env(url, tmp_path), timeout=timeout
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def write_csv(path: Path, count: int, seed: int = 0) -> None:
    codes = np.random.default_rng(seed).integers(0, 256, size=(count, 32), dtype=np.uint8)
    with path.open("w") as f:
        f.write("algorithm,hash,reference\n")
        f.writelines(f"pdq,{code.tobytes().hex()},r{i}\n" for i, code in enumerate(codes))


def test_kill_9_mid_import_leaves_all_or_nothing(url: str, tmp_path: Path) -> None:
    store = Store.open(url)
    store.lists.create("l", owner="o", category="csam", actor="t")
    big = tmp_path / "big.csv"
    write_csv(big, 300_000)
    process = subprocess.Popen(
        [sys.executable, "-m", "hashmatch", "lists", "import", "l", str(big)],
        env=cli_env(url, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(2.0)
    still_running = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert still_running, "the import finished before it could be killed; make it bigger"

    reopened = Store.open(url)
    live = sum(1 for _ in reopened.entries.listed("l"))
    assert live in (0, 300_000)
    matcher = Follower(reopened)
    matcher.load()
    assert matcher.state.size(PDQ) == live
    # nothing is left locked: the next import goes through
    small = tmp_path / "small.csv"
    write_csv(small, 10, seed=1)
    assert import_file(url, tmp_path, small)["added"] == 10
    store.close()
    reopened.close()


MALFORMED = {
    "wrong_hex_length": b"pdq " + b"ab" * 31 + b"\npdq " + b"ab" * 33 + b"\n",
    "unknown_algorithm": b"photodna " + b"ab" * 32 + b"\ncrc32 1234abcd\n",
    "binary_garbage": bytes(np.random.default_rng(5).integers(0, 256, 200_000, dtype=np.uint8)),
    "mixed_formats": b'algorithm,hash\n{"algorithm": "pdq", "hash": "'
    + b"ab" * 32
    + b'"}\npdq zz\n',
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_files_are_reported_and_change_nothing(
    url: str, tmp_path: Path, name: str
) -> None:
    store = Store.open(url)
    store.lists.create("l", owner="o", category="csam", actor="t")
    before = store.changes.latest()
    path = tmp_path / f"{name}.txt"
    path.write_bytes(MALFORMED[name])
    report = import_file(url, tmp_path, path)
    assert report["added"] == 0 and report["rejected"] >= 1
    assert all(e["line"] >= 1 and e["reason"] for e in report["errors"])
    assert list(store.entries.listed("l", include_withdrawn=True)) == []
    # the empty import is still a logged, audited operation; the list itself is unchanged
    assert store.lists.get("l").enabled and store.changes.latest() == before + 1
    store.close()


def test_a_two_gigabyte_line_is_one_bad_row(tmp_path: Path) -> None:
    with database("sqlite", tmp_path) as url:
        store = Store.open(url)
        store.lists.create("l", owner="o", category="csam", actor="t")
        path = tmp_path / "huge-line.txt"
        with path.open("wb") as f:
            f.truncate(2 * 1024**3)  # sparse: 2 GB of NUL bytes without a newline
            f.seek(0, os.SEEK_END)
            f.write(b"\npdq " + b"ab" * 32 + b"\n")
        report = import_file(url, tmp_path, path, timeout=300)
        assert (report["added"], report["rejected"]) == (1, 1)
        too_long = f"line longer than {DEFAULT_MAX_LINE_BYTES} bytes"
        assert report["errors"] == [{"line": 1, "reason": too_long}]
        store.close()
