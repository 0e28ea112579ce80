"""Text folding for word-list and pattern matching: one spelling for "Imbécile", "IMBECILE" and "imbecile".

Folding decomposes characters (NFKD), drops accents, lower-cases (casefold), writes every apostrophe as "'" and every
run of whitespace as one space. Lists and patterns in `toxicity.py` and `refusal.py` are written in folded form.
"""

from __future__ import annotations

import re
import unicodedata

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})
_SPACE = re.compile(r"\s+")


def fold(text: str) -> str:
    """`text` without accents, lower-cased, with plain apostrophes and single spaces."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES))
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return _SPACE.sub(" ", bare.casefold()).strip()
