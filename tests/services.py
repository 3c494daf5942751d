"""The real service for tests: the ASGI app over a real SQLite file or PostgreSQL database."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from conftest import hashmatch_env, run_hashmatch
from dbs import database
from hashmatch.api.app import create_app
from hashmatch.api.deps import Services, services_of
from hashmatch.config import Settings
from hashmatch.matching.state import MatchState
from hashmatch.store import Role, Store


class Service:
    def __init__(self, client: TestClient, store: Store, settings: Settings, url: str) -> None:
        self.client = client
        self.store = store
        self.settings = settings
        self.url = url

    def key(self, org: str, *roles: Role) -> dict[str, str]:
        _, secret = self.store.keys.create(org, frozenset(roles), actor="test")
        return {"Authorization": f"Bearer {secret}"}

    @property
    def services(self) -> Services:
        return services_of(self.client.app)

    @property
    def matcher(self) -> MatchState:
        follower = self.services.follower
        assert follower is not None
        return follower.state

    def follow(self) -> None:
        assert self.services.follower is not None
        self.services.follower.refresh()

    def post(
        self, path: str, key: dict[str, str], headers: dict[str, str] | None = None, **kwargs: Any
    ) -> Any:
        response = self.client.post(path, headers={**key, **(headers or {})}, **kwargs)
        assert response.status_code < 500, response.text
        return response

    def create_list(self, key: dict[str, str], name: str, **fields: Any) -> None:
        body = {"name": name, "category": "ncii", **fields}
        response = self.client.post("/v1/lists", json=body, headers=key)
        assert response.status_code == 201, response.text

    def add(self, key: dict[str, str], name: str, *entries: tuple[str, str, str | None]) -> Any:
        body = {
            "entries": [
                {"algorithm": algorithm, "hash": value, "reference": reference}
                for algorithm, value, reference in entries
            ]
        }
        response = self.client.post(f"/v1/lists/{name}/entries", json=body, headers=key)
        assert response.status_code == 200, response.text
        return response.json()

    def share_one(self, owner: dict[str, str], partner_admin: dict[str, str], pdq_hex: str) -> None:
        """``ncii-kr``: ``owner``'s list of one PDQ hash (``case-1``), offered to the partner
        whose admin key is given, accepted, and followed."""
        self.create_list(owner, "ncii-kr", shared_with=["ncc"])
        self.add(owner, "ncii-kr", ("pdq", pdq_hex, "case-1"))
        accepted = self.post("/v1/shares/ncii-kr/accept", partner_admin)
        assert accepted.status_code == 200, accepted.text
        self.follow()

    def cli(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        env = hashmatch_env(data_dir=self.settings.data_dir, database_url=self.url)
        return run_hashmatch(*args, env=env)


@contextmanager
def running_service(backend: str, tmp_path: Path, **overrides: Any) -> Iterator[Service]:
    with database(backend, tmp_path) as url:
        defaults: dict[str, Any] = {
            "rate_limit": 1e6,
            "rate_burst": 1_000_000,
            "max_upload_bytes": 2_000_000,
        }
        settings = Settings(
            data_dir=tmp_path / "index", database_url=url, **{**defaults, **overrides}
        )
        store = Store.open(url)
        try:
            with TestClient(create_app(settings, load_in_background=False)) as client:
                yield Service(client, store, settings, url)
        finally:
            store.close()


def flip(value: bytes, bits: int, seed: int = 0) -> bytes:
    """``value`` with ``bits`` distinct bits flipped, chosen by ``seed``."""
    array = np.unpackbits(np.frombuffer(value, dtype=np.uint8))
    positions = np.random.default_rng(seed).choice(array.size, bits, replace=False)
    array[positions] ^= 1
    return np.packbits(array).tobytes()


def flip_bit(value: bytes, position: int) -> bytes:
    data = bytearray(value)
    data[position // 8] ^= 0x80 >> (position % 8)
    return bytes(data)


def distance(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()
