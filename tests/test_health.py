"""Honest health: with the database out of reach the service says so, goes on matching from
memory, refuses writes with 503 and Retry-After, and logs the outage once; migrations run once
however many processes start together."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from conftest import random_hexes
from dbs import database
from hashmatch.api.app import create_app
from hashmatch.config import Settings
from hashmatch.store import Role, Store
from hashmatch.store.migrate import alembic_config
from tcpproxy import TcpProxy
from test_e2e import free_port


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {seconds} s"
        time.sleep(0.05)


@pytest.fixture
def proxied_postgres(tmp_path: Path) -> Iterator[tuple[str, TcpProxy]]:
    with database("postgresql", tmp_path) as url:
        real = make_url(url)
        proxy = TcpProxy((real.host or "127.0.0.1", real.port or 5432))
        try:
            yield real.set(port=proxy.port).render_as_string(hide_password=False), proxy
        finally:
            proxy.close()


def test_an_unreachable_database_is_reported_and_matching_goes_on(
    proxied_postgres: tuple[str, TcpProxy], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, proxy = proxied_postgres
    settings = Settings(data_dir=tmp_path / "index", database_url=url)
    store = Store.open(url)
    _, secret = store.keys.create("kcsc", frozenset({Role.MATCH, Role.CONTRIBUTE}), actor="t")
    _, unseen = store.keys.create("kcsc", frozenset({Role.MATCH}), actor="t")
    store.lists.create("l", owner="kcsc", category="ncii", actor="t")
    value = random_hexes(1, seed=1)[0]
    store.close()
    key = {"Authorization": f"Bearer {secret}"}
    query = {"hashes": [{"algorithm": "pdq", "value": value}]}
    caplog.set_level(logging.INFO, logger="hashmatch")
    with TestClient(create_app(settings, load_in_background=False)) as client:
        added = client.post(
            "/v1/lists/l/entries",
            json={"entries": [{"algorithm": "pdq", "hash": value}]},
            headers=key,
        )
        assert added.status_code == 200
        wait_for(
            lambda: client.post("/v1/match/hashes", json=query, headers=key).json()["match"],
            5,
            "match",
        )
        assert client.get("/readyz").status_code == 200

        proxy.cut()
        wait_for(lambda: client.get("/readyz").status_code == 503, 10, "not ready")
        ready = client.get("/readyz")
        assert ready.json()["error"]["code"] == "database_unavailable"
        assert "database unavailable" in ready.json()["error"]["message"]
        assert ready.headers["Retry-After"]
        time.sleep(6)  # past the key cache's time to live: the store is asked, and fails
        matched = client.post("/v1/match/hashes", json=query, headers=key)
        assert matched.status_code == 200 and matched.json()["match"] is True  # from memory
        write = client.post("/v1/lists", json={"name": "m", "category": "ncii"}, headers=key)
        assert write.status_code == 503 and write.json()["error"]["code"] == "database_unavailable"
        assert int(write.headers["Retry-After"]) >= 1
        assert client.get("/v1/lists", headers=key).status_code == 503
        stranger = client.get("/v1/lists", headers={"Authorization": f"Bearer {unseen}"})
        assert stranger.status_code == 503  # cannot be checked, so neither 401 nor served
        outage = [r for r in caplog.records if "cannot follow the change log" in r.getMessage()]
        assert len(outage) == 1 and not outage[0].exc_info  # once, without a traceback

        proxy.restore()
        wait_for(lambda: client.get("/readyz").status_code == 200, 15, "ready again")
        assert (
            client.post(
                "/v1/lists", json={"name": "m", "category": "ncii"}, headers=key
            ).status_code
            == 201
        )
    back = [r for r in caplog.records if "following the change log again" in r.getMessage()]
    assert len(back) == 1
    assert value not in caplog.text and "SELECT" not in caplog.text


def run_all(
    commands: list[list[str]], env: dict[str, str]
) -> list[subprocess.CompletedProcess[bytes]]:
    processes = [
        subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for c in commands
    ]
    results = []
    for command, process in zip(commands, processes, strict=True):
        out, err = process.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(command, process.returncode, out, err))
    return results


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_starting_together_migrate_once(backend: str, tmp_path: Path) -> None:
    with database(backend, tmp_path) as url:
        env = {
            **os.environ,
            "HASHMATCH_DATA_DIR": str(tmp_path / "index"),
            "HASHMATCH_DATABASE_URL": url,
        }
        migrate = [sys.executable, "-m", "hashmatch", "migrate"]
        for result in run_all([migrate] * 4, env):
            assert result.returncode == 0, result.stderr
        engine = create_engine(url)
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
        engine.dispose()
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert [v for (v,) in versions] == [head]


def test_serve_with_workers_on_a_fresh_data_directory_starts_every_worker(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "HASHMATCH_DATA_DIR": str(tmp_path / "index")}
    env.pop("HASHMATCH_DATABASE_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "hashmatch", "serve", "--port", str(port), "--workers", "4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )

    def workers() -> list[bytes]:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        commands = [Path(f"/proc/{child}/cmdline").read_bytes() for child in children]
        return [c for c in commands if b"resource_tracker" not in c]  # multiprocessing's own

    try:

        def workers_ready() -> bool:
            if len(workers()) != 4:
                return False
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(workers_ready, 90, "four workers")
        time.sleep(2)  # a worker that lost a migration race would have died by now
        assert len(workers()) == 4 and process.poll() is None
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
    assert "locked" not in output and "Traceback" not in output, output
