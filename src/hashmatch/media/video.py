"""Untrusted video bytes in, sampled RGB frames out, as Meta's vPDQ reference samples them.

Decoding is from memory (``av.open`` on a ``BytesIO``: no temporary file, no path, no URL),
with the one demuxer the magic bytes name (:mod:`.containers`), and with every limit of
:class:`VideoLimits` checked twice: from the headers before a frame is decoded (bytes, declared
duration and frame count, frame size, frame rate), and while decoding (decoded frames, the size
of each decoded frame, decoded time, wall clock). A hostile file stops at the first limit it
crosses with a :class:`MediaError` naming the cause; every PyAV or FFmpeg exception becomes
:class:`CorruptMedia` with a short, stable reason. FFmpeg's log stays silent: PyAV installs no
log callback unless asked (``av.logging.set_level``), and this module never asks.

Sampling follows Meta's reference (``vpdq/cpp/hashing/filehasher.cpp``): the frame rate is the
stream's average rate (else its base rate); ``step = max(1, int(seconds_per_hash * fps))``;
frames are numbered from 0 in decode order and frame ``n`` is kept when ``n % step == 0``, at
``n / fps`` seconds. Only kept frames are converted to RGB. Frames are hashed as stored, as the
reference hashes them: a rotation tag (a phone's display matrix) or a non-square pixel aspect is
not applied.

Colour conversion, measured against Meta's expected hashes (``tests/test_vpdq_conformance.py``
runs two of its videos; all fourteen were measured). The reference has converted frames three
ways over its history, and its files keep all three:

- 13 full-size files were made when it read frames from the ``ffmpeg`` command (``-pix_fmt
  rgb24``): BT.601 limited-range coefficients, exact rounding, nearest-neighbour chroma, which
  swscale gives with ``SWS_POINT | SWS_ACCURATE_RND``, used here. 12 of those videos hash equal
  to the reference on every frame; the 13th differs on one frame by 2 bits. PyAV's default
  (bilinear, swscale's fast table rounding) lands 0.3-1.4 bits away on average, 5.4 on the
  doorknob video, up to 22 on a frame.
- the ``-128x128`` files date from its first libav version (``SWS_LANCZOS``): downsampled frames
  (``side``) match them with Lanczos (0.07-0.6 bits on average, 4 at most), used here; area,
  today's choice, lands 2-5 bits away, up to 16.
- test-padded-dimensions was hashed last, by today's ``SWS_AREA`` with fast rounding: 1.1 bits
  from the conversion used here on average, 4 at most.

The frame's colour tags are ignored, as the reference's ``sws_scale`` ignores them: BT.601
always, full range only for the ``yuvj`` pixel formats.
"""

from __future__ import annotations

import io
import math
import time
import warnings
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, BinaryIO, Final

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, Interpolation, VideoReformatter
from PIL import Image

from hashmatch.errors import (
    CorruptMedia,
    DecodeTimeout,
    EmptyMedia,
    HashmatchError,
    InvalidFrameRate,
    MediaTooLarge,
    TooManyFrames,
    TooManyPixels,
    UnsupportedMedia,
    VideoTooLong,
)
from hashmatch.media.containers import (
    ANIMATED_IMAGE_CONTAINERS,
    DEMUXERS,
    VIDEO_CONTAINERS,
    check_iso_bmff,
    identify_video,
    webp_frame_durations,
)
from hashmatch.media.decode import _reason as _short_reason
from hashmatch.media.identify import _describe_rejected, identify

__all__ = [
    "ANIMATED_IMAGE_CONTAINERS",
    "DEFAULT_VIDEO_LIMITS",
    "VIDEO_CONTAINERS",
    "VideoFrame",
    "VideoInfo",
    "VideoLimits",
    "configure_decoder",
    "identify_video",
    "probe_video",
    "sample_frames",
]

#: Frame rates above this are refused: no camera or screen records faster, and a rate from a
#: hostile header would make the sampling step (and decoded time) meaningless.
MAX_FPS: Final = 1000.0

#: Decoder threading, measured on 2 cores with the 720p conformance videos (best of 6, FFmpeg 8.1
#: in PyAV 18), decoded frames a second, wall clock: frame+slice threads ("AUTO") with 2 threads
#: decode pattern-hd 477 -> 729 and doorknob-hd 775 -> 1280 fps (1.5-1.65x) for ~10% more CPU, and
#: hash them at one a second 375 -> 534 and 474 -> 626 fps (18-21x real time; 12-15x a core).
#: Slice threads alone gain nothing on these single-slice H.264 streams, frame threads alone are
#: as fast on pattern and 10% slower with hashing on doorknob, and ``thread_count=0`` (FFmpeg's
#: choice: 3 threads on 2 cores) is 3-19% slower than 2. Threading changes no decoded pixel.
THREAD_TYPE: Final = "AUTO"
THREAD_COUNT: Final = 2

#: swscale flags of the RGB conversion (see the module's docstring): full size, downsampled.
_FULL_SIZE_FLAGS: Final = Interpolation.POINT | Interpolation.ACCURATE_RND
_DOWNSAMPLE_FLAGS: Final = Interpolation.LANCZOS | Interpolation.ACCURATE_RND


@dataclass(frozen=True)
class VideoLimits:
    """Caps on one video's decoding; every one positive."""

    max_bytes: int = 200_000_000  # HTTP's default; the CLI passes 4 GB
    max_seconds: float = 4 * 3600  # declared or decoded duration
    #: width*height of one frame: from the stream header before decoding, and on every frame.
    max_frame_pixels: int = 8192 * 4320
    max_frames: int = 1_000_000  # decoded (or declared) frames
    max_decode_seconds: float = 600.0  # wall clock, from the call to the last frame

    def __post_init__(self) -> None:
        values = (
            self.max_bytes,
            self.max_seconds,
            self.max_frame_pixels,
            self.max_frames,
            self.max_decode_seconds,
        )
        if not all(value > 0 for value in values):  # NaN fails this too
            raise ValueError(f"video limits must be positive, got {self}")


DEFAULT_VIDEO_LIMITS: Final = VideoLimits()


@dataclass(frozen=True)
class VideoInfo:
    """What a video's headers declare: ``duration`` (seconds) and ``frames`` when they do."""

    container: str
    codec: str
    width: int
    height: int
    fps: float
    duration: float | None
    frames: int | None


@dataclass(frozen=True, slots=True, eq=False)
class VideoFrame:
    """One sampled frame: its number in decode order, its time (``number / fps``) and its
    pixels, 8-bit RGB of shape (height, width, 3)."""

    number: int
    timestamp: float
    rgb: np.ndarray


def configure_decoder(stream: Any) -> None:
    """Decoder threading of a PyAV video stream, as every decode here uses it."""
    stream.thread_type = THREAD_TYPE
    stream.codec_context.thread_count = THREAD_COUNT


def probe_video(data: bytes | BinaryIO, limits: VideoLimits = DEFAULT_VIDEO_LIMITS) -> VideoInfo:
    """What the headers of ``data`` declare, checked against ``limits``; nothing is decoded
    beyond what FFmpeg reads to find the stream's parameters."""
    source = _open(data, limits, time.monotonic())
    source.close()
    return source.info


def sample_frames(
    data: bytes | BinaryIO,
    seconds_per_hash: float | Sequence[float],
    limits: VideoLimits = DEFAULT_VIDEO_LIMITS,
    *,
    side: int | None = None,
) -> tuple[VideoInfo, Iterator[VideoFrame]]:
    """The video's declared info, and its frames sampled every ``seconds_per_hash`` seconds
    (0: every frame) as Meta's reference samples them, converted to RGB (``side`` x ``side``
    when ``side`` is given). Several intervals sample the union of their frames: ``(1, 0.1)``
    keeps vPDQ's frames a second apart and those a tenth of a second apart (a listing dense
    enough for clips and stills cut anywhere, ``benchmarks/bench_video.py``).

    Header limits are checked here, before this returns; the others while iterating. The
    container is closed when the iterator is exhausted, fails, is closed, or is collected.
    """
    intervals = (
        (seconds_per_hash,) if isinstance(seconds_per_hash, int | float) else seconds_per_hash
    )
    if not intervals or not all(math.isfinite(s) and s >= 0 for s in intervals):
        raise ValueError(f"seconds_per_hash must be finite and >= 0, got {seconds_per_hash}")
    if side is not None and side < 1:
        raise ValueError(f"side must be a positive number of pixels, got {side}")
    started = time.monotonic()
    source = _open(data, limits, started)
    steps = tuple(sorted({max(1, int(s * source.info.fps)) for s in intervals}))
    try:
        frames = source.frames(steps, side, limits, started)
    except BaseException:
        source.close()
        raise
    # A generator never started runs no ``finally``: close the container when it is collected.
    weakref.finalize(frames, source.close)
    return source.info, frames


# --- opening ------------------------------------------------------------------------------


class _Source:
    """An opened video: its info, and the frames of its video stream."""

    info: VideoInfo

    def close(self) -> None:
        raise NotImplementedError

    def frames(
        self, steps: tuple[int, ...], side: int | None, limits: VideoLimits, started: float
    ) -> Iterator[VideoFrame]:
        raise NotImplementedError


class FileView:
    """A video file on disk, seen as bytes only where they are looked at (its head, an MP4's
    top-level box headers), and handed to FFmpeg as the file it is: ``hashmatch hash`` on a
    2-hour video holds a few decoded frames, never the file (``bench_video.py --part
    memory``). The service's uploads are bytes and stay in memory."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._size = file.seek(0, io.SEEK_END)

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, key: slice) -> bytes:
        start, stop, _ = key.indices(self._size)
        self._file.seek(start)
        return self._file.read(max(stop - start, 0))

    def rewound(self) -> BinaryIO:
        self._file.seek(0)
        return self._file


#: Bytes of a file read to tell its container (what ``identify_video`` looks at).
_HEAD_BYTES: Final = 64 * 1024


def _open_file(file: BinaryIO, limits: VideoLimits, started: float) -> _Source:
    view = FileView(file)
    if len(view) > limits.max_bytes:
        raise MediaTooLarge(f"{len(view)} bytes is over the limit of {limits.max_bytes} bytes")
    head = view[:_HEAD_BYTES]
    if not head:
        raise EmptyMedia("empty file: 0 bytes")
    container = identify_video(head, animated_images=True)
    if container is None or container in ("GIF", "WEBP"):
        # Not a video (say what it is), or an animated image: small, and read whole.
        return _open(view[:], limits, started)
    if container == "MP4":
        check_iso_bmff(view)  # type: ignore[arg-type]  # reads only box headers, by slices
    return _FFmpegSource(view.rewound(), container, limits, started)


def _open(data: bytes | BinaryIO, limits: VideoLimits, started: float) -> _Source:
    if not isinstance(data, bytes | bytearray | memoryview):
        return _open_file(data, limits, started)
    if not data:
        raise EmptyMedia("empty file: 0 bytes")
    if len(data) > limits.max_bytes:
        raise MediaTooLarge(f"{len(data)} bytes is over the limit of {limits.max_bytes} bytes")
    container = identify_video(data, animated_images=True)
    if container is None:
        raise UnsupportedMedia(*_not_a_video(data))
    if container == "WEBP":
        return _AnimatedWebp(data, limits)
    if container == "MP4":
        check_iso_bmff(data)
    return _FFmpegSource(data, container, limits, started)


def _not_a_video(data: bytes) -> tuple[str, str]:
    try:
        image_format = identify(data)
    except HashmatchError:
        message, detected = _describe_rejected(data)
        return f"not a video: {message}", detected
    return f"{image_format} image is not a video", image_format


def _refuse_nested_open(url: str, flags: int, options: dict[str, str]) -> Any:
    """No demuxer allowed here opens another file, but if one tried it would get nothing."""
    raise OSError("opening other files is not allowed")


class _FFmpegSource(_Source):
    def __init__(self, data: bytes | BinaryIO, container: str, limits: VideoLimits, started: float):
        self.name = container
        budget = max(limits.max_decode_seconds - (time.monotonic() - started), 0.001)
        try:
            self.container = av.open(
                io.BytesIO(data) if isinstance(data, bytes) else data,
                mode="r",
                format=DEMUXERS[container],
                # Codec options of the decoders FFmpeg runs to find the streams' parameters:
                # a frame over the size limit is not allocated while probing either.
                options={"max_pixels": str(limits.max_frame_pixels), "threads": "1"},
                container_options={"enable_drefs": "0", "use_absolute_path": "0"},
                timeout=(budget, budget),
                io_open=_refuse_nested_open,
            )
        except Exception as exc:
            if time.monotonic() - started > limits.max_decode_seconds:
                raise _timeout(started, limits, "opening") from None
            raise _as_media_error(exc, container) from None
        try:
            self.stream = self._video_stream()
            self.info = self._checked_info(limits)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.container.close()

    def _video_stream(self) -> Any:
        streams = [
            stream
            for stream in self.container.streams.video
            if not stream.disposition & av.stream.Disposition.attached_pic
        ]
        if not streams:
            kinds = sorted({stream.type for stream in self.container.streams})
            has = f" (it has {' and '.join(kinds)} only)" if kinds else ""
            raise UnsupportedMedia(
                f"{self.name} has no video stream{has}", f"{self.name} without video"
            )
        stream = streams[0]
        if stream.codec_context is None:
            raise UnsupportedMedia(
                f"{self.name} video in a codec FFmpeg cannot decode here", "unknown video codec"
            )
        return stream

    def _checked_info(self, limits: VideoLimits) -> VideoInfo:
        stream = self.stream
        context = stream.codec_context
        width, height = context.width, context.height
        if width <= 0 or height <= 0:
            raise CorruptMedia(
                f"{self.name} video stream gives no frame size ({width}x{height}): FFmpeg "
                f"could not read one, or refused it as too large"
            )
        _check_frame_size(width, height, limits, f"{self.name} header declares frames of")
        rate = stream.average_rate or stream.base_rate
        fps = _checked_fps(rate, self.name)
        duration = _declared_duration(stream, self.container)
        frames = stream.frames or None
        _check_declared(self.name, duration, frames, limits)
        return VideoInfo(self.name, context.name, width, height, fps, duration, frames)

    def frames(
        self, steps: tuple[int, ...], side: int | None, limits: VideoLimits, started: float
    ) -> Iterator[VideoFrame]:
        # Set before the decoder opens (at the first packet): its threads, and its own cap on
        # a frame's size, so that a stream growing mid-way is refused before it allocates.
        try:
            configure_decoder(self.stream)
            self.stream.codec_context.options = {"max_pixels": str(limits.max_frame_pixels)}
        except Exception as exc:
            raise _as_media_error(exc, self.name) from None
        return self._frames(steps, side, limits, started)

    def _frames(
        self, steps: tuple[int, ...], side: int | None, limits: VideoLimits, started: float
    ) -> Iterator[VideoFrame]:
        fps, reformatter, number = self.info.fps, VideoReformatter(), 0
        try:
            decoder = self.stream.codec_context
            for packet in self._packets():
                _check_clock(started, limits, number)
                for frame in decoder.decode(packet):
                    _check_decoded(number, fps, frame.width, frame.height, limits)
                    if _sampled(number, steps):
                        rgb = _to_rgb(reformatter, frame, side)
                        yield VideoFrame(number, number / fps, rgb)
                    number += 1
                    _check_clock(started, limits, number)
        except HashmatchError:
            raise
        except Exception as exc:
            raise self._decode_error(exc, limits, started) from None
        finally:
            self.close()

    def _packets(self) -> Iterator[Any]:
        """The video stream's packets for the decoder, then ``None``: drain it.

        Empty packets are left out. A demuxer hands one out for a frame that repeats the one
        before (Ogg's Theora does for each frame its encoder found unchanged), and FFmpeg's
        ``avcodec_send_packet`` refuses it with EINVAL: only a packet without a buffer means
        "drain", and a demuxed one has a buffer. It gives no frame, and so takes no frame
        number, as in Meta's reference: vpdq 0.2.5 hashes the corpus's Ogg video (249 video
        packets, 7 of them empty) as frames 0-241 as this does, with the same qualities
        (hashes 0.5 bits apart on average, 4 at most: its colour conversion is not the one
        here), because its ``filehasher.cpp`` stores ``avcodec_send_packet(...) < 0`` (0 or
        1, never negative) and so never sees the error; its later rewrite checks the error
        and fails the whole video instead. The last packet of ``demux`` (PyAV's drain signal)
        is empty too, hence the explicit ``None``.
        """
        for packet in self.container.demux(self.stream):
            if packet.size:
                yield packet
        yield None

    def _decode_error(self, exc: Exception, limits: VideoLimits, started: float) -> HashmatchError:
        if time.monotonic() - started > limits.max_decode_seconds:
            return _timeout(started, limits, "decoding")
        # A frame over the size limit is refused by the decoder itself (``max_pixels``), which
        # then reports the size it refused, or 0x0 (FFmpeg's ``ff_set_dimensions``).
        context = self.stream.codec_context
        width, height = context.width, context.height
        if width * height > limits.max_frame_pixels:
            return TooManyPixels(
                f"{self.name} video stream changed its frame size mid-way to {width}x{height}, "
                f"over the limit of {limits.max_frame_pixels} pixels a frame"
            )
        if (width, height) == (0, 0):
            return TooManyPixels(
                f"{self.name} video stream changed its frame size mid-way to one the decoder "
                f"refused: over the limit of {limits.max_frame_pixels} pixels a frame, or "
                f"over FFmpeg's own"
            )
        return _as_media_error(exc, self.name)


class _AnimatedWebp(_Source):
    """Animated WebP through Pillow's libwebp animation decoder: FFmpeg's has no animation.
    Its frame rate is the average over the frames' display times (10 fps when they are all
    0, as browsers play them)."""

    def __init__(self, data: bytes, limits: VideoLimits):
        durations = webp_frame_durations(data, limit=limits.max_frames + 1)
        total = sum(durations) / 1000
        fps = len(durations) / total if total > 0 else 10.0
        # From the VP8X header, before Pillow opens it: libwebp allocates two canvases then.
        width, height = (1 + int.from_bytes(data[at : at + 3], "little") for at in (24, 27))
        _check_frame_size(width, height, limits, "WEBP header declares frames of")
        _checked_fps(fps, "WEBP")
        _check_declared("WEBP", total or None, len(durations), limits)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # our own pixel cap replaces Pillow's
                self.image = Image.open(io.BytesIO(data), formats=["WEBP"])
        except Exception as exc:
            raise CorruptMedia(f"WEBP could not be decoded: {_reason(exc)}") from None
        if self.image.size != (width, height):
            self.close()
            raise CorruptMedia(f"WEBP canvas is {width}x{height}, but its frames are not")
        self.info = VideoInfo("WEBP", "webp", width, height, fps, total or None, len(durations))

    def close(self) -> None:
        self.image.close()

    def frames(
        self, steps: tuple[int, ...], side: int | None, limits: VideoLimits, started: float
    ) -> Iterator[VideoFrame]:
        return self._frames(steps, side, limits, started)

    def _frames(
        self, steps: tuple[int, ...], side: int | None, limits: VideoLimits, started: float
    ) -> Iterator[VideoFrame]:
        fps = self.info.fps
        count = self.info.frames or 0
        try:
            for number in range(count):
                _check_decoded(number, fps, *self.image.size, limits)
                _check_clock(started, limits, number)
                if not _sampled(number, steps):
                    continue
                self.image.seek(number)
                picture = self.image.convert("RGB")
                if side is not None:
                    picture = picture.resize((side, side), Image.Resampling.LANCZOS)
                yield VideoFrame(number, number / fps, np.asarray(picture))
        except HashmatchError:
            raise
        except Exception as exc:
            raise CorruptMedia(f"WEBP could not be decoded: {_reason(exc)}") from None
        finally:
            self.close()


# --- checks -------------------------------------------------------------------------------


def _sampled(number: int, steps: tuple[int, ...]) -> bool:
    return any(number % step == 0 for step in steps)


def _check_frame_size(width: int, height: int, limits: VideoLimits, what: str) -> None:
    if width * height > limits.max_frame_pixels:
        raise TooManyPixels(
            f"{what} {width}x{height} = {width * height} pixels, over the limit of "
            f"{limits.max_frame_pixels} pixels a frame"
        )


def _checked_fps(rate: Fraction | float | None, container: str) -> float:
    fps = float(rate) if rate is not None else math.nan
    if not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
        if rate is None:
            shown = "no frame rate (neither an average nor a base rate)"
        elif isinstance(rate, Fraction):
            shown = f"a frame rate of {rate} ({fps:g} fps)"
        else:
            shown = f"a frame rate of {fps:g} fps"
        raise InvalidFrameRate(
            f"{container} video stream gives {shown}: it must be above 0 and at most "
            f"{MAX_FPS:g} fps"
        )
    return fps


def _declared_duration(stream: Any, container: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / av.time_base
    else:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _check_declared(
    container: str, duration: float | None, frames: int | None, limits: VideoLimits
) -> None:
    if duration is not None and duration > limits.max_seconds:
        raise VideoTooLong(
            f"{container} header declares {duration:.1f} seconds, over the limit of "
            f"{limits.max_seconds:g} seconds"
        )
    if frames is not None and frames > limits.max_frames:
        raise TooManyFrames(
            f"{container} header declares {frames} frames, over the limit of {limits.max_frames}"
        )


def _check_decoded(number: int, fps: float, width: int, height: int, limits: VideoLimits) -> None:
    """Before using frame ``number`` (counted from 0)."""
    if number >= limits.max_frames:
        raise TooManyFrames(f"more than {limits.max_frames} frames decoded: over the limit")
    if number / fps > limits.max_seconds:
        raise VideoTooLong(
            f"frame {number} is at {number / fps:.1f} seconds, over the limit of "
            f"{limits.max_seconds:g} seconds"
        )
    _check_frame_size(width, height, limits, f"frame {number} is")


def _check_clock(started: float, limits: VideoLimits, frames: int) -> None:
    if time.monotonic() - started > limits.max_decode_seconds:
        raise _timeout(started, limits, f"decoding {frames} frames")


def _timeout(started: float, limits: VideoLimits, doing: str) -> DecodeTimeout:
    return DecodeTimeout(
        f"stopped after {time.monotonic() - started:.2f} seconds {doing}, over the limit of "
        f"{limits.max_decode_seconds:g} seconds"
    )


# --- conversion and errors ----------------------------------------------------------------


def _to_rgb(reformatter: VideoReformatter, frame: Any, side: int | None) -> np.ndarray:
    """8-bit RGB as the reference converts: BT.601 whatever the frame's tags say, limited
    range unless the pixel format is a full-range (``yuvj``) one."""
    colour: dict[str, Any] = {}
    pixel_format = frame.format
    if not pixel_format.is_rgb and not pixel_format.name.startswith(("gray", "pal", "ya")):
        full = pixel_format.name.startswith("yuvj")
        colour = {
            "src_colorspace": Colorspace.ITU601,
            "dst_colorspace": Colorspace.ITU601,
            "src_color_range": ColorRange.JPEG if full else ColorRange.MPEG,
            "dst_color_range": ColorRange.JPEG,
        }
    rgb = reformatter.reformat(
        frame,
        width=side,
        height=side,
        format="rgb24",
        interpolation=_FULL_SIZE_FLAGS if side is None else _DOWNSAMPLE_FLAGS,
        threads=1,
        **colour,
    )
    return np.ascontiguousarray(rgb.to_ndarray())


def _as_media_error(exc: BaseException, container: str) -> HashmatchError:
    if isinstance(exc, HashmatchError):
        return exc
    if isinstance(exc, MemoryError):
        return TooManyPixels(f"{container}: not enough memory to decode")
    return CorruptMedia(f"{container} could not be decoded: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    """FFmpeg's complaint without errno numbers or call sites (PyAV's ``str`` has both), and
    any other exception's without object addresses, kept short."""
    if isinstance(exc, av.FFmpegError) and exc.strerror:
        return str(exc.strerror)[:200]
    return _short_reason(exc)
