"""The Traffic Light Protocol (FIRST TLP 2.0) labels a list carries, and what each allows.

The label travels with the list to every instance that mirrors it, and the receiving instance
enforces it:

- ``RED`` and ``AMBER+STRICT``: matched only for the receiving organisation itself; a mirror
  with either label can be offered to nobody, on this instance or beyond it;
- ``AMBER``: the receiving organisation may offer it to its own platforms (organisations on its
  instance), never to another instance;
- ``GREEN`` and ``CLEAR``: may be re-shared, to local organisations and to peer instances.

A local operator may make a mirror's label stricter, never looser.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from hashmatch.errors import InvalidField


class Tlp(StrEnum):
    CLEAR = "CLEAR"
    GREEN = "GREEN"
    AMBER = "AMBER"
    AMBER_STRICT = "AMBER+STRICT"
    RED = "RED"

    @property
    def strictness(self) -> int:
        return _ORDER.index(self)

    @property
    def offerable(self) -> bool:
        """Whether a list mirrored under this label may be offered to local organisations."""
        return self in (Tlp.CLEAR, Tlp.GREEN, Tlp.AMBER)

    @property
    def re_exportable(self) -> bool:
        """Whether a list mirrored under this label may be sent on to another instance."""
        return self in (Tlp.CLEAR, Tlp.GREEN)


_ORDER: Final = (Tlp.CLEAR, Tlp.GREEN, Tlp.AMBER, Tlp.AMBER_STRICT, Tlp.RED)
#: A new list's label unless its owner says otherwise: its owner's platforms, nobody beyond.
DEFAULT_TLP: Final = Tlp.AMBER


def parse(value: object, field: str = "tlp") -> Tlp:
    """A label as FIRST writes it (``TLP:AMBER+STRICT`` or ``amber+strict``)."""
    if not isinstance(value, str):
        raise InvalidField(field, "must be a TLP label: " + ", ".join(t.value for t in Tlp))
    text = value.strip().upper().removeprefix("TLP:").replace("_", "+")
    try:
        return Tlp(text)
    except ValueError:
        labels = ", ".join(t.value for t in Tlp)
        raise InvalidField(field, f"unknown TLP label {value[:32]!r}; one of {labels}") from None


def stricter(a: Tlp, b: Tlp) -> Tlp:
    return a if a.strictness >= b.strictness else b
