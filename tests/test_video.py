"""Video decoding from memory with limits (:mod:`hashmatch.media.video`), and vPDQ's forms
(:mod:`hashmatch.signals.vpdq`). Real videos throughout, encoded here with PyAV (FFmpeg's
encoders in its wheel) into memory; hostile ones are made by byte surgery on them."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import tempfile
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import encode, natural_image
from hashmatch.errors import (
    CorruptMedia,
    DecodeTimeout,
    EmptyMedia,
    HashFormatError,
    InvalidFrameRate,
    MediaError,
    MediaTooLarge,
    TooManyFrames,
    TooManyPixels,
    UnsupportedMedia,
    VideoTooLong,
)
from hashmatch.media import decode
from hashmatch.media.video import (
    DEFAULT_VIDEO_LIMITS,
    VIDEO_CONTAINERS,
    VideoFrame,
    VideoLimits,
    _checked_fps,
    identify_video,
    probe_video,
    sample_frames,
)
from hashmatch.signals import vpdq
from hashmatch.signals.types import IndexKind
from hashmatch.signals.vpdq import (
    MAX_FRAMES,
    QUALITY_CUTOFF,
    FrameHash,
    Vpdq,
    format_frames,
    frames_digest,
    hash_frames,
    hash_video,
    pack_frames,
    parse_frames,
    parse_threatexchange,
    unpack_frames,
    unpack_records,
)

CONFORMANCE = Path(__file__).resolve().parent / "data" / "vpdq-conformance"


# --- videos made here ---------------------------------------------------------------------


def moving_frames(count: int, size: tuple[int, int], seed: int = 0) -> Iterator[np.ndarray]:
    """A window panning across a natural-looking picture: distinct, hashable frames."""
    width, height = size
    scene = np.asarray(natural_image(max(width * 2, 64), max(height, 48), seed=seed))
    for i in range(count):
        x = (i * 7) % (width + 1)
        yield np.ascontiguousarray(scene[:height, x : x + width])


class _Unseekable(io.RawIOBase):
    """An output FFmpeg cannot seek back into: muxers write no duration or frame count."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, chunk: Any) -> int:
        self.data += chunk
        return len(chunk)


def encode_video(
    container: str = "mp4",
    codec: str = "libx264",
    *,
    frames: int = 30,
    size: tuple[int, int] = (64, 48),
    rate: Fraction = Fraction(10),
    pix_fmt: str = "yuv420p",
    seekable: bool = True,
    options: dict[str, str] | None = None,
) -> bytes:
    output: Any = io.BytesIO() if seekable else _Unseekable()
    with av.open(output, "w", format=container) as muxer:
        stream: Any = muxer.add_stream(codec, rate=rate, options=options or {})
        stream.width, stream.height, stream.pix_fmt = *size, pix_fmt
        for pixels in moving_frames(frames, size):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            for packet in stream.encode(frame):
                muxer.mux(packet)
        for packet in stream.encode():
            muxer.mux(packet)
    return output.getvalue() if seekable else bytes(output.data)


def encode_audio(container: str, codec: str, seconds: float = 1.0) -> bytes:
    output = io.BytesIO()
    with av.open(output, "w", format=container) as muxer:
        stream: Any = muxer.add_stream(codec, rate=48000)
        stream.layout = "mono"
        context = stream.codec_context
        samples, pts = context.frame_size or 1024, 0
        dtype = {"s16": np.int16, "s16p": np.int16, "flt": np.float32, "fltp": np.float32}
        tone = np.sin(np.arange(samples) / 10) * 0.3
        while pts < seconds * 48000:
            kind = dtype[stream.format.name]
            values = tone * (32767 if kind is np.int16 else 1)
            frame = av.AudioFrame.from_ndarray(
                values.astype(kind).reshape(1, -1), format=stream.format.name, layout="mono"
            )
            frame.sample_rate, frame.pts = 48000, pts
            pts += samples
            for packet in stream.encode(frame):
                muxer.mux(packet)
        for packet in stream.encode():
            muxer.mux(packet)
    return output.getvalue()


def animated(image_format: str, frames: int = 5, duration: int = 100) -> bytes:
    pictures = [Image.fromarray(pixels) for pixels in moving_frames(frames, (64, 48))]
    buffer = io.BytesIO()
    pictures[0].save(
        buffer, image_format, save_all=True, append_images=pictures[1:], duration=duration
    )
    return buffer.getvalue()


def top_boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    boxes, position = [], 0
    while position < len(data):
        size = int.from_bytes(data[position : position + 4], "big")
        boxes.append((data[position + 4 : position + 8], data[position : position + size]))
        position += size
    return boxes


def moov_first(data: bytes) -> bytes:
    """The MP4 rewritten with its index before its media data ("faststart")."""
    boxes = dict(top_boxes(data))
    moov = bytearray(boxes[b"moov"])
    at = moov.find(b"stco")
    count = int.from_bytes(moov[at + 8 : at + 12], "big")
    for i in range(count):
        entry = at + 12 + 4 * i
        offset = int.from_bytes(moov[entry : entry + 4], "big") + len(moov)
        moov[entry : entry + 4] = offset.to_bytes(4, "big")
    rest = b"".join(box for kind, box in top_boxes(data) if kind not in (b"ftyp", b"moov"))
    return boxes[b"ftyp"] + bytes(moov) + rest


def set_bits(buffer: bytearray, bit: int, width: int, value: int) -> None:
    for k in range(width):
        byte, shift = divmod(bit + k, 8)
        if value >> (width - 1 - k) & 1:
            buffer[byte] |= 0x80 >> shift
        else:
            buffer[byte] &= ~(0x80 >> shift) & 0xFF


def mpeg2_claiming(width: int, height: int, data: bytes) -> bytes:
    """MPEG-2 video whose sequence headers (12 bits a side) and sequence extensions (2 more
    bits) claim ``width`` x ``height``."""
    patched = bytearray(data)
    at = patched.find(b"\x00\x00\x01\xb3")
    while at >= 0:
        set_bits(patched, (at + 4) * 8, 12, width & 0xFFF)
        set_bits(patched, (at + 4) * 8 + 12, 12, height & 0xFFF)
        at = patched.find(b"\x00\x00\x01\xb3", at + 4)
    at = patched.find(b"\x00\x00\x01\xb5")
    while at >= 0:
        if patched[at + 4] >> 4 == 1:  # a sequence extension
            set_bits(patched, (at + 4) * 8 + 15, 2, width >> 12)
            set_bits(patched, (at + 4) * 8 + 17, 2, height >> 12)
        at = patched.find(b"\x00\x00\x01\xb5", at + 4)
    return bytes(patched)


def without_frame_rate(data: bytes) -> bytes:
    """An MP4 whose frames all last 0 ticks (``stts``): no average rate can be computed."""
    patched = bytearray(data)
    at = patched.find(b"stts")
    for i in range(int.from_bytes(patched[at + 8 : at + 12], "big")):
        entry = at + 12 + 8 * i + 4
        patched[entry : entry + 4] = bytes(4)
    return bytes(patched)


@pytest.fixture(scope="module")
def mp4() -> bytes:
    return encode_video()


@pytest.fixture
def no_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """The code under test writes no file: ``tempfile`` is unusable, the working and temporary
    directories are empty ones, and they are still empty afterwards."""
    cwd, temp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    temp.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tempfile used while decoding a video")

    for name in (
        "mkstemp",
        "mkdtemp",
        "NamedTemporaryFile",
        "TemporaryFile",
        "SpooledTemporaryFile",
        "TemporaryDirectory",
    ):
        monkeypatch.setattr(tempfile, name, refuse)
    yield
    assert list(cwd.iterdir()) == []
    assert list(temp.iterdir()) == []


def refused(
    data: bytes,
    error: type[MediaError],
    *words: str,
    limits: VideoLimits = DEFAULT_VIDEO_LIMITS,
) -> MediaError:
    """Hashing ``data`` raises ``error`` (no other type escapes), naming the cause."""
    with pytest.raises(error) as raised:
        hash_video(data, seconds_per_hash=0, limits=limits)
    message = raised.value.message
    for word in words:
        assert word in message, message
    assert " at 0x" not in message and "Errno" not in message, message
    return raised.value


# --- identification -----------------------------------------------------------------------

ENCODINGS = [
    ("mp4", "libx264", "MP4", "h264", "yuv420p"),
    ("webm", "libvpx-vp9", "WEBM", "vp9", "yuv420p"),
    ("matroska", "libx264", "MATROSKA", "h264", "yuv420p"),
    ("avi", "mjpeg", "AVI", "mjpeg", "yuvj420p"),
    ("mpegts", "mpeg2video", "MPEG-TS", "mpeg2video", "yuv420p"),
    ("vob", "mpeg2video", "MPEG-PS", "mpeg2video", "yuv420p"),
    ("ogg", "libvpx", "OGG", "vp8", "yuv420p"),
]


@pytest.mark.parametrize(("muxer", "encoder", "container", "codec", "pix_fmt"), ENCODINGS)
def test_each_container_is_identified_and_decoded(
    muxer: str, encoder: str, container: str, codec: str, pix_fmt: str, no_files: None
) -> None:
    if encoder not in av.codecs_available:
        pytest.skip(f"PyAV's FFmpeg has no {encoder} encoder")
    data = encode_video(muxer, encoder, frames=20, pix_fmt=pix_fmt)
    assert identify_video(data) == container
    assert container in VIDEO_CONTAINERS
    info = probe_video(data)
    assert (info.container, info.codec, info.width, info.height) == (container, codec, 64, 48)
    assert info.fps == 10
    _, frames = sample_frames(data, 0)
    decoded = list(frames)
    assert [f.number for f in decoded] == list(range(20))
    assert all(f.rgb.shape == (48, 64, 3) and f.rgb.dtype == np.uint8 for f in decoded)


def test_animated_images_are_videos_only_when_asked(no_files: None) -> None:
    gif, webp = animated("GIF"), animated("WEBP")
    assert identify_video(gif) is None and identify_video(webp) is None
    assert identify_video(gif, animated_images=True) == "GIF"
    assert identify_video(webp, animated_images=True) == "WEBP"
    still_gif = encode(natural_image(64, 48), "GIF")
    still_webp = encode(natural_image(64, 48), "WEBP")
    assert identify_video(still_gif, animated_images=True) is None
    assert identify_video(still_webp, animated_images=True) is None
    for data, container in ((gif, "GIF"), (webp, "WEBP")):
        info, frames = sample_frames(data, 0)
        assert (info.container, info.width, info.height, info.fps) == (container, 64, 48, 10)
        assert [f.number for f in frames] == [0, 1, 2, 3, 4]
    huge = bytearray(webp)
    huge[24:30] = (16382).to_bytes(3, "little") * 2  # the VP8X canvas: 16383x16383
    refused(bytes(huge), TooManyPixels, "16383x16383")
    _, frames = sample_frames(webp, 0.2, side=32)
    assert [(f.number, f.timestamp, f.rgb.shape) for f in frames] == [
        (0, 0.0, (32, 32, 3)),
        (2, 0.2, (32, 32, 3)),
        (4, 0.4, (32, 32, 3)),
    ]


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"#EXTM3U\n#EXT-X-VERSION:3\n#EXTINF:10,\nhttp://example.com/a.ts\n", "HLS playlist"),
        (b"\xef\xbb\xbf  #EXTM3U\nsegment.ts\n", "HLS playlist"),
        (b'<?xml version="1.0"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011">', "DASH"),
        (b"ffconcat version 1.0\nfile '/etc/passwd'\n", "concat"),
        (b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\n", "SDP"),
        (b"FLV\x01\x05\x00\x00\x00\x09" + bytes(100), "Flash video (FLV)"),
        (b"0&\xb2u\x8ef\xcf\x11\xa6\xd9\x00\xaa\x00b\xcel" + bytes(100), "ASF/WMV"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(100), "WAV audio has no video"),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00M4A mp42isom" + bytes(100), "M4A"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(100), "MP3 audio has no video"),
        (b"\x00\x00\x01\xb3\x04\x00\x30\x13" + bytes(100), "raw MPEG-1/2 video"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84abcd" + bytes(100), "'abcd'"),
    ],
)
def test_video_like_things_are_refused_by_name(data: bytes, named: str) -> None:
    with pytest.raises(UnsupportedMedia) as raised:
        identify_video(data)
    assert named in raised.value.message
    with pytest.raises(UnsupportedMedia):
        probe_video(data)


def test_an_image_is_not_a_video_whatever_its_name(no_files: None) -> None:
    jpeg = encode(natural_image(64, 48), "JPEG")  # as if uploaded as "clip.mp4"
    assert identify_video(jpeg) is None
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(100)
    assert identify_video(heic) is None
    refused(jpeg, UnsupportedMedia, "JPEG image is not a video")


def test_jpeg_mp4_polyglot_is_the_jpeg(mp4: bytes, no_files: None) -> None:
    """One identity a file, from its first bytes: a JPEG with an MP4 appended is a JPEG."""
    jpeg = encode(natural_image(80, 60), "JPEG")
    polyglot = jpeg + mp4
    assert identify_video(polyglot) is None
    assert (decode(polyglot).width, decode(polyglot).height) == (80, 60)
    refused(polyglot, UnsupportedMedia, "JPEG image is not a video")


# --- sampling -----------------------------------------------------------------------------


def test_sampling_at_25_fps_keeps_every_25th_frame(no_files: None) -> None:
    data = encode_video(frames=100, rate=Fraction(25))
    info, frames = sample_frames(data, 1.0)
    kept = [(f.number, f.timestamp) for f in frames]
    assert info.fps == 25 and info.frames == 100 and info.duration == pytest.approx(4.0)
    assert kept == [(0, 0.0), (25, 1.0), (50, 2.0), (75, 3.0)]


def test_several_intervals_sample_the_union_of_their_frames(no_files: None) -> None:
    data = encode_video(frames=60, rate=Fraction(25))
    _, frames = sample_frames(data, (1.0, 0.1))  # steps 25 and int(2.5) = 2
    assert [f.number for f in frames] == sorted({*range(0, 60, 2), 25, 50})
    with pytest.raises(ValueError):
        sample_frames(data, ())


def test_sampling_at_ntsc_rate_rounds_the_step_down_as_meta_does(no_files: None) -> None:
    data = encode_video(frames=90, rate=Fraction(30000, 1001))
    info, frames = sample_frames(data, 1.0)
    assert info.fps == pytest.approx(29.97, abs=0.001)
    kept = list(frames)
    assert [f.number for f in kept] == [0, 29, 58, 87]  # int(1.0 * 29.97) = 29
    assert [f.timestamp for f in kept] == [n / (30000 / 1001) for n in (0, 29, 58, 87)]


def test_every_frame_and_fractions_of_a_second(mp4: bytes, no_files: None) -> None:
    _, every = sample_frames(mp4, 0)
    assert [f.number for f in every] == list(range(30))
    _, halves = sample_frames(mp4, 0.5)
    assert [f.number for f in halves] == [0, 5, 10, 15, 20, 25]
    _, long = sample_frames(mp4, 100)
    assert [f.number for f in long] == [0]


def test_side_downsamples_every_kept_frame(no_files: None) -> None:
    data = encode_video(frames=10, size=(320, 240))
    _, frames = sample_frames(data, 0, side=128)
    assert {f.rgb.shape for f in frames} == {(128, 128, 3)}
    _, frames = sample_frames(data, 0)
    first = next(frames)
    assert first.rgb.shape == (240, 320, 3) and first.rgb.flags.c_contiguous


def test_sampling_arguments_are_checked(mp4: bytes) -> None:
    for seconds in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="seconds_per_hash"):
            sample_frames(mp4, seconds)
    with pytest.raises(ValueError, match="side"):
        sample_frames(mp4, 1, side=0)


def test_limits_must_be_positive() -> None:
    for field in ("max_bytes", "max_seconds", "max_frame_pixels", "max_frames"):
        with pytest.raises(ValueError, match="positive"):
            VideoLimits(**{field: 0})
    with pytest.raises(ValueError, match="positive"):
        VideoLimits(max_decode_seconds=math.nan)


# --- limits -------------------------------------------------------------------------------


def test_byte_limit(mp4: bytes, no_files: None) -> None:
    refused(mp4, MediaTooLarge, "over the limit", limits=VideoLimits(max_bytes=len(mp4) - 1))
    refused(b"", EmptyMedia, "empty")


def test_declared_duration_limit(mp4: bytes, no_files: None) -> None:
    refused(mp4, VideoTooLong, "declares 3.0 seconds", limits=VideoLimits(max_seconds=2))


def test_decoded_duration_limit_when_nothing_is_declared(no_files: None) -> None:
    live = encode_video("matroska", frames=50, seekable=False)
    info = probe_video(live)
    assert info.duration is None and info.frames is None
    refused(live, VideoTooLong, "frame 21 is at 2.1 seconds", limits=VideoLimits(max_seconds=2))


def test_frame_count_limit_declared_and_decoded(mp4: bytes, no_files: None) -> None:
    refused(mp4, TooManyFrames, "declares 30 frames", limits=VideoLimits(max_frames=10))
    tiny = encode_video("matroska", frames=50, size=(2, 2), seekable=False)
    refused(tiny, TooManyFrames, "more than 10 frames", limits=VideoLimits(max_frames=10))


def test_frame_size_limit_from_the_header(mp4: bytes, no_files: None) -> None:
    refused(mp4, TooManyPixels, "64x48", limits=VideoLimits(max_frame_pixels=64 * 48 - 1))
    huge = mpeg2_claiming(16383, 16383, encode_video("vob", "mpeg2video", frames=10))
    assert identify_video(huge) == "MPEG-PS"
    refused(huge, TooManyPixels, "16383x16383")


def test_frame_size_limit_when_a_stream_grows_mid_way(no_files: None) -> None:
    small = encode_video("mpegts", "mpeg2video", frames=10, size=(64, 48))
    large = encode_video("mpegts", "mpeg2video", frames=10, size=(320, 240))
    sizes = {f.rgb.shape for f in sample_frames(small + large, 0)[1]}
    assert sizes == {(48, 64, 3), (240, 320, 3)}
    error = refused(
        small + large,
        TooManyPixels,
        "changed its frame size mid-way",
        limits=VideoLimits(max_frame_pixels=64 * 48 * 4),
    )
    assert str(64 * 48 * 4) in error.message


def test_wall_clock_limit(no_files: None) -> None:
    data = encode_video(frames=250, size=(320, 240), rate=Fraction(25))
    started = time.monotonic()
    refused(
        data,
        DecodeTimeout,
        "over the limit of 0.05 seconds",
        limits=VideoLimits(max_decode_seconds=0.05),
    )
    assert time.monotonic() - started < 2


def test_absurd_and_missing_frame_rates(no_files: None) -> None:
    fast = encode_video(rate=Fraction(5000))
    refused(fast, InvalidFrameRate, "5000 fps", "at most 1000 fps")
    still = without_frame_rate(encode_video(codec="mpeg4", frames=2))
    refused(still, InvalidFrameRate, "no frame rate")
    for rate in (Fraction(0), Fraction(-30), math.nan, 1000.5):
        with pytest.raises(InvalidFrameRate, match="must be above 0 and at most 1000 fps"):
            _checked_fps(rate, "MP4")
    assert _checked_fps(Fraction(30000, 1001), "MP4") == 30000 / 1001


# --- hostile inputs -----------------------------------------------------------------------


def test_truncated_mp4(mp4: bytes, no_files: None) -> None:
    # Its index (moov) was at the end: the cut is seen on the media data's box.
    refused(mp4[: len(mp4) // 2], CorruptMedia, "truncated", "'mdat'")
    refused(mp4[: len(mp4) - 100], CorruptMedia, "truncated", "'moov'")
    fast_start = moov_first(mp4)
    assert len(hash_video(fast_start, seconds_per_hash=0).frames) == 30
    refused(fast_start[: len(fast_start) // 2], CorruptMedia, "truncated", "'mdat'")


def test_mp4_without_its_moov_box(mp4: bytes, no_files: None) -> None:
    stripped = b"".join(box for kind, box in top_boxes(mp4) if kind != b"moov")
    refused(stripped, CorruptMedia, "no 'moov' box")


@pytest.mark.parametrize(
    ("container", "codec", "name"),
    [("mp4", "aac", "MP4"), ("mpegts", "mp2", "MPEG-TS"), ("ogg", "libopus", "OGG")],
)
def test_audio_only_files_have_no_video_stream(
    container: str, codec: str, name: str, no_files: None
) -> None:
    data = encode_audio(container, codec)
    assert identify_video(data) == name
    refused(data, UnsupportedMedia, f"{name} has no video stream", "audio")


def test_random_bytes_and_garbage_after_a_header(no_files: None) -> None:
    rng = np.random.default_rng(7)
    for _ in range(5):
        refused(rng.bytes(5000), UnsupportedMedia, "not a video")
    header = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    refused(header + rng.bytes(5000), CorruptMedia)
    refused(b"\x47" + rng.bytes(187) + b"\x47" + rng.bytes(187) + b"\x47" * 10, CorruptMedia)


def test_damaged_videos_decode_or_fail_as_media_errors(mp4: bytes, no_files: None) -> None:
    """Bytes flipped anywhere: a MediaError or frames, never another exception."""
    rng = np.random.default_rng(3)
    for _ in range(15):
        damaged = bytearray(mp4)
        for at in rng.integers(0, len(damaged), 8):
            damaged[at] ^= int(rng.integers(1, 256))
        try:
            hash_video(bytes(damaged), seconds_per_hash=0)
        except MediaError as error:
            assert " at 0x" not in error.message


def test_ffmpeg_logs_nothing(mp4: bytes, capfd: pytest.CaptureFixture[str]) -> None:
    damaged = bytearray(mp4)
    damaged[len(damaged) // 3 : len(damaged) // 3 + 200] = bytes(200)
    with contextlib.suppress(MediaError):
        hash_video(bytes(damaged), seconds_per_hash=0)
    for data in (mp4[: len(mp4) // 2], b"\x47" * 400, encode_audio("mp4", "aac")):
        with pytest.raises(MediaError):
            hash_video(data)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


# --- the container's life -----------------------------------------------------------------


def container_of(frames: Iterator[VideoFrame]) -> Any:
    return frames.gi_frame.f_locals["self"].container  # type: ignore[attr-defined]


def is_closed(container: Any) -> bool:
    try:
        container.duration  # noqa: B018
    except AssertionError:  # PyAV: "Container is not open"
        return True
    return False


def test_the_container_is_closed_however_iteration_ends(mp4: bytes) -> None:
    _, frames = sample_frames(mp4, 0)
    container = container_of(frames)
    assert sum(1 for _ in frames) == 30 and is_closed(container)

    _, frames = sample_frames(mp4, 0)
    container = container_of(frames)
    next(frames)
    assert not is_closed(container)
    frames.close()  # type: ignore[attr-defined]
    assert is_closed(container)

    _, frames = sample_frames(mp4, 0)  # never started, then dropped
    container = container_of(frames)
    del frames
    assert is_closed(container)

    live = encode_video("matroska", frames=20, seekable=False)
    _, frames = sample_frames(live, 0, VideoLimits(max_frames=5))
    container = container_of(frames)
    with pytest.raises(TooManyFrames):
        list(frames)
    assert is_closed(container)


# --- frame hashes -------------------------------------------------------------------------


def test_tiny_frames_hash_to_zero_as_in_meta_reference() -> None:
    frames = [
        VideoFrame(0, 0.0, np.full((4, 64, 3), 200, np.uint8)),
        VideoFrame(1, 0.1, np.asarray(natural_image(64, 48))),
    ]
    tiny, normal = hash_frames(frames)
    assert (tiny.pdq, tiny.quality) == (bytes(32), 0)
    assert normal.quality >= QUALITY_CUTOFF and normal.hex == normal.pdq.hex()
    assert normal.timestamp == 0.1


def test_hash_video_keeps_times_to_the_millisecond(no_files: None) -> None:
    data = encode_video(frames=30, rate=Fraction(30000, 1001))
    result = hash_video(data, seconds_per_hash=0.2)
    assert [f.number for f in result.frames] == [0, 5, 10, 15, 20, 25]
    # n / 29.97... to 3 decimals as printf rounds: 15 / 29.97 = 0.5005 -> 0.501
    assert [f.timestamp for f in result.frames] == [0.0, 0.167, 0.334, 0.501, 0.667, 0.834]
    assert result.info is not None and result.info.frames == 30
    assert unpack_frames(pack_frames(result.frames)) == result.frames


def test_vpdq_signal_type() -> None:
    signal = Vpdq()
    assert (signal.name, signal.bits, signal.nbytes) == ("vpdq", 256, 32)
    assert signal.index_kind is IndexKind.FRAMES and signal.default_threshold == 31


# --- Meta's text form ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in (CONFORMANCE / "expected").glob("*.txt") if "fps" not in p.name),
)
def test_text_form_round_trips_meta_files_byte_for_byte(name: str) -> None:
    text = (CONFORMANCE / "expected" / name).read_text()
    frames = parse_frames(text)
    assert len(frames) == text.count("\n")
    assert format_frames(frames) == text
    assert parse_frames("\n\n" + text.replace("\n", "\r\n") + "\n\n") == frames


GOOD = "0,100,e42926b9cb58d261383b699f0ff2e1076fe6183dff4986d82ca36da48034fc54,0.000"
GOOD_HEX = GOOD.split(",")[2]


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("0,100," + GOOD_HEX, "expected 4 fields"),
        (GOOD + ",extra", "expected 4 fields"),
        ("x,100," + GOOD_HEX + ",0.0", "frame number"),
        ("-1,100," + GOOD_HEX + ",0.0", "frame number"),
        ("5,101," + GOOD_HEX + ",0.0", "quality must be an integer 0-100"),
        ("5,-1," + GOOD_HEX + ",0.0", "quality"),
        ("5,100," + GOOD_HEX[:-1] + ",0.0", "64 hex digits"),
        ("5,100," + GOOD_HEX[:-1] + "g,0.0", "64 hex digits"),
        ("5,100," + GOOD_HEX + ",-0.5", "must not be negative"),
        ("5,100," + GOOD_HEX + ",nan", "must be finite"),
        ("5,100," + GOOD_HEX + ",inf", "must be finite"),
        ("5,100," + GOOD_HEX + ",1_0", "number of seconds"),
        ("5,100," + GOOD_HEX + ",soon", "number of seconds"),
        ("0,100," + GOOD_HEX + ",0.5", "frame numbers must increase"),
    ],
)
def test_text_form_errors_name_the_line(line: str, complaint: str) -> None:
    with pytest.raises(HashFormatError) as raised:
        parse_frames(f"{GOOD}\n\n{line}\n")
    assert raised.value.message.startswith("line 3: ")
    assert complaint in raised.value.message


def test_text_form_caps_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vpdq, "MAX_FRAMES", 3)
    lines = [f"{i},100,{GOOD_HEX},{i}.000" for i in range(4)]
    assert len(parse_frames("\n".join(lines[:3]))) == 3
    with pytest.raises(HashFormatError, match="line 4: more than 3 frames"):
        parse_frames("\n".join(lines))


# --- python-threatexchange's JSON ---------------------------------------------------------

# python-threatexchange's older form (its tests' test_hash.txt, BSD, Meta Platforms): the first
# two frames of chair-20-sd-bar.mp4 at one hash a second.
OLD_THREATEXCHANGE = (
    '{"0": {"quality": 100, "hash": {"w": [64596, 32820, 28068, 11427, 34520, 65353, 6205, '
    '28646, 57607, 4082, 27039, 14395, 53857, 52056, 9913, 58409]}, "timestamp": 0.0}, '
    '"30": {"quality": 100, "hash": {"w": [46164, 53604, 56289, 18851, 7440, 31705, 28921, '
    '34574, 34582, 30454, 2654, 62187, 13794, 7952, 18865, 19689]}, "timestamp": 1.0}}'
)


def test_threatexchange_forms() -> None:
    expected = (CONFORMANCE / "expected" / "chair-20-sd-bar.1fps.txt").read_text().split()
    old = parse_threatexchange(OLD_THREATEXCHANGE)
    assert [(f.number, f.hex, f.quality, f.timestamp) for f in old] == [
        (0, expected[0], 100, 0.0),
        (30, expected[1], 100, 1.0),
    ]
    # The current form: f"{pdq_hex},{quality},{timestamp:.3}", in a JSON list.
    current = json.dumps(
        [f"{expected[0]},100,0.0", f"{expected[1]},87,0.0333", f"{expected[2]},0,2e+01"]
    )
    frames = parse_threatexchange(current)
    assert [(f.number, f.hex, f.quality, f.timestamp) for f in frames] == [
        (0, expected[0], 100, 0.0),
        (1, expected[1], 87, 0.033),
        (2, expected[2], 0, 20.0),
    ]
    assert parse_threatexchange("") == () == parse_threatexchange("[]")


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("{", "not JSON"),
        ("[" * 100_000, "not JSON"),
        ('"x"', "expected a JSON list"),
        ("[1]", "item 1"),
        (f'["{GOOD_HEX},100"]', "expected 3 fields"),
        (f'["{GOOD_HEX},100,-1"]', "negative"),
        (f'["{GOOD_HEX},101,0.0"]', "quality"),
        ('{"a": {}}', "frame key"),
        ('{"1": {"quality": 1, "timestamp": 0}}', "expected an object"),
        ('{"1": {"quality": 1, "hash": {"w": [1]}, "timestamp": 0}}', "16 integers"),
        (json.dumps({"1": {"quality": True, "hash": GOOD_HEX, "timestamp": 0}}), "quality"),
        (json.dumps({"1": {"quality": 1, "hash": GOOD_HEX, "timestamp": "0"}}), None),
        (json.dumps({"1": {"quality": 1, "hash": GOOD_HEX, "timestamp": []}}), "seconds"),
        (
            json.dumps({k: {"quality": 1, "hash": GOOD_HEX, "timestamp": 0} for k in ("01", "1")}),
            "repeat",
        ),
    ],
)
def test_threatexchange_errors(text: str, complaint: str | None) -> None:
    if complaint is None:
        assert parse_threatexchange(text)[0].number == 1
        return
    with pytest.raises(HashFormatError) as raised:
        parse_threatexchange(text)
    assert complaint in raised.value.message


# --- packed form --------------------------------------------------------------------------

frame_lists = st.lists(
    st.tuples(
        st.integers(1, 1000),
        st.integers(0, 2**32 - 1),
        st.binary(min_size=32, max_size=32),
        st.integers(0, 100),
    ),
    max_size=50,
)


@settings(max_examples=200, deadline=None)
@given(frame_lists)
def test_pack_unpack_round_trip(rows: list[tuple[int, int, bytes, int]]) -> None:
    number, frames = -1, []
    for gap, milliseconds, pdq, quality in rows:
        number += gap
        frames.append(FrameHash(number, milliseconds / 1000, pdq, quality))
    packed = pack_frames(frames)
    assert len(packed) == 1 + 41 * len(frames) and packed[0] == 1
    assert unpack_frames(packed) == tuple(frames)
    assert frames_digest(frames) == hashlib.sha256(packed).digest()
    assert len(unpack_records(packed)) == len(frames)


def test_packed_form_is_little_endian_records() -> None:
    frame = FrameHash(258, 1.5, bytes(range(32)), 77)
    packed = pack_frames([frame])
    assert packed == b"\x01" + b"\x02\x01\x00\x00" + b"\xdc\x05\x00\x00" + b"\x4d" + bytes(
        range(32)
    )


@pytest.mark.parametrize(
    ("blob", "complaint"),
    [
        (b"", "no version byte"),
        (b"\x02" + bytes(41), "version 2"),
        (b"\x01" + bytes(40), "not a multiple of 41"),
        (b"\x01" + bytes(8) + b"\x65" + bytes(32), "quality above 100"),
        (b"\x01" + bytes(41) * 2, "do not increase"),
    ],
)
def test_unpack_errors(blob: bytes, complaint: str) -> None:
    with pytest.raises(HashFormatError, match=complaint):
        unpack_frames(blob)


def test_unpack_caps_frames() -> None:
    records = np.zeros(MAX_FRAMES + 1, dtype=vpdq.RECORD)
    records["number"] = np.arange(MAX_FRAMES + 1)
    with pytest.raises(HashFormatError, match=f"at most {MAX_FRAMES}"):
        unpack_frames(b"\x01" + records.tobytes())


@pytest.mark.parametrize(
    ("frames", "complaint"),
    [
        ([FrameHash(1, 0, bytes(32), 1), FrameHash(1, 0, bytes(32), 1)], "must increase"),
        ([FrameHash(-1, 0, bytes(32), 1)], "must increase"),
        ([FrameHash(2**32, 0, bytes(32), 1)], "must increase"),
        ([FrameHash(0, 0, bytes(32), 101)], "quality"),
        ([FrameHash(0, -1, bytes(32), 1)], "timestamps"),
        ([FrameHash(0, math.nan, bytes(32), 1)], "timestamps"),
        ([FrameHash(0, 0, bytes(31), 1)], "32 bytes"),
    ],
)
def test_pack_errors(frames: list[FrameHash], complaint: str) -> None:
    with pytest.raises(HashFormatError, match=complaint):
        pack_frames(frames)


def test_packing_a_longest_video_round_trips() -> None:
    # Speed is bench_video's to measure; this checks the largest video survives both forms.
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (MAX_FRAMES, 32), dtype=np.uint8)
    frames = [
        FrameHash(i, i / 30, codes[i].tobytes(), int(q))
        for i, q in enumerate(rng.integers(0, 101, MAX_FRAMES))
    ]
    packed = pack_frames(frames)
    records = unpack_records(packed)
    unpacked = unpack_frames(packed)
    assert len(records) == MAX_FRAMES and unpacked[-1].number == MAX_FRAMES - 1
    assert unpacked[12345].pdq == frames[12345].pdq
    assert pack_frames(unpacked) == packed


def test_video_errors_have_codes_http_statuses_and_exit_codes() -> None:
    from hashmatch.api.errors import status_for
    from hashmatch.cli import exit_code_for

    for error, code, status in (
        (VideoTooLong("x"), "video_too_long", 413),
        (TooManyFrames("x"), "too_many_frames", 413),
        (DecodeTimeout("x"), "decode_timeout", 413),
        (InvalidFrameRate("x"), "invalid_frame_rate", 422),
    ):
        assert isinstance(error, MediaError)
        assert (error.code, status_for(error), exit_code_for(error)) == (code, status, 65)


# --- empty packets (Ogg's Theora) -------------------------------------------------------------

THEORA_CUT = Path(__file__).resolve().parent / "data" / "video" / "movie-hello-theora-cut.ogg"


def test_empty_theora_packets_are_skipped_and_numbered_as_meta_does() -> None:
    # A real Theora cut (tests/data/video/README.md): 12 packets, 2 of them empty, with times.
    data = THEORA_CUT.read_bytes()
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.pts is not None]
        empty = [p for p in packets if p.size == 0]
        assert (len(packets), len(empty)) == (12, 2)
        # What the fix is for: FFmpeg refuses an empty packet that has a buffer.
        with pytest.raises(av.error.ArgumentError):
            stream.codec_context.decode(empty[0])
    expected = parse_frames(THEORA_CUT.with_suffix(".vpdq-0.2.5.txt").read_text())
    result = vpdq.hash_video(data, seconds_per_hash=0)
    assert [f.number for f in result.frames] == [f.number for f in expected] == list(range(10))
    for ours, theirs in zip(result.frames, expected, strict=True):
        assert ours.quality == theirs.quality
        assert ours.timestamp == pytest.approx(theirs.timestamp, abs=0.001)
        bits = (int.from_bytes(ours.pdq, "big") ^ int.from_bytes(theirs.pdq, "big")).bit_count()
        assert bits <= 8  # equal when written (vpdq 0.2.5, FFmpeg 8.1 in PyAV 18)
    # Sampled, kept frames follow the decoded numbering: step int(0.1 * 29.97) = 2.
    info, frames = sample_frames(data, 0.1)
    assert (info.container, info.codec) == ("OGG", "theora")
    assert [f.number for f in frames] == [0, 2, 4, 6, 8]


def test_a_video_file_is_decoded_from_the_open_file_as_from_its_bytes(
    mp4: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(mp4)
    with path.open("rb") as file:
        from_file = hash_video(file, seconds_per_hash=(1.0, 0.1))
    assert from_file.frames == hash_video(mp4, seconds_per_hash=(1.0, 0.1)).frames
    assert from_file.info == hash_video(mp4).info
    # The checks that read the bytes read them from the file as well.
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(mp4[: len(mp4) // 2])
    with cut.open("rb") as file, pytest.raises(CorruptMedia, match="truncated"):
        hash_video(file)
    image = tmp_path / "photo.mp4"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with image.open("rb") as file, pytest.raises(UnsupportedMedia, match="not a video"):
        hash_video(file)
    with path.open("rb") as file, pytest.raises(MediaTooLarge):
        hash_video(file, limits=VideoLimits(max_bytes=len(mp4) - 1))
