from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dbs import BACKENDS, database
from hashmatch.store import Store

#: The browser fixtures (chromium, pages, console_server), shared by every test module.
pytest_plugins = ["browser"]

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def conformance() -> Path:
    """Meta's PDQ conformance images and reference hashes, copied into the repository."""
    path = DATA / "pdq-conformance"
    assert (path / "expected.csv").is_file(), f"PDQ conformance data missing at {path}"
    return path


def natural_image(width: int = 800, height: int = 600, seed: int = 0) -> Image.Image:
    """A deterministic photo-like RGB image: smooth gradients, shapes and mild noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    red = 128 + 90 * np.sin(x / (37 + seed) + y / 91)
    green = 128 + 80 * np.cos(y / (53 + seed)) * np.sin(x / 140)
    blue = 255 * (x + y) / (width + height)
    pixels = np.stack([red, green, blue], axis=-1)
    for _ in range(12):
        cx, cy = rng.integers(0, width), rng.integers(0, height)
        radius = rng.integers(min(width, height) // 20, min(width, height) // 5)
        mask = (x - cx) ** 2 + (y - cy) ** 2 < radius**2
        pixels[mask] = rng.integers(0, 256, size=3)
    pixels += rng.normal(0, 4, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def random_hexes(count: int, seed: int = 0, nbytes: int = 32) -> list[str]:
    """Hex of ``count`` uniformly random codes of ``nbytes`` bytes, reproducible by seed."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, nbytes, dtype=np.uint8).tobytes().hex() for _ in range(count)]


def encode(image: Image.Image, image_format: str = "JPEG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **params)
    return buffer.getvalue()


def hashmatch_env(**settings: str | Path) -> dict[str, str]:
    """This environment without its ``HASHMATCH_*`` settings, plus ``settings`` (``data_dir=``
    becomes ``HASHMATCH_DATA_DIR``): a child sees only the settings its test gives it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HASHMATCH_")}
    env.update({f"HASHMATCH_{name.upper()}": str(value) for name, value in settings.items()})
    return env


def run_hashmatch(
    *args: str | Path,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[bytes]:
    """``python -m hashmatch ARGS`` in a real process; ``env`` replaces the environment."""
    return subprocess.run(
        [sys.executable, "-m", "hashmatch", *map(str, args)],
        input=stdin,
        capture_output=True,
        env=None if env is None else dict(env),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(params=BACKENDS)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """The exchange tests' two instances: an origin (SQLite) and a subscriber of the
    parametrised backend, which has the origin as its peer ``ncc``."""
    with database(request.param, tmp_path / "subscriber") as url:
        (tmp_path / "subscriber").mkdir(exist_ok=True)
        origin = Store.open(f"sqlite:///{tmp_path / 'origin.db'}", instance="ncc")
        subscriber = Store.open(url, instance="kcsc")
        subscriber.peers.add(
            "ncc", url="http://127.0.0.1:1", secret="hm_x", organisation="kcsc", actor="t"
        )
        yield origin, subscriber
        origin.close()
        subscriber.close()
