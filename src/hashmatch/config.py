"""Settings from ``HASHMATCH_*`` environment variables.

Built once at an entry point (``hashmatch serve``, ``hashmatch hash``, the app factory's caller)
and passed down; nothing reads the environment at import time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hashmatch.errors import ConfigError
from hashmatch.matching.policy import ThresholdBounds
from hashmatch.media import MediaLimits
from hashmatch.media.video import VideoLimits

PREFIX = "HASHMATCH_"
_BOUND_PREFIX = PREFIX + "MAX_THRESHOLD_"


def _positive_int(raw: str) -> int:
    value = int(raw.replace("_", ""))
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a positive number")
    return value


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 < value < 65536:
        raise ValueError("must be between 1 and 65535")
    return value


def _name_values(raw: str) -> tuple[tuple[str, int], ...]:
    pairs = []
    for item in raw.split(","):
        if not item.strip():
            continue
        name, equals, value = item.partition("=")
        if not equals:
            raise ValueError("must be NAME=BITS pairs separated by commas, e.g. pdq=45,phash=6")
        pairs.append((name.strip().lower(), int(value)))
    names = [name for name, _ in pairs]
    if len(set(names)) < len(names):
        raise ValueError("names each signal type at most once")
    return tuple(sorted(pairs))


def _timezone(raw: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("must be an IANA time zone name, e.g. Asia/Taipei") from None
    return raw


def _per_signal_bounds(env: Mapping[str, str]) -> dict[str, int]:
    """``HASHMATCH_MAX_THRESHOLD_PDQ=45``: one signal type's bound in a variable of its own
    (the form of earlier releases, and of any signal type registered by a deployment)."""
    bounds: dict[str, int] = {}
    for name, raw in env.items():
        if name.startswith(_BOUND_PREFIX) and len(name) > len(_BOUND_PREFIX):
            try:
                bounds[name.removeprefix(_BOUND_PREFIX).lower()] = int(raw)
            except ValueError as exc:
                raise ConfigError(f"{name}={raw!r}: {exc}") from exc
    return bounds


def _log_level(raw: str) -> str:
    level = raw.strip().lower()
    if level not in {"critical", "error", "warning", "info", "debug"}:
        raise ValueError("must be one of critical, error, warning, info, debug")
    return level


def _wait_seconds(raw: str) -> float:
    value = float(raw)
    if not 0 < value <= 30:
        raise ValueError("must be more than 0 and at most 30 seconds")
    return value


def _optional_str(raw: str) -> str | None:
    return raw or None


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in {"1", "true", "yes", "0", "false", "no", ""}:
        raise ValueError("must be true or false")
    return value in {"1", "true", "yes"}


@dataclass(frozen=True)
class Settings:
    """Every tunable of the service. Field ``x`` is read from ``HASHMATCH_X``."""

    data_dir: Path = field(default=Path("index"), metadata={"parse": Path})
    database_url: str | None = field(default=None, metadata={"parse": _optional_str})
    host: str = field(default="127.0.0.1", metadata={"parse": str})
    port: int = field(default=8000, metadata={"parse": _port})
    log_level: str = field(default="info", metadata={"parse": _log_level})
    max_upload_bytes: int = field(default=50_000_000, metadata={"parse": _positive_int})
    max_pixels: int = field(default=100_000_000, metadata={"parse": _positive_int})
    #: Peak bytes one image's decode may allocate, estimated from its header.
    max_decode_bytes: int = field(default=192 * 1024 * 1024, metadata={"parse": _positive_int})
    #: Memory all the decodes of one process may hold at once (each reserves its estimate).
    decode_memory: int = field(default=256 * 1024 * 1024, metadata={"parse": _positive_int})
    #: Videos (``/v1/match`` and ``/v1/hash``): bytes of an upload, seconds of video, pixels of
    #: a frame, frames decoded and wall-clock seconds of decoding; a video stops at the first
    #: limit it crosses. One hash a ``video_seconds_per_hash`` seconds, as vPDQ samples.
    max_video_bytes: int = field(default=200_000_000, metadata={"parse": _positive_int})
    max_video_seconds: float = field(default=4 * 3600.0, metadata={"parse": _positive_float})
    max_video_frame_pixels: int = field(default=8192 * 4320, metadata={"parse": _positive_int})
    max_video_frames: int = field(default=1_000_000, metadata={"parse": _positive_int})
    max_video_decode_seconds: float = field(default=300.0, metadata={"parse": _positive_float})
    video_seconds_per_hash: float = field(default=1.0, metadata={"parse": _positive_float})
    #: Requests per second each API key may make (token bucket), and the burst it may spend.
    rate_limit: float = field(default=200.0, metadata={"parse": _positive_float})
    rate_burst: int = field(default=400, metadata={"parse": _positive_int})
    workers: int = field(default=1, metadata={"parse": _positive_int})
    #: Lower (or raise) the largest threshold lists may use, per signal type: "pdq=45,phash=6",
    #: or one variable a type, HASHMATCH_MAX_THRESHOLD_PDQ=45 (see
    #: :class:`hashmatch.matching.policy.ThresholdBounds`; unset: each type's own bound).
    max_thresholds: tuple[tuple[str, int], ...] = field(
        default=(), metadata={"parse": _name_values}
    )

    #: Seconds between writes of each process's in-memory match counts (stats).
    match_count_flush_seconds: float = field(default=5.0, metadata={"parse": _positive_float})
    #: Attempts at a withdrawal webhook before it is marked failed, and the first retry's
    #: delay (doubled after each failure, with jitter).
    webhook_max_attempts: int = field(default=10, metadata={"parse": _positive_int})
    webhook_retry_seconds: float = field(default=30.0, metadata={"parse": _positive_float})
    #: Let webhooks call loopback and private addresses (development and tests only: a
    #: platform's URL must not reach the instance's own network).
    webhook_private_targets: bool = field(default=False, metadata={"parse": _flag})

    #: This instance's name on the exchange (peers see it; unset: one made up and kept).
    instance_name: str | None = field(default=None, metadata={"parse": _optional_str})
    #: Whether ``serve`` runs the exchange fetcher (one per instance whatever the workers:
    #: a lease decides which); off when a dedicated ``hashmatch exchange run`` does it.
    exchange_fetcher: bool = field(default=True, metadata={"parse": _flag})
    #: Whether an organisation's admin key may add a peer at a private or loopback address
    #: over HTTP (the operator's CLI always may): off, so the API cannot probe the network.
    exchange_private_peers: bool = field(default=False, metadata={"parse": _flag})
    #: How long one long-poll of a peer's feed waits for a change, in seconds.
    exchange_wait: float = field(default=25.0, metadata={"parse": _wait_seconds})
    #: The longest wait between retries of a failing peer (they back off 1, 2, 4, ... s).
    exchange_max_backoff: float = field(default=300.0, metadata={"parse": _positive_float})
    #: How often what platforms did with mirrored entries is sent back to each origin (s).
    exchange_outcomes_every: float = field(default=60.0, metadata={"parse": _positive_float})
    #: Whether outcomes sent back to an origin name the platforms that reported them.
    exchange_share_platforms: bool = field(default=False, metadata={"parse": _flag})
    #: How often each peer's mirrors are verified against the origin, in seconds.
    exchange_verify_every: float = field(default=3600.0, metadata={"parse": _positive_float})

    #: The staff console (``/console``): minutes a session lives without a request, hours it
    #: lives at most, whether admins must have a second factor, whether cookies are marked
    #: Secure (set it behind a TLS-terminating proxy; requests over https always are), and the
    #: time zone pages use for a person who has not chosen one.
    console_idle_minutes: float = field(default=30.0, metadata={"parse": _positive_float})
    console_absolute_hours: float = field(default=12.0, metadata={"parse": _positive_float})
    console_require_totp_for_admins: bool = field(default=False, metadata={"parse": _flag})
    console_secure_cookies: bool = field(default=False, metadata={"parse": _flag})
    console_timezone: str = field(default="UTC", metadata={"parse": _timezone})

    def __post_init__(self) -> None:
        try:
            self.threshold_bounds  # noqa: B018 - built to be checked
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``environ`` (default: the process environment), then ``overrides``."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = PREFIX + f.name.upper()
            if name not in env:
                continue
            parse: Callable[[str], Any] = f.metadata["parse"]
            try:
                values[f.name] = parse(env[name])
            except ValueError as exc:
                raise ConfigError(f"{name}={env[name]!r}: {exc}") from exc
        bounds = _per_signal_bounds(env)
        if bounds:
            listed = dict(values.get("max_thresholds", ()))
            for name, value in bounds.items():
                if listed.setdefault(name, value) != value:
                    raise ConfigError(
                        f"{_BOUND_PREFIX}{name.upper()}={value} contradicts "
                        f"{PREFIX}MAX_THRESHOLDS ({name}={listed[name]})"
                    )
            values["max_thresholds"] = tuple(sorted(listed.items()))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def media_limits(self) -> MediaLimits:
        return MediaLimits(
            max_bytes=self.max_upload_bytes,
            max_pixels=self.max_pixels,
            max_decode_bytes=self.max_decode_bytes,
        )

    @property
    def video_limits(self) -> VideoLimits:
        return VideoLimits(
            max_bytes=self.max_video_bytes,
            max_seconds=self.max_video_seconds,
            max_frame_pixels=self.max_video_frame_pixels,
            max_frames=self.max_video_frames,
            max_decode_seconds=self.max_video_decode_seconds,
        )

    @property
    def threshold_bounds(self) -> ThresholdBounds:
        return ThresholdBounds(self.max_thresholds)
