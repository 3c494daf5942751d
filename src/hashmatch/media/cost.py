"""What decoding an image will cost in memory, estimated from its header before any pixel is
decoded: Pillow's raster in its real per-pixel storage, the full-size copies the decoder's
steps make, and the format decoders' own full-size buffers."""

from __future__ import annotations

from typing import Final

from PIL import Image, ImageFile, JpegImagePlugin, TiffImagePlugin

from hashmatch.media.limits import HASH_SIDE

#: Bytes a pixel of each mode takes in Pillow's memory, not in the file: Pillow pads every
#: multi-band mode to four bytes. Modes not listed count four.
_PIXEL_BYTES: Final = {
    "1": 1,
    "L": 1,
    "P": 1,
    "I;16": 2,
    "I;16B": 2,
    "I;16L": 2,
    "I;16N": 2,
    "I": 4,
    "F": 4,
    "LA": 4,
    "PA": 4,
    "RGB": 4,
    "RGBA": 4,
    "RGBX": 4,
    "CMYK": 4,
    "YCbCr": 4,
    "LAB": 4,
    "HSV": 4,
}

#: Pillow resamples these modes premultiplied, from a full-size premultiplied copy.
_PREMULTIPLIED: Final = ("LA", "RGBA")

#: libwebp's animation decoder, Pillow's only WebP decoder, keeps two full canvases of 4 bytes a
#: pixel and hands the frame over as a third copy; with Pillow's raster a WebP costs 16 bytes a
#: pixel (measured: 192 MB for a 4000x3000 photo).
_WEBP_DECODER_PIXEL_BYTES: Final = 12

#: A few rows of raw samples that the row-by-row decoders buffer (two rows of the widest raw
#: pixel, 16-bit RGBA): nothing for a photo, but a 30-million-pixel-wide PNG is a bomb too.
_ROW_BUFFER_PIXEL_BYTES: Final = 16


def _pixel_bytes(mode: str) -> int:
    return _PIXEL_BYTES.get(mode, 4)


def decode_cost(
    image: Image.Image,
    expanded: str,
    image_format: str,
    data: bytes,
    header_size: tuple[int, int],
) -> int:
    """Peak bytes decoding ``image`` to the hash side will allocate, from its header alone.

    ``image`` is opened (and a JPEG drafted) but not loaded: its size and mode are those Pillow
    will decode at; ``expanded`` is the mode it will be shrunk in. Deliberately a little
    pessimistic: decoder buffers are counted as if they outlived the decode, and the working
    copies of the shrink as if they came at its peak.
    """
    width, height = image.size
    return (
        _conversion_pixel_bytes(image.mode, expanded) * width * height
        + _shrink_bytes(expanded, image.size)
        + _ROW_BUFFER_PIXEL_BYTES * width
        + _decoder_bytes(image, image_format, data, header_size)
    )


def _conversion_pixel_bytes(mode: str, expanded: str) -> int:
    """Bytes a pixel at the fullest moment of the raster's life and its full-size copies.

    Mirrors :func:`_expand_mode` and :func:`_shrink`: the expanded copy lives beside the raster
    while it is made; a premultiplied copy lives beside the expanded image while it is resampled.
    High-bit-depth and float images are shrunk in place or in bands, with no full-size copy.
    """
    raster = _pixel_bytes(mode)
    peak = raster if expanded == mode else raster + _pixel_bytes(expanded)
    if expanded in _PREMULTIPLIED:
        peak = max(peak, 2 * _pixel_bytes(expanded))
    return peak


def _shrink_bytes(mode: str, size: tuple[int, int]) -> int:
    """Pillow's working copies while ``thumbnail`` shrinks an image of ``size`` in ``mode``.

    The ``reduce`` copy (2 to 4 times the hash side; I;16 has none) and the output of the first
    resampling pass, at the thumbnail's width and the reduced height: at most a few megabytes
    beside the raster, unless the raster is very wide.
    """
    width, height = size
    scale = HASH_SIDE / max(width, height)
    if scale >= 1:
        return 0
    out_width, out_height = max(1, round(width * scale)), max(1, round(height * scale))
    reduce_x = max(1, int(width / out_width / 2)) if mode != "I;16" else 1
    reduce_y = max(1, int(height / out_height / 2)) if mode != "I;16" else 1
    reduced_height = _ceil_div(height, reduce_y)
    reduced = _ceil_div(width, reduce_x) * reduced_height if reduce_x * reduce_y > 1 else 0
    return _pixel_bytes(mode) * (reduced + out_width * reduced_height)


def _decoder_bytes(
    image: Image.Image, image_format: str, data: bytes, header_size: tuple[int, int]
) -> int:
    """Full-size buffers a format's decoder allocates besides the raster it fills."""
    width, height = image.size
    if image_format == "WEBP":
        return _WEBP_DECODER_PIXEL_BYTES * width * height + len(data)
    if image_format == "JPEG" and isinstance(image, JpegImagePlugin.JpegImageFile):
        return _jpeg_coefficient_bytes(image, data, header_size)
    if image_format == "TIFF" and isinstance(image, TiffImagePlugin.TiffImageFile):
        return _tiff_block_bytes(image, data)
    if isinstance(image, ImageFile.ImageFile) and _codec(image) == "bmp_rle":
        # Pillow's RLE decoder builds the image in a bytearray, then copies it into bytes.
        return 2 * width * height
    return 0


def _codec(image: ImageFile.ImageFile) -> str | None:
    """The Pillow decoder that will read the pixels."""
    return image.tile[0].codec_name if image.tile else None


def _jpeg_coefficient_bytes(
    image: JpegImagePlugin.JpegImageFile, data: bytes, header_size: tuple[int, int]
) -> int:
    """libjpeg's buffer for every DCT coefficient of the full image, when it needs one.

    A progressive JPEG, or one whose first scan leaves out a component, is read in several
    scans, so libjpeg keeps 64 two-byte coefficients for each 8x8 block of each component at full
    resolution, however small the DCT scale it decodes at: 3 bytes a pixel for a 4:2:0 photo.
    """
    single_scan = _first_scan_components(data) >= len(image.layer)
    if single_scan and not image.info.get("progressive"):
        return 0
    width, height = header_size
    # Sampling factors of 0 are invalid (libjpeg refuses the file); 1 keeps the sums defined.
    sampling = [(max(h, 1), max(v, 1)) for _, h, v, _ in image.layer]
    max_h = max((h for h, _ in sampling), default=1)
    max_v = max((v for _, v in sampling), default=1)
    blocks = 0
    for h, v in sampling:
        # Blocks of the component, padded to whole MCUs as libjpeg allocates them.
        blocks_wide = _round_up(_ceil_div(width * h, max_h * 8), h)
        blocks_high = _round_up(_ceil_div(height * v, max_v * 8), v)
        blocks += blocks_wide * blocks_high
    return 64 * 2 * blocks


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _round_up(value: int, multiple: int) -> int:
    return _ceil_div(value, multiple) * multiple


_JPEG_STANDALONE_MARKERS: Final = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})


def _first_scan_components(data: bytes) -> int:
    """Components in a JPEG's first scan (its first SOS segment); 0 when there is none.

    Walks the marker segments as Pillow does when it opens the file: junk between segments and
    fill bytes are skipped.
    """
    pos = 2
    while pos + 4 < len(data):
        if data[pos] != 0xFF or data[pos + 1] == 0xFF:
            pos += 1
            continue
        marker = data[pos + 1]
        if marker == 0x00 or marker in _JPEG_STANDALONE_MARKERS:
            pos += 2
            continue
        if marker == 0xDA:
            return data[pos + 4]
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return 0


_TIFF_YCBCR: Final = 6  # PhotometricInterpretation
_TIFF_JPEG_COMPRESSIONS: Final = (6, 7)  # old-style and new-style JPEG


def _tiff_block_bytes(image: TiffImagePlugin.TiffImageFile, data: bytes) -> int:
    """libtiff's buffer for one strip or tile, which it decodes whole before Pillow unpacks it.

    A writer chooses the strip or tile size: one strip the height of the image doubles the cost
    of decoding it. Pillow decodes JPEG-compressed and YCbCr TIFFs through libtiff's RGBA
    interface, at 4 bytes a pixel. The largest compressed strip or tile is read whole too.
    """
    if _codec(image) != "libtiff":
        return 0  # uncompressed: Pillow reads it row by row
    tags = image.tag_v2
    width, height = image.size
    bits = _tiff_ints(tags, TiffImagePlugin.BITSPERSAMPLE) or [1]
    samples = max([*_tiff_ints(tags, TiffImagePlugin.SAMPLESPERPIXEL), len(bits)])
    pixel_bits = max(bits) * samples
    jpeg = any(c in _TIFF_JPEG_COMPRESSIONS for c in _tiff_ints(tags, TiffImagePlugin.COMPRESSION))
    if jpeg or _TIFF_YCBCR in _tiff_ints(tags, TiffImagePlugin.PHOTOMETRIC_INTERPRETATION):
        pixel_bits = max(pixel_bits, 32)
    tile_width = _tiff_ints(tags, TiffImagePlugin.TILEWIDTH)[:1]
    tile_length = _tiff_ints(tags, TiffImagePlugin.TILELENGTH)[:1]
    if tile_width and tile_length:
        block = tile_width[0] * tile_length[0]
    else:
        block = min([*_tiff_ints(tags, TiffImagePlugin.ROWSPERSTRIP), height]) * width
    compressed = max(
        _tiff_ints(tags, TiffImagePlugin.STRIPBYTECOUNTS)
        + _tiff_ints(tags, TiffImagePlugin.TILEBYTECOUNTS),
        default=len(data),
    )
    return _ceil_div(block * pixel_bits, 8) + min(compressed, len(data))


def _tiff_ints(tags: TiffImagePlugin.ImageFileDirectory_v2, tag: int) -> list[int]:
    """A tag's integer values, none when it is absent or not integers (a hostile file's)."""
    value = tags.get(tag)
    values = value if isinstance(value, tuple) else (value,)
    return [v for v in values if isinstance(v, int) and v >= 0]
