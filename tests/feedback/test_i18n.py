"""UI text catalogs: the same keys in every language, language negotiation, fallbacks."""

from __future__ import annotations

import re
from pathlib import Path

from alinea.feedback import i18n

TEMPLATES = Path(i18n.__file__).parents[1] / "templates"


def test_catalogs_have_the_same_keys_and_cover_the_templates():
    catalogs = i18n.catalogs()
    assert {"en", "fr"} <= set(catalogs)
    for language, catalog in catalogs.items():
        assert set(catalog) == set(catalogs["en"]), language
    used = {key for path in TEMPLATES.glob("*.html")
            for key in re.findall(r't\("([a-z0-9_]+)"', path.read_text(encoding="utf-8"))}
    missing = [key for key in used if key not in catalogs["en"] and not key.endswith("_")]
    assert missing == []


def test_negotiation():
    assert i18n.negotiate("fr-CA,fr;q=0.9,en;q=0.8") == "fr"
    assert i18n.negotiate("de-DE,de;q=0.9,en;q=0.1") == "en"
    assert i18n.negotiate("en;q=0.2, fr;q=0.8") == "fr"
    assert i18n.negotiate("fr;q=0") == "en"  # q=0 means "not this one"
    assert i18n.negotiate(None, default="fr") == "fr"
    assert i18n.negotiate("fr", user_choice="en") == "en"
    assert i18n.negotiate("garbage;;q=x,,") == "en"


def test_translation_fallbacks_and_placeholders():
    t = i18n.translator("fr")
    assert t("progress_line", done=2, wanted=6) == "2 jugements sur 6"
    assert t("no_such_key") == "no_such_key"
    assert t("aspect_creativity", default="creativity") == "creativity"
    assert t("progress_line", done=1) == "{done} jugements sur {wanted}"  # a missing value never crashes
