"""The signal types hashmatch knows, by name. Built-in ones are registered when
:mod:`hashmatch.signals` is imported; a deployment (or a test) may register more before it
builds its store, matcher or app, which read the registry then."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Final

from hashmatch.errors import UnknownAlgorithm
from hashmatch.signals.types import IndexKind, SignalType

_REGISTRY: dict[str, SignalType] = {}

#: What the store's columns hold, and so the most any signal type may declare: names of 16
#: characters, codes of 512 bits (128 hex digits).
MAX_NAME_CHARS: Final = 16
MAX_BITS: Final = 512
MAX_TEXT_CHARS: Final = MAX_BITS // 4
#: The largest ``max_distance`` a request may give. It only ever tightens a list's threshold,
#: and every threshold is bounded far below it.
MAX_DISTANCE: Final = 128


def register(signal: SignalType) -> SignalType:
    """Add a signal type: a new lowercase ASCII name, a code of whole bytes within the store's
    columns, thresholds within half the code."""
    name = signal.name
    short = len(name) <= MAX_NAME_CHARS
    if not (name.isascii() and name.isidentifier() and name == name.lower() and short):
        raise ValueError(
            f"signal names are lowercase identifiers of {MAX_NAME_CHARS} characters at most: "
            f"{name!r}"
        )
    if name in _REGISTRY:
        raise ValueError(f"a signal type named {name!r} is registered already")
    if signal.bits % 8 or not 0 < signal.bits <= MAX_BITS:
        raise ValueError(f"{name}: codes are 8 to {MAX_BITS} bits, a whole number of bytes")
    if signal.index_kind is IndexKind.EXACT and (signal.default_threshold or signal.max_threshold):
        raise ValueError(f"{name}: exact signals have no thresholds")
    if not 0 <= signal.default_threshold <= signal.max_threshold <= signal.bits // 2:
        raise ValueError(f"{name}: thresholds must satisfy 0 <= default <= max <= bits / 2")
    _REGISTRY[name] = signal
    return signal


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


@contextlib.contextmanager
def registered(signal: SignalType) -> Iterator[SignalType]:
    """``signal`` registered for the duration of a ``with`` block."""
    register(signal)
    try:
        yield signal
    finally:
        unregister(signal.name)


def get(name: str) -> SignalType:
    try:
        return _REGISTRY[name.strip().lower()]
    except (KeyError, AttributeError):
        known = ", ".join(_REGISTRY)
        raise UnknownAlgorithm(f"unknown algorithm {name!r}; known: {known}") from None


def parse_many(names: str | Iterable[str]) -> tuple[SignalType, ...]:
    """``"pdq,md5"`` or ``["pdq", "md5"]`` -> signal types in the given order, without repeats."""
    items = names.split(",") if isinstance(names, str) else list(names)
    parsed = [get(item) for item in items if item.strip()]
    if not parsed:
        raise UnknownAlgorithm("no algorithm given")
    return tuple(dict.fromkeys(parsed))


def all_signals() -> tuple[SignalType, ...]:
    """Every registered signal type, in registration order."""
    return tuple(_REGISTRY.values())


def hamming_signals() -> tuple[SignalType, ...]:
    """The signal types matched within a distance threshold (videos' frames included)."""
    return tuple(s for s in _REGISTRY.values() if s.perceptual)


def indexed_signals() -> tuple[SignalType, ...]:
    """The signal types with an index of their own (all but videos, whose frames are PDQ)."""
    return tuple(s for s in _REGISTRY.values() if s.indexed)
