"""Every message of the console is translated, in every catalog, with the same placeholders;
and the catalogs are in step with the templates (``python -m hashmatch.console.catalogs``)."""

from __future__ import annotations

import re

import pytest
from babel.messages.catalog import Catalog

from hashmatch.console import catalogs, i18n
from hashmatch.console.web import environment

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _ids(catalog: Catalog) -> set[str]:
    return {str(message.id) for message in catalog if message.id}


def test_the_catalogs_hold_exactly_the_messages_of_the_templates() -> None:
    wanted = _ids(catalogs.extract())
    assert len(wanted) > 50
    for locale in i18n.LANGUAGES:
        held = _ids(catalogs.read(locale))
        assert not wanted - held, f"{locale}: run python -m hashmatch.console.catalogs"
        assert not held - wanted, f"{locale}: stale messages; run the catalogs command"


@pytest.mark.parametrize("locale", sorted(i18n.LANGUAGES))
def test_every_message_is_translated_with_its_placeholders(locale: str) -> None:
    untranslated, broken = [], []
    for message in catalogs.read(locale):
        if not message.id:
            continue
        text = message.string if isinstance(message.string, str) else "".join(message.string or ())
        if not text.strip():
            untranslated.append(message.id)
            continue
        if sorted(_PLACEHOLDER.findall(str(message.id))) != sorted(_PLACEHOLDER.findall(text)):
            broken.append(message.id)
        if locale != i18n.DEFAULT_LOCALE and "fuzzy" in message.flags:
            untranslated.append(message.id)
    assert not untranslated, f"{locale}: {len(untranslated)} untranslated: {untranslated[:10]}"
    assert not broken, f"{locale}: placeholders differ in {broken[:10]}"


def test_other_languages_are_not_english_in_disguise() -> None:
    """A catalog filled with copies of the English messages would pass the test above."""
    english = {m.id: m.string for m in catalogs.read("en") if m.id}
    for locale in ("zh_TW", "ko"):
        same = [
            m.id
            for m in catalogs.read(locale)
            if m.id and m.string == english[m.id] and re.search(r"[A-Za-z]{4,}", str(m.id))
        ]
        # Product names and codes may stay as they are; sentences may not.
        assert len(same) <= 5, f"{locale}: {same}"


@pytest.mark.parametrize(
    ("locale", "script"), [("zh_TW", r"[\u4e00-\u9fff]"), ("ko", r"[\uac00-\ud7af]")]
)
def test_the_sign_in_page_renders_in_each_language(locale: str, script: str) -> None:
    page = environment(locale).get_template("login.html")
    text = page.render(
        staff=None,
        fmt=i18n.Formats(locale, i18n.zone("UTC")),
        lang=locale,
        html_lang=locale.replace("_", "-"),
        languages=i18n.LANGUAGES,
        url=lambda p="/": "/console" + p,
        path="/console/login",
        csrf="",
        roles=None,
        login_csrf="t",
        error="wrong",
        next="",
    )
    assert re.search(script, text)
    assert "Wrong login or password." not in text


#: Words that are the same in every language: the product, and codes the pages show as codes.
UNTRANSLATED_OK = {"hashmatch", "TLP", "UTC", "ID", "MD5", "SHA", "PDQ", "vPDQ", "CSV", "JSONL"}
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_TAG = re.compile(r"<[^>]*>", re.S)
_CODE = re.compile(r"<code[^>]*>.*?</code>", re.S)
_READABLE_ATTRIBUTE = re.compile(
    r'\b(?:aria-label|title|alt|placeholder|data-confirm|label)="([^"]*)"', re.S
)


def _literal_words(template: str) -> list[str]:
    """Words a template shows that no ``_()`` goes through: text between tags and the values
    of attributes people read, once every Jinja expression and statement is removed."""
    text = _CODE.sub(" ", _JINJA.sub(" ", template))  # file formats shown as code stay as is
    readable = " ".join(_READABLE_ATTRIBUTE.findall(text))
    body = _TAG.sub(" ", text)
    words = re.findall(r"[A-Za-z][A-Za-z'’-]+", body + " " + readable)
    return [word for word in words if word not in UNTRANSLATED_OK]


def test_no_template_shows_a_word_outside_the_catalogs() -> None:
    found = {}
    for path in sorted(catalogs.SOURCES.glob("templates/*.html")):
        words = _literal_words(path.read_text())
        if words:
            found[path.name] = words[:8]
    assert not found, f"text outside _(): {found}"


def test_the_literal_word_check_finds_what_it_should() -> None:
    assert _literal_words('<p>{{ _("Fine") }}</p>') == []
    assert _literal_words("<p>Withdraw</p>") == ["Withdraw"]
    assert _literal_words("<p><code>algorithm,hash</code></p>") == []
    assert _literal_words('<button aria-label="Close">{{ _("x") }}</button>') == ["Close"]
    assert _literal_words('<a title="{{ _(\'Ok\') }}" href="/x">{{ n }}</a>') == []
