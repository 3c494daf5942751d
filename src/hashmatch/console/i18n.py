"""The console's languages: message catalogs (gettext ``.po`` files, read with Babel), the
choice of language per request, and dates and numbers in the person's locale and time zone.

Catalogs are the ``.po`` files in ``locales/`` (no compiled ``.mo`` to keep in step), read once
per process. English is the source language: its catalog holds every message with itself as
the translation, so a test can tell an untranslated message in any catalog.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, dates, numbers
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALES_DIR: Final = Path(__file__).parent / "locales"
DOMAIN: Final = "messages"
DEFAULT_LOCALE: Final = "en"
#: Every language the console speaks, by its code, with its name in itself.
LANGUAGES: Final[dict[str, str]] = {"en": "English", "zh_TW": "繁體中文", "ko": "한국어"}
#: ``Accept-Language`` tags (lowercase) that choose each language.
_TAGS: Final[dict[str, str]] = {
    "en": "en",
    "zh-tw": "zh_TW",
    "zh-hant": "zh_TW",
    "zh-hk": "zh_TW",
    "zh-mo": "zh_TW",
    "zh": "zh_TW",
    "ko": "ko",
}


def po_path(locale: str) -> Path:
    return LOCALES_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def translations(locale: str) -> Translations:
    """The catalog of ``locale``, compiled in memory from its ``.po`` file."""
    with po_path(locale).open("rb") as source:
        catalog = read_po(source, locale=locale, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def known(locale: str | None) -> str | None:
    return locale if locale in LANGUAGES else None


def negotiate(accept_language: str | None, chosen: Iterable[str | None] = ()) -> str:
    """The language for a request: the first ``chosen`` one we speak (the person's setting,
    the switcher's cookie), else the browser's best by quality, else English."""
    for locale in chosen:
        if known(locale):
            return str(locale)
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")[:32]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        tag = tag.strip().lower()
        locale = _TAGS.get(tag) or _TAGS.get(tag.split("-")[0])
        if tag.startswith("zh-cn") or tag.startswith("zh-hans") or tag == "zh-sg":
            locale = None  # Simplified Chinese readers are not served Traditional by default
        if locale is not None and quality > 0:
            ranked.append((-quality, position, locale))
    return min(ranked)[2] if ranked else DEFAULT_LOCALE


def zone(name: str | None, fallback: str = "UTC") -> ZoneInfo:
    for candidate in (name, fallback, "UTC"):
        if not candidate:
            continue
        try:
            return ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return ZoneInfo("UTC")


@dataclass(frozen=True)
class Formats:
    """Dates and numbers for one person: their language and time zone."""

    locale: str
    timezone: ZoneInfo

    @property
    def babel_locale(self) -> Locale:
        return Locale.parse(self.locale)

    def datetime(self, value: dt.datetime | str | None) -> str:
        if value is None or value == "":
            return "—"
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return dates.format_datetime(
            value, "medium", tzinfo=self.timezone, locale=self.babel_locale
        )

    def date(self, value: dt.date | dt.datetime | None) -> str:
        if value is None:
            return "—"
        if isinstance(value, dt.datetime):
            value = value.astimezone(self.timezone).date()
        return dates.format_date(value, "medium", locale=self.babel_locale)

    def number(self, value: int | float | None) -> str:
        if value is None:
            return "—"
        return numbers.format_decimal(value, locale=self.babel_locale)

    def percent(self, value: float) -> str:
        return numbers.format_percent(value, "#,##0.#%", locale=self.babel_locale)
