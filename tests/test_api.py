"""The service skeleton, through the real ASGI app and a real uvicorn process."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from hashmatch.api.app import create_app
from hashmatch.api.errors import status_for
from hashmatch.config import Settings
from hashmatch.errors import CorruptMedia, MediaTooLarge, UnsupportedMedia


def test_healthz_and_openapi(tmp_path: Path) -> None:
    client = TestClient(create_app(Settings(data_dir=tmp_path)))
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    spec = client.get("/openapi.json").json()
    assert "/healthz" in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_unknown_route_is_404_json(tmp_path: Path) -> None:
    client = TestClient(create_app(Settings(data_dir=tmp_path)))
    assert client.get("/nope").status_code == 404


def test_error_status_table() -> None:
    assert status_for(MediaTooLarge("x")) == 413
    assert status_for(UnsupportedMedia("x", "PDF")) == 415
    assert status_for(CorruptMedia("x")) == 422


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_runs_a_real_uvicorn(tmp_path: Path) -> None:
    port = _free_port()
    env = {"HASHMATCH_DATA_DIR": str(tmp_path), "HASHMATCH_PORT": str(port), "PATH": ""}
    process = subprocess.Popen(
        [sys.executable, "-m", "hashmatch", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "service did not start within 30 s"
                time.sleep(0.2)
        assert response.status_code == 200 and response.json() == {"status": "ok"}
    finally:
        process.terminate()
        process.wait(timeout=10)
