"""Keeping the console's message catalogs in step with its templates.

``python -m hashmatch.console.catalogs`` extracts every message from the templates (Jinja's
Babel extractor), adds new ones to each ``.po`` file (English filled with the message itself;
the others left empty for a translator), and drops messages no template uses any more. The
test suite fails while a catalog lacks a translation, so nothing reaches a page untranslated.
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from hashmatch.console import i18n

SOURCES = Path(__file__).parent
#: Templates and the console's Python modules (messages marked with ``gettext_noop``-style
#: ``_()`` in Python are not used: every message lives in a template).
METHODS = [("templates/**.html", "jinja2")]
OPTIONS = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "trim_blocks": "True"}}


def extract() -> Catalog:
    catalog = Catalog(domain=i18n.DOMAIN)
    for filename, lineno, message, comments, context in extract_from_dir(
        str(SOURCES), METHODS, OPTIONS, keywords={"_": None, "gettext": None, "ngettext": (1, 2)}
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def read(locale: str) -> Catalog:
    path = i18n.po_path(locale)
    if not path.exists():
        return Catalog(locale=locale, domain=i18n.DOMAIN)
    with path.open("rb") as source:
        return read_po(source, locale=locale, domain=i18n.DOMAIN)


def update() -> dict[str, int]:
    """Bring every catalog in step with the templates; returns untranslated counts."""
    missing: dict[str, int] = {}
    for locale in i18n.LANGUAGES:
        catalog = read(locale)
        # A fresh template for each: update() keeps the template's message objects.
        catalog.update(extract(), no_fuzzy_matching=True)
        catalog.obsolete.clear()
        for message in catalog:
            if not message.id:
                continue
            if locale == i18n.DEFAULT_LOCALE:
                message.string = message.id
            message.flags.discard("fuzzy")
        missing[locale] = sum(1 for m in catalog if m.id and not m.string)
        path = i18n.po_path(locale)
        path.parent.mkdir(parents=True, exist_ok=True)
        catalog.project, catalog.version = "hashmatch", "console"
        catalog.copyright_holder = "hashmatch"
        catalog.msgid_bugs_address = ""
        catalog.language_team = i18n.LANGUAGES[locale]
        catalog.fuzzy = False
        with path.open("wb") as out:
            write_po(out, catalog, width=100, sort_output=True, include_lineno=False)
    return missing


def main() -> int:
    missing = update()
    for locale, count in missing.items():
        print(f"{locale}: {count} untranslated", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
