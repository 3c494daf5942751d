"""What people do to a known image before reposting it: the robustness benchmark's transforms.

Each transform takes an RGB image and a seeded generator and returns the image that would be
uploaded (the benchmark then encodes it as a JPEG, as an upload would be, except where the
transform is the encoding itself). Sizes are relative to the image, so that the same transform
means the same thing on a 320 px photo and on a 2560 px one.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

Transform = Callable[[Image.Image, np.random.Generator], Image.Image]

#: Quality of the JPEG every transformed image is uploaded as (the jpeg_* transforms excepted).
UPLOAD_QUALITY = 92


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(8, size))


def unchanged(image: Image.Image, _rng: np.random.Generator) -> Image.Image:
    """The picture as it is: the jpeg_* transforms are only their encoding (``ENCODING``)."""
    return image


def resize(scale: float) -> Transform:
    def apply(image: Image.Image, _rng: np.random.Generator) -> Image.Image:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        return image.resize(size, Image.Resampling.LANCZOS)

    return apply


def blur(image: Image.Image, _rng: np.random.Generator) -> Image.Image:
    # A radius of 0.3% of the long side: 3 px on a 1024 px photo, clearly soft.
    return image.filter(ImageFilter.GaussianBlur(0.003 * max(image.size)))


def noise(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float64) + rng.normal(0, 10, (image.height, image.width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def gamma(value: float) -> Transform:
    def apply(image: Image.Image, _rng: np.random.Generator) -> Image.Image:
        table = [round(255 * (i / 255) ** value) for i in range(256)] * 3
        return image.point(table)

    return apply


def vignette(image: Image.Image, _rng: np.random.Generator) -> Image.Image:
    height, width = image.height, image.width
    y, x = np.ogrid[-1 : 1 : height * 1j, -1 : 1 : width * 1j]
    falloff = np.clip(1 - 0.55 * (x**2 + y**2), 0, 1)[:, :, np.newaxis]
    pixels = np.asarray(image, dtype=np.float32) * falloff
    return Image.fromarray(pixels.astype(np.uint8))


def watermark(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Half-transparent text and a round logo, somewhere in the lower half."""
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    size = max(10, image.height // 12)
    x = int(rng.integers(0, max(1, image.width // 2)))
    y = int(rng.integers(image.height // 2, max(image.height // 2 + 1, image.height - size)))
    draw.ellipse((x, y, x + size, y + size), fill=(255, 255, 255, 128))
    draw.text((x + size * 1.3, y), "@reposted_here", font=_font(size), fill=(255, 255, 255, 128))
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def caption_box(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """An opaque label over one corner: 30% of the width, 12% of the height."""
    out = image.copy()
    box_w, box_h = round(image.width * 0.3), round(image.height * 0.12)
    right, bottom = bool(rng.integers(0, 2)), bool(rng.integers(0, 2))
    x0 = image.width - box_w if right else 0
    y0 = image.height - box_h if bottom else 0
    draw = ImageDraw.Draw(out)
    draw.rectangle((x0, y0, x0 + box_w, y0 + box_h), fill=(250, 250, 250))
    draw.text((x0 + 4, y0 + 2), "LEAKED", font=_font(box_h // 2), fill=(200, 0, 0))
    return out


def grayscale(image: Image.Image, _rng: np.random.Generator) -> Image.Image:
    return image.convert("L").convert("RGB")


def transpose(method: Image.Transpose) -> Transform:
    def apply(image: Image.Image, _rng: np.random.Generator) -> Image.Image:
        return image.transpose(method)

    return apply


def rotate(degrees: float) -> Transform:
    """A small turn about the centre, the corners filled black, the size kept."""

    def apply(image: Image.Image, _rng: np.random.Generator) -> Image.Image:
        return image.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=False)

    return apply


def crop(share: float) -> Transform:
    """Keep ``1 - share`` of the width and of the height, at a random offset."""

    def apply(image: Image.Image, rng: np.random.Generator) -> Image.Image:
        cut_w, cut_h = round(image.width * share), round(image.height * share)
        left, top = int(rng.integers(0, cut_w + 1)), int(rng.integers(0, cut_h + 1))
        return image.crop((left, top, left + image.width - cut_w, top + image.height - cut_h))

    return apply


def pad(share: float, colour: tuple[int, int, int]) -> Transform:
    """Add ``share`` of the width and of the height as a frame, split evenly on both sides."""

    def apply(image: Image.Image, _rng: np.random.Generator) -> Image.Image:
        dx, dy = round(image.width * share / 2), round(image.height * share / 2)
        canvas = Image.new("RGB", (image.width + 2 * dx, image.height + 2 * dy), colour)
        canvas.paste(image, (dx, dy))
        return canvas

    return apply


def letterbox(image: Image.Image, _rng: np.random.Generator) -> Image.Image:
    """Into a 16:9 black frame: bars above and below, or beside a tall picture."""
    ratio = 16 / 9
    if image.width / image.height < ratio:
        canvas = Image.new("RGB", (round(image.height * ratio), image.height))
        canvas.paste(image, ((canvas.width - image.width) // 2, 0))
    else:
        canvas = Image.new("RGB", (image.width, round(image.width / ratio)))
        canvas.paste(image, (0, (canvas.height - image.height) // 2))
    return canvas


def screenshot(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A window on a desktop: a light canvas, a dark title bar with text, the picture below it,
    off centre."""
    width, height = image.size
    canvas_w, canvas_h = round(width * 1.4), round(height * 1.5)
    canvas = Image.new("RGB", (canvas_w, canvas_h), (236, 236, 238))
    bar = max(6, round(height * 0.07))
    x0 = int(rng.integers(round(width * 0.05), round(width * 0.35)))
    y0 = int(rng.integers(bar + round(height * 0.05), round(height * 0.45)))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((x0, y0 - bar, x0 + width - 1, y0 - 1), fill=(45, 48, 56))
    draw.text((x0 + bar, y0 - bar), "IMG_2041.jpg", font=_font(bar * 2 // 3), fill=(235, 235, 235))
    canvas.paste(image, (x0, y0))
    return canvas


TRANSFORMS: dict[str, Transform] = {
    "jpeg_q50": unchanged,
    "jpeg_q90": unchanged,
    "resize_0.5": resize(0.5),
    "resize_0.25": resize(0.25),
    "blur": blur,
    "noise": noise,
    "gamma_0.7": gamma(0.7),
    "vignette": vignette,
    "watermark": watermark,
    "caption_box": caption_box,
    "grayscale": grayscale,
    "flip_horizontal": transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "flip_vertical": transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    "rotate_90": transpose(Image.Transpose.ROTATE_90),
    "rotate_180": transpose(Image.Transpose.ROTATE_180),
    "rotate_270": transpose(Image.Transpose.ROTATE_270),
    "rotate_+4deg": rotate(4),
    "rotate_-4deg": rotate(-4),
    "crop_5%": crop(0.05),
    "crop_10%": crop(0.10),
    "pad_20%_black": pad(0.2, (0, 0, 0)),
    "pad_20%_colour": pad(0.2, (214, 40, 120)),
    "letterbox_16:9": letterbox,
    "screenshot": screenshot,
}

#: JPEG quality of the transforms that are an encoding; every other upload is UPLOAD_QUALITY.
ENCODING: dict[str, int] = {"jpeg_q50": 50, "jpeg_q90": 90}

#: Which recall target of the robustness issue each transform answers to (a share of 1).
TARGETS: dict[str, float] = {
    **dict.fromkeys(
        ["jpeg_q50", "jpeg_q90", "resize_0.5", "resize_0.25", "blur", "noise", "gamma_0.7"], 0.995
    ),
    **dict.fromkeys(["vignette", "watermark", "grayscale"], 0.995),
    **dict.fromkeys(
        ["flip_horizontal", "flip_vertical", "rotate_90", "rotate_180", "rotate_270"], 0.99
    ),
    **dict.fromkeys(["pad_20%_black", "pad_20%_colour", "letterbox_16:9", "screenshot"], 0.95),
    "caption_box": 0.90,
    "crop_5%": 0.80,
    "rotate_+4deg": 0.80,
    "rotate_-4deg": 0.80,
}


def upload(image: Image.Image, name: str, rng: np.random.Generator) -> bytes:
    """The bytes a platform would receive after ``name`` was applied: always a JPEG."""
    out = TRANSFORMS[name](image, rng)
    buffer = io.BytesIO()
    out.save(buffer, "JPEG", quality=ENCODING.get(name, UPLOAD_QUALITY))
    return buffer.getvalue()
