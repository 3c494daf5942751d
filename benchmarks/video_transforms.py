"""What people do to a known video before reposting it: the video benchmark's transforms.

Each transform takes the bytes of a video and returns the bytes of the upload, made in memory
with PyAV (FFmpeg's libraries in its wheel; nothing is written to disk): every frame decoded,
changed, and encoded again as H.264 in MP4, as a platform's re-encode or an editing app would.
Sizes are relative to the video, so that the same transform means the same thing at 176x144 and
at 1080p. A re-encode is part of every transform (CRF 23, libx264's default quality), so each
one measures its change on top of one generation of lossy coding, never alone.

Also here: :func:`inside_longer`, the video shown whole between two stretches of other videos
(a compilation: it takes the filler footage as well as the video, so it stands beside
:data:`TRANSFORMS` rather than in it); :func:`still_video`, a photograph shown as a few seconds of
video (slow zoom and sensor-like noise), for the cross-modal check; and :func:`loop_remux`, a long
video made from a short one by copying its packets with shifted timestamps (no decoding, no
encoding).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

Transform = Callable[[bytes], bytes]

#: libx264's default quality, and a speed preset that keeps the benchmark within minutes.
CRF = 23
PRESET = "veryfast"
LOW_BITRATE = 300_000
#: Frame rates a video is moved to: 24 fps from 27 fps or more (frames dropped), else 30 fps
#: (frames repeated).
HIGH_FPS, LOW_FPS = 30, 24
CLIP_SECONDS = 10.0
DOWNSCALE_SIDE = 360
LOGO_SHARE = 0.10
LOGO_OPACITY = 0.6
#: Unrelated footage before and after the video inside a compilation, each at least this long
#: and at least as long as the video (which is then at most a third of the upload).
FILLER_SECONDS = 20.0


@dataclass(frozen=True)
class Source:
    """What a transform needs to know of its input video."""

    width: int
    height: int
    fps: float
    duration: float


def _open(data: bytes) -> av.container.InputContainer:
    return av.open(io.BytesIO(data), mode="r")


def probe(data: bytes) -> Source:
    with _open(data) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        duration = (
            float(stream.duration * stream.time_base)
            if stream.duration and stream.time_base
            else (container.duration or 0) / 1e6
        )
        return Source(stream.codec_context.width, stream.codec_context.height, fps, duration)


def frames(data: bytes) -> Iterator[tuple[float, av.VideoFrame]]:
    """Every decoded frame with its time in seconds from the first frame."""
    with _open(data) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        first: float | None = None
        index = 0
        for packet in container.demux(stream):
            # Ogg's Theora repeats a frame with an empty packet, which FFmpeg's decoder
            # refuses; the empty packet at the end (no time) is the one that drains it.
            if packet.size == 0 and packet.pts is not None:
                continue
            for frame in packet.decode():
                moment = frame.time if frame.time is not None else index / fps
                if first is None:
                    first = moment
                index += 1
                yield moment - first, frame


def _even(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def encode(
    pictures: Iterator[av.VideoFrame | np.ndarray],
    width: int,
    height: int,
    fps: float,
    *,
    bitrate: int | None = None,
) -> bytes:
    """Frames (PyAV frames of any format and size, or RGB arrays) -> H.264 in MP4 at
    ``width`` x ``height`` (even) and a constant ``fps``, CRF 23 or an average ``bitrate``."""
    buffer = io.BytesIO()
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(buffer, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = 1 / rate
        options = {"preset": PRESET}
        if bitrate is None:
            options["crf"] = str(CRF)
        else:
            stream.codec_context.bit_rate = bitrate
            options |= {"maxrate": str(bitrate * 2), "bufsize": str(bitrate * 2)}
        stream.codec_context.options = options
        for index, picture in enumerate(pictures):
            frame = (
                av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
                if isinstance(picture, np.ndarray)
                else picture
            )
            frame = frame.reformat(width=width, height=height, format="yuv420p")
            frame.pts, frame.time_base = index, 1 / rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()


def _rewrite(
    data: bytes,
    change: Callable[[av.VideoFrame], av.VideoFrame | np.ndarray] | None = None,
    *,
    size: tuple[int, int] | None = None,
    bitrate: int | None = None,
) -> bytes:
    source = probe(data)
    width, height = size or (_even(source.width), _even(source.height))
    pictures = (frame if change is None else change(frame) for _, frame in frames(data))
    return encode(pictures, width, height, source.fps, bitrate=bitrate)


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    # Even sides: H.264 in 4:2:0 needs them; a source with an odd side loses a row or column.
    array = frame.to_ndarray(format="rgb24")
    return array[: _even(array.shape[0]), : _even(array.shape[1])]


# --- the transforms ---------------------------------------------------------------------------


def reencode_300k(data: bytes) -> bytes:
    """The same frames at an average 300 kbit/s: what a messaging app sends."""
    return _rewrite(data, bitrate=LOW_BITRATE)


def downscale_360p(data: bytes) -> bytes:
    """Down to a short side of 360 px; a video already at or under it is halved."""
    source = probe(data)
    short = min(source.width, source.height)
    scale = DOWNSCALE_SIDE / short if short > DOWNSCALE_SIDE else 0.5
    size = (_even(source.width * scale), _even(source.height * scale))
    return _rewrite(data, size=size)


def frame_rate(data: bytes) -> bytes:
    """To 24 fps (from 27 fps or more: frames dropped) or to 30 fps (from less: frames
    repeated); each output instant shows the last source frame at or before it."""
    source = probe(data)
    target = LOW_FPS if source.fps >= 27 else HIGH_FPS

    def resampled() -> Iterator[av.VideoFrame]:
        index, previous = 0, None
        for moment, frame in frames(data):
            while previous is not None and index / target < moment:
                yield previous
                index += 1
            previous = frame
        end = source.duration or (index + 1) / target
        while previous is not None and index / target < end:
            yield previous
            index += 1

    return encode(resampled(), _even(source.width), _even(source.height), target)


def clip_window(duration: float) -> tuple[float, float]:
    """The clip taken from a video of ``duration`` seconds: 10 s from the middle, or the
    middle half of a video shorter than 10 s."""
    if duration >= CLIP_SECONDS:
        start = (duration - CLIP_SECONDS) / 2
        return start, start + CLIP_SECONDS
    return duration / 4, duration * 3 / 4


def clip_10s(data: bytes) -> bytes:
    """Ten seconds from the middle (the middle half of a shorter video), re-encoded."""
    source = probe(data)
    times = [moment for moment, _ in frames(data)]
    duration = max(source.duration, times[-1] if times else 0.0)
    start, stop = clip_window(duration)
    kept = (frame for moment, frame in frames(data) if start <= moment < stop)
    return encode(kept, _even(source.width), _even(source.height), source.fps)


def letterbox(data: bytes) -> bytes:
    """Black bars to change the shape: a picture wider than 4:3 into a 4:3 frame (bars above
    and below), a narrower one into 16:9 (bars beside it)."""
    source = probe(data)
    width, height = _even(source.width), _even(source.height)
    if width / height > 4 / 3 + 0.01:
        out_w, out_h = width, _even(width * 3 / 4)
    else:
        out_w, out_h = _even(height * 16 / 9), height
    top, left = (out_h - height) // 2, (out_w - width) // 2

    def boxed(frame: av.VideoFrame) -> np.ndarray:
        canvas = np.zeros((out_h, out_w, 3), dtype=np.uint8)
        canvas[top : top + height, left : left + width] = _rgb(frame)
        return canvas

    return _rewrite(data, boxed, size=(out_w, out_h))


def mirror(data: bytes) -> bytes:
    """Flipped left to right (vPDQ hashes frames as they are: no flipped variants)."""
    return _rewrite(data, lambda frame: _rgb(frame)[:, ::-1])


def logo_layer(width: int, height: int) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    """A channel's logo in the lower right corner, ~10% of the picture: a light rectangle
    with a dark border, a round mark and two lines of text, at 60% opacity. Returns where it
    goes (rows, columns), its RGB there and its opacity (0..1) per pixel."""
    box_w = min(width, round(width * math.sqrt(LOGO_SHARE * 1.6)))
    box_h = min(height, round(LOGO_SHARE * width * height / max(box_w, 1)))
    layer = Image.new("RGBA", (box_w, box_h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    alpha = round(255 * LOGO_OPACITY)
    border = max(1, box_h // 20)
    draw.rectangle(
        (0, 0, box_w - 1, box_h - 1),
        fill=(240, 240, 240, alpha),
        outline=(30, 30, 30, alpha),
        width=border,
    )
    mark = box_h * 2 // 3
    corner = box_h // 6
    draw.ellipse((corner, corner, corner + mark, corner + mark), fill=(200, 30, 40, alpha))
    font = ImageFont.load_default(size=max(8, box_h // 5))
    draw.text((box_h, box_h // 8), "REPOST.TV", font=font, fill=(20, 20, 20, alpha))
    draw.text((box_h, box_h // 2), "@clips_daily 24/7", font=font, fill=(60, 60, 60, alpha))
    rgba = np.asarray(layer, dtype=np.float32)
    x0, y0 = width - box_w - width // 40, height - box_h - height // 40
    where = (slice(y0, y0 + box_h), slice(x0, x0 + box_w))
    return where, rgba[..., :3], rgba[..., 3:] / 255


def logo(data: bytes) -> bytes:
    """A semi-opaque logo (a light box with a mark and text) over the lower right corner,
    ~10% of the picture, on every frame."""
    source = probe(data)
    where, colour, opacity = logo_layer(_even(source.width), _even(source.height))
    ink = colour * opacity

    def stamped(frame: av.VideoFrame) -> np.ndarray:
        rgb = _rgb(frame)
        rgb[where] = (rgb[where] * (1 - opacity) + ink).astype(np.uint8)
        return rgb

    return _rewrite(data, stamped)


# --- a compilation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Compilation:
    """An upload holding the video whole between two stretches of other footage."""

    data: bytes
    #: The fillers shown (indices into the ``fillers`` given), in order; one may show twice
    #: when the footage given is shorter than the stretches.
    fillers: tuple[int, ...]
    before: float  # seconds of filler before the video
    video: float  # seconds of the video (its decoded frames at its frame rate)
    after: float  # seconds of filler after it

    @property
    def share(self) -> float:
        """The video's share of the upload's duration."""
        return self.video / (self.before + self.video + self.after)


def fitted(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
    """The frame scaled to fit ``width`` x ``height`` with its shape kept, centred on black
    bars (RGB)."""
    scale = min(width / frame.width, height / frame.height)
    w = min(width, max(2, round(frame.width * scale)))
    h = min(height, max(2, round(frame.height * scale)))
    picture = frame.reformat(width=w, height=h, format="rgb24").to_ndarray()
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    top, left = (height - h) // 2, (width - w) // 2
    canvas[top : top + h, left : left + w] = picture
    return canvas


def _footage(
    fillers: Sequence[bytes], first: int, fps: float, width: int, height: int, shown: list[int]
) -> Iterator[np.ndarray]:
    """Endless filler footage at ``fps``, fitted to ``width`` x ``height``: each filler whole
    from its first frame, then the next (from ``fillers[first]``, round and round), each output
    instant showing the filler's last frame at or before it. A filler that cannot be decoded is
    skipped; ``shown`` collects the fillers that gave frames."""
    count = len(fillers)
    failed = 0
    for turn in range(first, first + 1_000_000):
        which = turn % count
        gave = False
        index, previous = 0, None
        try:
            for moment, frame in frames(fillers[which]):
                while previous is not None and index / fps < moment:
                    if not gave:
                        shown.append(which)
                        gave = True
                    yield previous
                    index += 1
                previous = fitted(frame, width, height)
        except (av.FFmpegError, ValueError):
            previous = None  # its decoded part stands; the rest of it is skipped
        if previous is not None:  # the last frame, for one frame time
            if not gave:
                shown.append(which)
                gave = True
            yield previous
        failed = 0 if gave else failed + 1
        if failed >= count:
            raise ValueError("no filler video could be decoded")


def inside_longer(
    data: bytes, fillers: Sequence[bytes], *, seconds: float = FILLER_SECONDS
) -> Compilation:
    """The video whole, between two stretches of other videos (``fillers``, taken in turn,
    each whole from its start): each stretch ``max(seconds, the video's duration)`` long, so
    that the video is at most a third of the upload. The fillers are scaled (shape kept, on
    black bars) to the video's size and shown at its frame rate; one H.264 stream, CRF 23."""
    if not fillers:
        raise ValueError("a compilation needs filler videos")
    source = probe(data)
    width, height = _even(source.width), _even(source.height)
    count = sum(1 for _ in frames(data))
    own = count / source.fps
    stretch = max(seconds, own)
    filler_frames = round(stretch * source.fps)
    shown: list[int] = []

    def pictures() -> Iterator[av.VideoFrame | np.ndarray]:
        before = _footage(fillers, 0, source.fps, width, height, shown)
        for _ in range(filler_frames):
            yield next(before)
        after_first = shown[-1] + 1 if shown else 0
        yield from (frame for _, frame in frames(data))
        after = _footage(fillers, after_first, source.fps, width, height, shown)
        for _ in range(filler_frames):
            yield next(after)

    made = encode(pictures(), width, height, source.fps)
    return Compilation(
        made, tuple(shown), filler_frames / source.fps, own, filler_frames / source.fps
    )


TRANSFORMS: dict[str, Transform] = {
    "reencode_300k": reencode_300k,
    "downscale_360p": downscale_360p,
    "frame_rate": frame_rate,
    "clip_10s": clip_10s,
    "letterbox": letterbox,
    "logo": logo,
    "mirror": mirror,
}
#: Transforms vPDQ is not designed to survive: measured and reported apart, never hidden.
NOT_DESIGNED_FOR = ("mirror",)


# --- cross-modal and long videos --------------------------------------------------------------


def still_video(
    image: Image.Image,
    rng: np.random.Generator,
    *,
    seconds: float = 5.0,
    fps: int = 25,
    max_size: tuple[int, int] = (1280, 720),
) -> bytes:
    """A photograph shown as ``seconds`` of H.264: fitted into ``max_size``, slowly zoomed in
    (to 105% by the end, about the centre) with mild noise (sigma 3) on every frame."""
    picture = image.convert("RGB")
    picture.thumbnail(max_size, Image.Resampling.LANCZOS)
    width, height = _even(picture.width), _even(picture.height)
    picture = picture.resize((width, height), Image.Resampling.LANCZOS)
    count = round(seconds * fps)
    # A few noise fields, cycled: drawing a fresh one per frame would cost more than encoding.
    noise = [rng.normal(0, 3, (height, width, 3)).astype(np.float32) for _ in range(5)]

    def shown() -> Iterator[np.ndarray]:
        for index in range(count):
            zoom = 1 + 0.05 * index / max(count - 1, 1)
            w, h = width / zoom, height / zoom
            box = ((width - w) / 2, (height - h) / 2, (width + w) / 2, (height + h) / 2)
            frame = np.asarray(picture.resize((width, height), Image.Resampling.BILINEAR, box=box))
            yield np.clip(frame + noise[index % len(noise)], 0, 255).astype(np.uint8)

    return encode(shown(), width, height, fps)


def scaled(data: bytes, width: int, height: int, *, bitrate: int | None = None) -> bytes:
    """The video re-encoded at ``width`` x ``height`` (CRF 23, or an average ``bitrate``)."""
    return _rewrite(data, size=(_even(width), _even(height)), bitrate=bitrate)


def loop_remux(data: bytes, seconds: float, out: io.BufferedIOBase | io.BytesIO) -> float:
    """Write to ``out`` an MP4 of ``seconds`` that plays ``data`` (H.264 in MP4, its first
    packet a keyframe) over and over: its packets copied, their timestamps shifted by one
    period a time, nothing decoded or encoded; cut in decode order at ``seconds``. Returns the
    duration written."""
    with _open(data) as source:
        stream = source.streams.video[0]
        # The muxer takes each packet it writes: keep their payloads and times, make anew.
        packets = [
            (bytes(p), p.pts, p.dts if p.dts is not None else p.pts, p.duration or 0, p.is_keyframe)
            for p in source.demux(stream)
            if p.size and p.pts is not None
        ]
        base = stream.time_base
        assert base is not None, "a demuxed stream has a time base"
        first = min(pts for _, pts, _, _, _ in packets)
        period = max(pts + duration for _, pts, _, duration, _ in packets) - first
        end = round(seconds / base) + first
        with av.open(out, mode="w", format="mp4") as sink:
            copy = sink.add_stream_from_template(stream)
            for loop in range(math.ceil(seconds / float(period * base))):
                shift = loop * period
                for payload, pts, dts, duration, keyframe in packets:
                    if dts + shift >= end:
                        break
                    packet = av.Packet(payload)
                    packet.pts, packet.dts, packet.duration = pts + shift, dts + shift, duration
                    packet.time_base, packet.is_keyframe, packet.stream = base, keyframe, copy
                    sink.mux(packet)
        return seconds
