"""Small real videos for tests, encoded in memory with PyAV (FFmpeg's encoders in its wheel):
a camera panning across a photo-like picture, so that frames are natural-looking, distinct
second to second, and of good PDQ quality."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from fractions import Fraction

import av
import numpy as np
from PIL import Image

from conftest import natural_image

Frame = np.ndarray  # (h, w, 3) uint8
Edit = Callable[[Frame], Frame]


def panning_frames(
    seconds: float, fps: float, size: tuple[int, int] = (320, 240), seed: int = 0
) -> Iterator[Frame]:
    """A window of ``size`` sliding across a larger natural picture, cutting to another
    picture every 2 seconds (as edited footage does), so that seconds apart look apart."""
    width, height = size
    count = round(seconds * fps)
    per_scene = max(1, round(2 * fps))
    scene: np.ndarray = np.zeros((0, 0, 3), np.uint8)
    for i in range(count):
        if i % per_scene == 0:
            scene = _busy_scene(width * 2, height * 2, seed * 1000 + i)
        t = (i % per_scene) / per_scene
        x = int((scene.shape[1] - width) * t)
        y = int((scene.shape[0] - height) * t / 2)
        yield scene[y : y + height, x : x + width]


def _busy_scene(width: int, height: int, seed: int) -> Frame:
    """A natural-looking picture with the detail of real footage (many edges at many scales):
    smooth pictures give PDQ hashes of low quality, which vPDQ leaves out."""
    pixels = np.array(natural_image(width, height, seed=seed))
    rng = np.random.default_rng(seed)
    for _ in range(120):
        w, h = (int(v) for v in rng.integers(8, 90, 2))
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        pixels[y : y + h, x : x + w] = rng.integers(0, 256, 3, dtype=np.uint8)
    return pixels


def encode_video(
    frames: Iterator[Frame],
    fps: float = 10,
    *,
    container: str = "mp4",
    codec: str = "libx264",
    bit_rate: int | None = None,
    edit: Edit | None = None,
) -> bytes:
    """``frames`` as a video file's bytes (H.264 in MP4 unless told otherwise)."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as output:
        rate = Fraction(fps).limit_denominator(1001)
        stream = output.add_stream(codec, rate=rate)
        assert isinstance(stream, av.VideoStream)
        stream.pix_fmt = "yuv420p"
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        first = True
        for pixels in frames:
            if edit is not None:
                pixels = edit(pixels)
            if first:
                stream.width, stream.height = pixels.shape[1], pixels.shape[0]
                first = False
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return buffer.getvalue()


def panning_video(seconds: float = 12, fps: float = 10, seed: int = 0, **options: object) -> bytes:
    size = options.pop("size", (320, 240))
    assert isinstance(size, tuple)
    return encode_video(panning_frames(seconds, fps, size, seed), fps, **options)  # type: ignore[arg-type]


def downscaled(factor: float) -> Edit:
    def edit(pixels: Frame) -> Frame:
        image = Image.fromarray(pixels)
        width = int(image.width * factor) // 2 * 2
        height = int(image.height * factor) // 2 * 2
        return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))

    return edit


def still(seconds: float, fps: float, picture: Image.Image) -> Iterator[Frame]:
    """A picture shown for ``seconds``, with a little sensor noise frame to frame."""
    pixels = np.asarray(picture.convert("RGB"), dtype=np.int16)
    rng = np.random.default_rng(0)
    for _ in range(round(seconds * fps)):
        noisy = pixels + rng.integers(-3, 4, pixels.shape, dtype=np.int16)
        yield np.clip(noisy, 0, 255).astype(np.uint8)
