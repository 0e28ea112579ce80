"""UI text catalogs: one JSON file per language (`en.json`, `fr.json`, ...), key -> text with {placeholders}.

Add a language by copying en.json to <code>.json and translating the values; it is picked up at start. A key
missing from a catalog falls back to English, and a key missing from English shows the key itself (so a typo is
visible, never a crash). The language of a request: the user's own setting, else the best match in the browser's
Accept-Language header, else the server default.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path

CATALOG_DIR = Path(__file__).parent
FALLBACK = "en"


@cache
def catalogs() -> dict[str, dict[str, str]]:
    """Every catalog shipped: language code -> {key: text}."""
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(CATALOG_DIR.glob("*.json"))}


def languages() -> list[str]:
    return list(catalogs())


def negotiate(accept_language: str | None, *, user_choice: str | None = None, default: str = FALLBACK) -> str:
    """The catalog to use: the user's choice, else the highest-weighted Accept-Language entry we have."""
    available = catalogs()
    if user_choice in available:
        return user_choice
    wanted: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        pieces = part.strip().split(";")
        code = pieces[0].strip().lower()
        if not code:
            continue
        weight = 1.0
        for param in pieces[1:]:
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        wanted.append((-weight, position, code))
    for negative_weight, _, code in sorted(wanted):
        if negative_weight >= 0:
            break
        for candidate in (code, code.split("-")[0]):
            if candidate in available:
                return candidate
    return default if default in available else FALLBACK


def translator(language: str) -> Callable[..., str]:
    """`t(key, default=None, **values)`: the text of `key` in `language` (else English, else `default`, else the
    key itself), placeholders filled."""
    catalog = catalogs().get(language, {})
    english = catalogs().get(FALLBACK, {})

    def t(key: str, default: str | None = None, **values: object) -> str:
        text = catalog.get(key) or english.get(key) or (default if default is not None else key)
        try:
            return text.format(**values) if values else text
        except (KeyError, IndexError, ValueError):
            return text

    return t
