"""Query-side reframing: frames are found and cut, and framed or flipped copies of a real photo
match their original through the service's matching path."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from conftest import encode, natural_image
from hashmatch.api.app import create_app
from hashmatch.api.deps import services_of
from hashmatch.config import Settings
from hashmatch.media import decode
from hashmatch.media.reframe import content_boxes, trimmed_pictures
from hashmatch.signals import PDQ, TRIMMED, hash_bytes, query_hashes
from hashmatch.store import Role, Store, database_url


@pytest.fixture(scope="module")
def photo(conformance: Path) -> Image.Image:
    """A real photograph (Meta's bridge), at a size a repost would have."""
    with Image.open(conformance / "dih" / "bridge-1-original.jpg") as image:
        return image.convert("RGB").resize((800, 502), Image.Resampling.LANCZOS)


# The frames here differ on purpose from the benchmark's (benchmarks/transforms.py: padding
# per side rather than split, another window layout and font), so that these tests do not
# only confirm what the benchmark was tuned on.


def pad(image: Image.Image, share: float, colour: tuple[int, int, int]) -> Image.Image:
    width, height = image.size
    dx, dy = round(width * share), round(height * share)
    canvas = Image.new("RGB", (width + 2 * dx, height + 2 * dy), colour)
    canvas.paste(image, (dx, dy))
    return canvas


def letterbox(image: Image.Image, ratio: float = 16 / 9) -> Image.Image:
    """Into a 16:9 black frame (pillarbox for pictures narrower than that)."""
    width, height = image.size
    if width / height < ratio:
        canvas = Image.new("RGB", (round(height * ratio), height))
        canvas.paste(image, ((canvas.width - width) // 2, 0))
    else:
        canvas = Image.new("RGB", (width, round(width / ratio)))
        canvas.paste(image, (0, (canvas.height - height) // 2))
    return canvas


def screenshot(image: Image.Image) -> Image.Image:
    """A window on a desktop: a grey canvas, a dark title bar with text, the picture below."""
    width, height = image.size
    canvas = Image.new("RGB", (round(width * 1.4), round(height * 1.5)), (236, 236, 236))
    bar = round(height * 0.08)
    x0, y0 = round(width * 0.2), round(height * 0.25)
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((x0, y0 - bar, x0 + width, y0), fill=(40, 44, 52))
    draw.text((x0 + 8, y0 - bar + 4), "photo.jpg", fill=(230, 230, 230))
    canvas.paste(image, (x0, y0))
    return canvas


def jpeg(image: Image.Image) -> bytes:
    return encode(image, "JPEG", quality=85)


FRAMES: dict[str, Callable[[Image.Image], Image.Image]] = {
    "pad_black_20": lambda im: pad(im, 0.2, (0, 0, 0)),
    "pad_colour_20": lambda im: pad(im, 0.2, (200, 30, 120)),
    "letterbox_16_9": letterbox,
    "screenshot": screenshot,
}


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_the_frame_is_found_and_cut(photo: Image.Image, name: str) -> None:
    framed = decode(jpeg(FRAMES[name](photo))).image
    boxes = content_boxes(framed)
    # The picture's size in the decoded (thumbnailed) pixels: one candidate is that box.
    scale = framed.width / FRAMES[name](photo).width
    size = (photo.width * scale, photo.height * scale)
    assert any(
        abs((right - left) - size[0]) <= 3 and abs((bottom - top) - size[1]) <= 3
        for left, top, right, bottom in boxes
    ), (name, boxes, size)
    if name != "screenshot":  # one frame colour: the first candidate is the right one
        left, top, right, bottom = boxes[0]
        assert abs((right - left) - size[0]) <= 3 and abs((bottom - top) - size[1]) <= 3


def test_unframed_and_flat_images_are_left_alone(photo: Image.Image) -> None:
    assert content_boxes(decode(jpeg(photo)).image) == []
    assert content_boxes(natural_image(400, 300, seed=5)) == []
    assert trimmed_pictures(Image.new("RGB", (300, 200), (90, 90, 90))) == []
    # A thin border is not worth another query: PDQ tolerates it.
    assert content_boxes(decode(jpeg(pad(photo, 0.01, (0, 0, 0)))).image) == []


def test_a_black_frame_does_not_eat_into_a_flat_sky() -> None:
    """Only lines of the frame's colour are peeled: the sky at the top of the picture stays."""
    pixels = np.asarray(natural_image(400, 300, seed=3)).copy()
    pixels[:60] = (150, 190, 235)  # a clear sky over the top fifth
    framed = Image.new("RGB", (480, 360))
    framed.paste(Image.fromarray(pixels), (40, 30))
    boxes = content_boxes(decode(jpeg(framed)).image)
    left, top, right, bottom = boxes[0]
    assert abs(left - 40) <= 2 and abs(top - 30) <= 2, boxes
    assert abs(right - 440) <= 2 and abs(bottom - 330) <= 2, boxes


def test_a_picture_with_flat_stripes_inside_is_not_cut_through_them() -> None:
    pixels = np.asarray(natural_image(400, 300, seed=2)).copy()
    pixels[140:160, :] = 0  # a flat band across the middle is not a frame
    assert content_boxes(Image.fromarray(pixels)) == []


def test_framed_copies_are_far_from_the_original_without_trimming(photo: Image.Image) -> None:
    """Why the variant exists: plain PDQ of every framed copy misses at the default 31."""
    (original,) = hash_bytes(jpeg(photo), [PDQ])
    for name, frame in FRAMES.items():
        _, queries = query_hashes(jpeg(frame(photo)))
        pdq = [q for q in queries if q.hash.algorithm is PDQ]
        plain = min(q.hash.distance(original) for q in pdq)
        trimmed = [q.hash.distance(original) for q in pdq if q.variant == TRIMMED]
        assert trimmed and min(trimmed) <= 16, (name, trimmed)
        untrimmed = min(q.hash.distance(original) for q in pdq if q.variant != TRIMMED)
        assert untrimmed > 31, (name, untrimmed, plain)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    settings = Settings(data_dir=tmp_path / "index")
    store = Store.open(database_url(settings.data_dir, None))
    _, secret = store.keys.create("kcsc", frozenset({Role.CONTRIBUTE, Role.MATCH}), actor="t")
    with TestClient(create_app(settings, load_in_background=False)) as test_client:
        yield test_client, {"Authorization": f"Bearer {secret}"}
    store.close()


#: Each transform of the listed photo, and the variant that finds it: the turn or flip that
#: brings the upload back to the listed image (a quarter turn left is undone by three more).
TRANSFORMS: dict[str, tuple[Callable[[Image.Image], Image.Image], str]] = {
    "flip_horizontal": (
        lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "flip_horizontal",
    ),
    "rotate_90": (lambda im: im.transpose(Image.Transpose.ROTATE_90), "rotate270"),
    "flip_vertical": (lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM), "flip_vertical"),
    **{name: (frame, "trimmed") for name, frame in FRAMES.items()},
    "mirrored_and_letterboxed": (
        lambda im: letterbox(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
        "trimmed+flip_horizontal",
    ),
}


def test_transformed_copies_match_through_the_service(
    photo: Image.Image, client: tuple[TestClient, dict[str, str]]
) -> None:
    http, key = client
    http.post("/v1/lists", json={"name": "l", "category": "ncii"}, headers=key)
    (value,) = hash_bytes(jpeg(photo), [PDQ])
    http.post(
        "/v1/lists/l/entries",
        json={"entries": [{"algorithm": "pdq", "hash": value.hex, "reference": "case-1"}]},
        headers=key,
    )
    follower = services_of(http.app).follower
    assert follower is not None
    follower.refresh()
    for name, (transform, variant) in TRANSFORMS.items():
        response = http.post(
            "/v1/match",
            content=jpeg(transform(photo)),
            headers={**key, "Content-Type": "image/jpeg"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["match"] is True, name
        (match,) = body["matches"]  # one entry, reported once whatever variants found it
        assert match["reference"] == "case-1" and match["variant"] == variant, (name, match)
    unrelated = jpeg(natural_image(800, 502, seed=9))
    response = http.post(
        "/v1/match", content=unrelated, headers={**key, "Content-Type": "image/jpeg"}
    )
    assert response.json()["match"] is False
