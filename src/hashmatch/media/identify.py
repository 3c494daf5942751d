"""Which format untrusted bytes are, from their magic bytes alone: only allowlisted formats
reach the decoder, and everything else is refused naming what it looks like."""

from __future__ import annotations

from typing import Final

from hashmatch.errors import (
    EmptyMedia,
    UnsupportedMedia,
)

ALLOWED_FORMATS: Final = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")

_ISO_BMFF_BRANDS: Final = {
    b"heic": "HEIC",
    b"heix": "HEIC",
    b"hevc": "HEIC",
    b"hevx": "HEIC",
    b"heim": "HEIC",
    b"heis": "HEIC",
    b"mif1": "HEIF",
    b"msf1": "HEIF",
    b"avif": "AVIF",
    b"avis": "AVIF",
    b"crx ": "Canon CR3 raw",
    b"jxl ": "JPEG XL",
}

# (prefix, offset, name): checked in order; the first match names what the bytes are.
_REJECTED_SIGNATURES: Final[tuple[tuple[bytes, int, str], ...]] = (
    (b"%PDF", 0, "PDF"),
    (b"%!PS", 0, "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", 0, "EPS"),
    (b"8BPS", 0, "Photoshop PSD"),
    (b"\x00\x00\x01\x00", 0, "ICO"),
    (b"\x00\x00\x02\x00", 0, "CUR"),
    (b"PK\x03\x04", 0, "ZIP archive"),
    (b"PK\x05\x06", 0, "ZIP archive"),
    (b"\x1f\x8b", 0, "gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", 0, "7-Zip archive"),
    (b"Rar!", 0, "RAR archive"),
    (b"BZh", 0, "bzip2 archive"),
    (b"\xfd7zXZ\x00", 0, "xz archive"),
    (b"\x7fELF", 0, "ELF executable"),
    (b"MZ", 0, "Windows executable"),
    (b"#!", 0, "script"),
    (b"\xff\x0a", 0, "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", 0, "JPEG XL"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", 0, "JPEG 2000"),
    (b"\xffO\xffQ", 0, "JPEG 2000"),
    (b"\x1aE\xdf\xa3", 0, "Matroska/WebM video"),
    (b"FLV", 0, "Flash video"),
    (b"OggS", 0, "Ogg media"),
    (b"ID3", 0, "MP3 audio"),
    (b"qoif", 0, "QOI"),
    (b"DDS ", 0, "DDS texture"),
    (b"gimp xcf", 0, "GIMP XCF"),
    (b"\x76\x2f\x31\x01", 0, "OpenEXR"),
    (b"#?RADIANCE", 0, "Radiance HDR"),
    (b"SQLite format 3\x00", 0, "SQLite database"),
)


def identify(data: bytes) -> str:
    """The allowlisted Pillow format name of ``data``, from its magic bytes.

    Raises :class:`UnsupportedMedia` naming what the bytes look like otherwise.
    """
    if not data:
        raise EmptyMedia("empty file: 0 bytes")
    head = data[:64]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM" and len(head) >= 26:
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    raise UnsupportedMedia(*_describe_rejected(data))


def _describe_rejected(data: bytes) -> tuple[str, str]:
    detected = _rejected_name(data)
    if detected is None:
        return "unrecognised data: not an image in any supported format", "unknown"
    return f"{detected} is not a supported image format", detected


def _rejected_name(data: bytes) -> str | None:
    head = data[:64]
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return _ISO_BMFF_BRANDS.get(brand, "MP4/QuickTime video")
    if head[:4] == b"RIFF":
        kind = head[8:12]
        return {b"AVI ": "AVI video", b"WAVE": "WAV audio"}.get(kind, "RIFF container")
    for signature, offset, name in _REJECTED_SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            return name
    text = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<?xml", b"<svg", b"<!doctype svg")) and b"<svg" in text:
        return "SVG"
    if text.startswith((b"<!doctype html", b"<html")):
        return "HTML"
    if text.startswith(b"<?xml"):
        return "XML"
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "text"
    return None
