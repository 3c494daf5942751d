"""Videos on the matching routes: told from images by their bytes, hashed in memory as vPDQ
(frames sampled as Meta's reference samples them) beside the digests of their bytes, and
described in responses.

A submitted video is decoded from memory and never written anywhere, like an image. Decoding is
long beside an image's (seconds, not milliseconds), so each worker process decodes one video at
a time (:data:`VIDEO_DECODERS`), with FFmpeg's own threads, and images keep their decoders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from hashmatch.api.models import VideoOut
from hashmatch.config import Settings
from hashmatch.errors import MediaTooLarge
from hashmatch.matching.video import QueryFrames
from hashmatch.media.video import VideoInfo, identify_video
from hashmatch.signals import MD5, SHA256, VPDQ, Hash, Query
from hashmatch.signals.vpdq import FrameHash, format_frames, frames_digest, hash_video

#: Videos decoded at once by one worker process.
VIDEO_DECODERS: Final = 1


@dataclass(frozen=True)
class HashedVideo:
    info: VideoInfo
    frames: tuple[FrameHash, ...]
    digests: list[Hash]
    seconds_per_hash: float

    @property
    def query(self) -> QueryFrames:
        return QueryFrames.of(self.frames)

    @property
    def digest_queries(self) -> list[Query]:
        return [Query(value) for value in self.digests]

    def hashes(self) -> dict[str, dict[str, Any]]:
        """The ``hashes`` of a response: the video's digests and its vPDQ digest (the hash
        of its frame set, as a listed video's entry carries it)."""
        shown = {
            value.algorithm.name: {"algorithm": value.algorithm.name, "value": value.hex}
            for value in self.digests
        }
        shown[VPDQ.name] = {"algorithm": VPDQ.name, "value": frames_digest(self.frames).hex()}
        return shown

    def describe(self, *, with_frames: bool = False) -> VideoOut:
        return VideoOut(
            container=self.info.container,
            codec=self.info.codec,
            width=self.info.width,
            height=self.info.height,
            fps=round(self.info.fps, 3),
            duration=None if self.info.duration is None else round(self.info.duration, 3),
            seconds_per_hash=self.seconds_per_hash,
            frames_hashed=len(self.frames),
            frames_kept=len(self.query),
            frames=format_frames(self.frames).splitlines() if with_frames else None,
        )


def is_video(data: bytes) -> bool:
    return identify_video(data) is not None


def hash_upload(data: bytes, settings: Settings) -> HashedVideo:
    """vPDQ and the digests of a submitted video (run in a worker thread)."""
    limits = settings.video_limits
    if len(data) > limits.max_bytes:
        raise MediaTooLarge(f"video of {len(data)} bytes is over the limit of {limits.max_bytes}")
    hashed = hash_video(
        data, seconds_per_hash=settings.video_seconds_per_hash, limits=settings.video_limits
    )
    assert hashed.info is not None  # hash_video always describes what it decoded
    digests = [MD5.hash_bytes(data), SHA256.hash_bytes(data)]
    return HashedVideo(hashed.info, hashed.frames, digests, settings.video_seconds_per_hash)
