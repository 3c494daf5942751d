"""Which video container untrusted bytes are, from their magic bytes alone.

Only allowlisted containers reach FFmpeg, and each is opened with the one demuxer its magic
bytes name (:data:`DEMUXERS`): FFmpeg never probes, so a polyglot cannot be read as another
format than its first bytes say, and the demuxers that open other files or the network (HLS,
DASH, concat, SDP, image sequences) are never used. A file has one identity, its leading magic:
a JPEG followed by an MP4 starts with ``FF D8`` and is an image (the MP4 part is never parsed),
and an image renamed ``.mp4`` is an image too, since names are never looked at.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from hashmatch.errors import CorruptMedia, EmptyMedia, UnsupportedMedia
from hashmatch.media.identify import _ISO_BMFF_BRANDS

#: Video containers, by the names :func:`identify_video` gives them.
VIDEO_CONTAINERS: Final[tuple[str, ...]] = (
    "MP4",
    "WEBM",
    "MATROSKA",
    "AVI",
    "MPEG-PS",
    "MPEG-TS",
    "OGG",
)

#: Animated images, read as videos only when the caller asks (``animated_images=True``).
ANIMATED_IMAGE_CONTAINERS: Final[tuple[str, ...]] = ("GIF", "WEBP")

#: The FFmpeg demuxer each container is opened with. Animated WebP is absent: FFmpeg's WebP
#: decoder has no animation, so :mod:`hashmatch.media.video` reads it with Pillow.
DEMUXERS: Final[Mapping[str, str]] = {
    "MP4": "mov",
    "WEBM": "matroska",
    "MATROSKA": "matroska",
    "AVI": "avi",
    "MPEG-PS": "mpeg",
    "MPEG-TS": "mpegts",
    "OGG": "ogg",
    "GIF": "gif",
}

_TS_PACKET: Final = 188
_M2TS_PACKET: Final = 192
_QUICKTIME_ATOMS: Final = (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
_AUDIO_BRANDS: Final = {
    b"M4A ": "MPEG-4 audio (M4A)",
    b"M4B ": "MPEG-4 audiobook (M4B)",
    b"M4P ": "MPEG-4 protected audio (M4P)",
    b"F4A ": "Flash MPEG-4 audio (F4A)",
    b"F4B ": "Flash MPEG-4 audiobook (F4B)",
}

# (prefix, name): video-like or audio things refused with a name, checked in order.
_REFUSED_SIGNATURES: Final[tuple[tuple[bytes, str], ...]] = (
    (b"FLV\x01", "Flash video (FLV)"),
    (b"0&\xb2u\x8ef\xcf\x11\xa6\xd9\x00\xaa\x00b\xcel", "ASF/WMV video"),
    (b".RMF", "RealMedia video"),
    (b"\x00\x00\x01\xb3", "raw MPEG-1/2 video stream (no container)"),
    (b"\x00\x00\x00\x01\x67", "raw H.264 video stream (no container)"),
    (b"\x00\x00\x00\x01\x40\x01", "raw H.265 video stream (no container)"),
    (b"DKIF", "raw VP8/VP9 stream (IVF)"),
    (b"ID3", "MP3 audio"),
    (b"fLaC", "FLAC audio"),
    (b"#!AMR", "AMR audio"),
    (b"MAC ", "Monkey's Audio"),
    (b"wvpk", "WavPack audio"),
)

# (prefix of the lowercased text, name): playlists and manifests name other files to fetch.
_REFUSED_TEXT: Final[tuple[tuple[bytes, str], ...]] = (
    (b"#extm3u", "HLS playlist (#EXTM3U): a list of links, not a video"),
    (b"ffconcat", "FFmpeg concat script: a list of files, not a video"),
    (b"[playlist]", "PLS playlist: a list of links, not a video"),
    (b"<smil", "SMIL presentation: a list of links, not a video"),
    (b"<asx", "ASX playlist: a list of links, not a video"),
    (b"v=0", "SDP session description: a network stream, not a video"),
)


def identify_video(data: bytes, *, animated_images: bool = False) -> str | None:
    """The container (one of :data:`VIDEO_CONTAINERS`, or ``GIF``/``WEBP`` when
    ``animated_images`` and the image has more than one frame) of ``data``, from its magic
    bytes; ``None`` when ``data`` is not a video, to be treated as an image.

    Raises :class:`UnsupportedMedia` naming what it is for video-like things refused here
    (playlists and manifests, FLV, WMV, raw streams, audio); :class:`EmptyMedia` when empty.
    Audio in an allowed container (an MP4 or Ogg of sound only) is refused when opened.
    """
    if not data:
        raise EmptyMedia("empty file: 0 bytes")
    head = data[:64]
    if head[4:8] == b"ftyp" or (head[4:8] in _QUICKTIME_ATOMS and _box_size(head) >= 8):
        return _iso_bmff(head)
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return _ebml(head)
    if head[:4] == b"RIFF":
        return _riff(data, animated_images)
    if head[:4] == b"\x00\x00\x01\xba":
        return "MPEG-PS"
    if head[:4] == b"OggS":
        return "OGG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF" if animated_images and _gif_is_animated(data) else None
    if _synced(data, 0, _TS_PACKET) or _synced(data, 4, _M2TS_PACKET):
        return "MPEG-TS"
    _refuse_video_like(data)
    return None


def _refuse_video_like(data: bytes) -> None:
    head = data[:64]
    for signature, name in _REFUSED_SIGNATURES:
        if head.startswith(signature):
            raise UnsupportedMedia(_refusal(name), name)
    # MPEG audio and ADTS AAC frames start with an 11-bit sync (JPEG's FF D8 is not one).
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        raise UnsupportedMedia(_refusal("MPEG audio (MP3/AAC)"), "MPEG audio")
    text = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    for prefix, name in _REFUSED_TEXT:
        if text.startswith(prefix):
            raise UnsupportedMedia(name, name.split(":")[0])
    if text.startswith((b"<?xml", b"<mpd")) and b"<mpd" in text:
        name = "DASH manifest (MPD): a list of links, not a video"
        raise UnsupportedMedia(name, "DASH manifest")


def _refusal(name: str) -> str:
    if "audio" in name.lower():
        return f"{name} has no video stream"
    return f"{name} is not a supported video format"


def _box_size(head: bytes) -> int:
    return int.from_bytes(head[:4], "big")


def _iso_bmff(head: bytes) -> str | None:
    if head[4:8] != b"ftyp":
        return "MP4"  # QuickTime from before the ftyp box: its first atom says so
    major = head[8:12]
    if major in _ISO_BMFF_BRANDS:
        return None  # HEIC, AVIF, ...: a still image, named as such by the image path
    if major in _AUDIO_BRANDS:
        name = _AUDIO_BRANDS[major]
        raise UnsupportedMedia(_refusal(name), name)
    return "MP4"


def _ebml(head: bytes) -> str:
    """WebM or Matroska, from the EBML header's DocType element (ID 0x4282)."""
    at = head.find(b"\x42\x82", 4)
    if at < 0 or at + 3 > len(head) or not head[at + 2] & 0x80:
        return "MATROSKA"  # no short DocType in the header: the demuxer checks it
    size = head[at + 2] & 0x7F
    doctype = head[at + 3 : at + 3 + size]
    if doctype == b"webm":
        return "WEBM"
    if doctype == b"matroska":
        return "MATROSKA"
    name = f"EBML document of type {doctype.decode('ascii', 'replace')!r}"
    raise UnsupportedMedia(f"{name} is not a supported video format", "EBML")


def _riff(data: bytes, animated_images: bool) -> str | None:
    kind = data[8:12]
    if kind == b"AVI ":
        return "AVI"
    if kind == b"WAVE":
        raise UnsupportedMedia(_refusal("WAV audio"), "WAV audio")
    if kind == b"WEBP" and animated_images and len(webp_frame_durations(data, limit=2)) >= 2:
        return "WEBP"
    return None  # a still WebP, or another RIFF form the image path names


def _synced(data: bytes, offset: int, packet: int) -> bool:
    """MPEG-TS: the 0x47 sync byte at the start of each of the first packets (five, or all
    of them in a shorter file, and at least two)."""
    count = min(5, (len(data) - offset) // packet)
    return count >= 2 and all(data[offset + i * packet] == 0x47 for i in range(count))


def _gif_is_animated(data: bytes) -> bool:
    """More than one image in the GIF: its blocks are walked up to the second image."""
    if len(data) < 13:
        return False
    flags, position, images = data[10], 13, 0
    if flags & 0x80:
        position += 3 << ((flags & 7) + 1)
    while position < len(data):
        block = data[position]
        if block == 0x2C:  # an image: descriptor, local colour table, LZW data
            images += 1
            if images >= 2:
                return True
            if position + 10 > len(data):
                return False
            local = data[position + 9]
            position += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
            position = _skip_sub_blocks(data, position + 1)
        elif block == 0x21:  # an extension: label, then sub-blocks
            position = _skip_sub_blocks(data, position + 2)
        else:  # the trailer, or garbage
            return False
    return False


def _skip_sub_blocks(data: bytes, position: int) -> int:
    while position < len(data):
        size = data[position]
        position += 1 + size
        if size == 0:
            break
    return position


#: Chunks walked at most in a WebP to find its frames: real files put them first, and a file of
#: millions of empty chunks must not cost a second of parsing.
_MAX_WEBP_CHUNKS: Final = 200_000


def webp_frame_durations(data: bytes, limit: int | None = None) -> list[int]:
    """The display time (ms) of each frame (ANMF chunk) of an animated WebP, in order; empty
    for a still one. Stops after ``limit`` frames."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP" or data[12:16] != b"VP8X":
        return []
    if len(data) < 21 or not data[20] & 0x02:  # VP8X's animation flag
        return []
    durations: list[int] = []
    position, chunks = 12, 0
    while position + 8 <= len(data) and chunks < _MAX_WEBP_CHUNKS:
        fourcc = data[position : position + 4]
        size = int.from_bytes(data[position + 4 : position + 8], "little")
        if fourcc == b"ANMF" and size >= 16 and position + 8 + 15 <= len(data):
            durations.append(int.from_bytes(data[position + 20 : position + 23], "little"))
            if limit is not None and len(durations) >= limit:
                break
        position += 8 + size + (size & 1)
        chunks += 1
    return durations


#: Top-level boxes walked at most in an MP4 (a fragmented MP4 has two a fragment).
_MAX_TOP_BOXES: Final = 100_000


def check_iso_bmff(data: bytes) -> None:
    """Refuse an MP4 whose top-level boxes show it truncated or without its index.

    FFmpeg reads a truncated MP4 up to where its bytes end and reports nothing, and names a
    missing ``moov`` box only in its log: a video is never hashed from half of it, so both are
    refused here, naming the cause.
    """
    position, boxes, found_moov = 0, 0, False
    while position + 8 <= len(data) and boxes < _MAX_TOP_BOXES:
        size = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        header = 8
        if size == 1:  # a 64-bit size follows the type
            if position + 16 > len(data):
                break
            size, header = int.from_bytes(data[position + 8 : position + 16], "big"), 16
        elif size == 0:  # the last box, to the end of the file
            size = len(data) - position
        name = kind.decode("latin-1")
        if size < header:
            raise CorruptMedia(f"MP4 is corrupt: its {name!r} box claims {size} bytes")
        if kind == b"moov":
            found_moov = True
        if position + size > len(data):
            raise CorruptMedia(
                f"MP4 is truncated: its {name!r} box needs {size} bytes from offset "
                f"{position}, but the file ends {len(data) - position} bytes after it"
            )
        position += size
        boxes += 1
    if not found_moov and boxes < _MAX_TOP_BOXES:
        raise CorruptMedia(
            "MP4 has no 'moov' box (the index of its frames): truncated before it, or a "
            "fragment without its initialisation segment"
        )
