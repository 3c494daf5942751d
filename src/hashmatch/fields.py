"""What a stored text field may hold: one rule per field, the same on every input path.

JSON bodies, CSV/JSON-lines/tx files, the CLI and the console all end in the store, and the
store checks every value here before it reaches SQL. A value that breaks a rule is an
:class:`~hashmatch.errors.InvalidField` naming the field (HTTP 422, exit status 2), never a
database error: PostgreSQL refuses NUL characters and lone surrogates outright, and over-long
values would otherwise fail one database and pass the other.

Names that decide who sees what (organisations, lists) are ASCII identifiers: a Cyrillic "а"
in ``nсс-tw`` must not make a second organisation that looks like the first.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Final

from hashmatch.errors import InvalidField

MAX_ORGANISATION_CHARS: Final = 64
MAX_LIST_NAME_CHARS: Final = 128
MAX_CATEGORY_CHARS: Final = 32
MAX_SOURCE_CHARS: Final = 256
MAX_JURISDICTION_CHARS: Final = 64
MAX_DESCRIPTION_CHARS: Final = 2000
MAX_REASON_CHARS: Final = 2000
MAX_REFERENCE_CHARS: Final = 256
MAX_LABEL_CHARS: Final = 64
MAX_LABELS: Final = 32
MAX_ACTOR_CHARS: Final = 128
MAX_GROUP_CHARS: Final = 128

_ORGANISATION: Final = re.compile(r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?")
_LIST_NAME: Final = re.compile(r"[A-Za-z0-9._-]+")
#: A mirror of a peer's list: ``peer:list`` (the peer's name, then the list's at its origin).
_MIRROR_NAME: Final = re.compile(r"[a-z0-9][a-z0-9._-]*:[A-Za-z0-9._-]+")
_CATEGORY: Final = re.compile(r"[a-z0-9][a-z0-9_-]*")
_MULTILINE_OK: Final = frozenset("\n\t")
#: Zero-width (non-)joiners are format characters that scripts and emoji need.
_JOINERS: Final = frozenset("\u200c\u200d")


def _clip(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def printable(text: str) -> str:
    """``text`` safe to echo in a response or a log: lone surrogates (which JSON escapes can
    carry, and which cannot be encoded) written as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _identifier(
    value: object, field: str, pattern: re.Pattern[str], max_chars: int, rule: str, *, fold: bool
) -> str:
    text = _string(value, field)
    if fold:
        text = text.strip().lower()
    if not 1 <= len(text) <= max_chars or not pattern.fullmatch(text):
        raise InvalidField(field, f"{rule.format(max_chars)}; got {_clip(text)}")
    return text


def organisation(value: object, field: str = "organisation") -> str:
    """An organisation name, case-normalised: ``KCSC`` and ``kcsc`` are one organisation."""
    rule = (
        "organisation names are 1-{} ASCII letters, digits, '.', '_' or '-', starting and "
        "ending with a letter or digit"
    )
    return _identifier(value, field, _ORGANISATION, MAX_ORGANISATION_CHARS, rule, fold=True)


def organisations(values: Iterable[object], field: str) -> tuple[str, ...]:
    """Each name checked, duplicates dropped, order kept."""
    names = (organisation(value, f"{field}[{i}]") for i, value in enumerate(values))
    return tuple(dict.fromkeys(names))


def list_name(value: object, field: str = "name") -> str:
    rule = "list names are 1-{} ASCII letters, digits, '.', '_' or '-'"
    return _identifier(value, field, _LIST_NAME, MAX_LIST_NAME_CHARS, rule, fold=False)


def is_list_name(value: str) -> bool:
    """A local list's name, or a mirror's (``peer:list``)."""
    if not 1 <= len(value) <= MAX_LIST_NAME_CHARS:
        return False
    return _LIST_NAME.fullmatch(value) is not None or _MIRROR_NAME.fullmatch(value) is not None


def mirror_name(peer: str, origin_list: str) -> str:
    """The local name of ``peer``'s list ``origin_list``; refused if it is no list name."""
    name = f"{peer}:{list_name(origin_list, 'list')}"
    if not is_list_name(name):
        raise InvalidField("list", f"{name[:140]!r} is too long for a mirror's name")
    return name


def category(value: object, field: str = "category") -> str:
    rule = "a category is 1-{} lowercase ASCII letters, digits, '_' or '-' (csam, ncii, ...)"
    return _identifier(value, field, _CATEGORY, MAX_CATEGORY_CHARS, rule, fold=True)


def text(value: object, field: str, max_chars: int, *, multiline: bool = False) -> str:
    """Free text: at most ``max_chars`` characters, no NUL or other control characters (tabs
    and newlines only where ``multiline``), valid Unicode (no lone surrogates)."""
    if isinstance(value, str) and value.isascii() and value.isprintable():
        # Printable ASCII has no control character and no surrogate: the common case, checked
        # in C (imports and mirrors check millions of references).
        if len(value) > max_chars:
            raise InvalidField(field, f"at most {max_chars} characters, got {len(value)}")
        return value
    result = _string(value, field)
    if len(result) > max_chars:
        raise InvalidField(field, f"at most {max_chars} characters, got {len(result)}")
    for position, char in enumerate(result):
        if _is_control(char) and not (multiline and char in _MULTILINE_OK):
            raise InvalidField(
                field, f"control character U+{ord(char):04X} at position {position + 1}"
            )
    return result


def optional_text(value: object, field: str, max_chars: int) -> str | None:
    """One-line text, stripped; blank is ``None``."""
    if value is None:
        return None
    stripped = text(value, field, max_chars).strip()
    return stripped or None


def reference(value: object, field: str = "reference") -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return optional_text(value, field, MAX_REFERENCE_CHARS)


def labels(values: Iterable[object], field: str = "labels") -> tuple[str, ...]:
    """Labels stripped, blank ones and repeats dropped, at most :data:`MAX_LABELS`."""
    found: dict[str, None] = {}
    count = 0
    for position, value in enumerate(values):
        label = text(value, f"{field}[{position}]", 1 << 30).strip()
        if len(label) > MAX_LABEL_CHARS:
            raise InvalidField(
                f"{field}[{position}]",
                f"label longer than {MAX_LABEL_CHARS} characters: {_clip(label)}",
            )
        if label and label not in found:
            found[label] = None
            count += 1
    if count > MAX_LABELS:
        raise InvalidField(field, f"too many labels: {count} (at most {MAX_LABELS})")
    return tuple(found)


def reason(value: object, field: str = "reason") -> str:
    result = text(value, field, MAX_REASON_CHARS, multiline=True).strip()
    if not result:
        raise InvalidField(field, "a reason is required")
    return result


def _string(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidField(field, f"must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidField(
            field, f"invalid Unicode (lone surrogate) at position {exc.start + 1}"
        ) from None
    return value


def _is_control(char: str) -> bool:
    # Cc: C0/C1 controls (NUL among them); Cs cannot occur after _string; Cf (format marks
    # such as U+202E, which reverses how the rest of a line is shown) would let a name or
    # reference look like another in the console and the audit log.
    return unicodedata.category(char) in ("Cc", "Cf") and char not in _JOINERS


#: Why an entry was withdrawn, as mirrors and platforms learn it: the free-text reason may name
#: a victim and never leaves the list's owner.
WITHDRAWAL_CLASSES: Final = ("victim_request", "listed_in_error", "legal", "expired", "other")


def withdrawal_class(value: object) -> str:
    if value not in WITHDRAWAL_CLASSES:
        raise InvalidField("reason_class", f"must be one of {', '.join(WITHDRAWAL_CLASSES)}")
    return str(value)
