"""What a data set holds, in numbers: `alinea data stats` prints this dict as JSON.

All keys are strings and all values JSON types, so `json.dumps(dataset_stats(records))` always works. Lengths
are in characters (not tokens: `data` does not know tokenizers).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from typing import Any

from alinea.data.records import (
    PREFERENCES,
    RECORD_TYPES,
    STRENGTHS,
    THUMBS,
    Comparison,
    Ranking,
    Rating,
    Record,
    Thumb,
)

NO_ANNOTATOR = "(none)"
"""The key under `annotators` for records whose annotator is null."""


def _by_count(counter: Counter[str]) -> dict[str, int]:
    """Most frequent first; equal counts in key order, so the output is the same on every run."""
    return dict(sorted(counter.items(), key=lambda item: (-item[1], item[0])))


def _lengths(values: list[int]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "mean": None, "median": None, "min": None, "max": None}
    return {
        "n": len(values),
        "mean": round(statistics.fmean(values), 2),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def dataset_stats(records: Iterable[Record]) -> dict[str, Any]:
    """Counts and length summaries for a list of records.

    Keys: n_records; types (every record type, 0 when absent); languages and annotators (most frequent
    first, null annotator as "(none)"); comparisons {n, preference {a, b, tie}, strength {"0".."3"}};
    rankings {n, k {"K": count}}; ratings {n, aspects {aspect: {n, mean}}}; thumbs {up, down}; prompt_chars
    and response_chars {n, mean, median, min, max} (response_chars counts every response a record holds: 2
    per comparison, K per ranking).
    """
    types: Counter[str] = Counter({name: 0 for name in RECORD_TYPES})
    languages: Counter[str] = Counter()
    annotators: Counter[str] = Counter()
    preference: Counter[str] = Counter({p: 0 for p in PREFERENCES})
    strength: Counter[str] = Counter({str(s): 0 for s in STRENGTHS})
    ranking_k: Counter[str] = Counter()
    aspect_scores: dict[str, list[float]] = {}
    thumbs: Counter[str] = Counter({t: 0 for t in THUMBS})
    prompt_chars: list[int] = []
    response_chars: list[int] = []
    n_records = 0

    for record in records:
        n_records += 1
        types[record.record_type] += 1
        languages[record.language] += 1
        annotators[record.annotator if record.annotator is not None else NO_ANNOTATOR] += 1
        prompt_chars.append(record.prompt_chars())
        response_chars.extend(len(text) for text in record.response_texts())
        if isinstance(record, Comparison):
            preference[record.preference] += 1
            strength[str(record.strength)] += 1
        elif isinstance(record, Ranking):
            ranking_k[str(len(record.responses))] += 1
        elif isinstance(record, Rating):
            for aspect, score in record.ratings.items():
                aspect_scores.setdefault(aspect, []).append(score)
        elif isinstance(record, Thumb):
            thumbs[record.thumb] += 1

    return {
        "n_records": n_records,
        "types": dict(types),
        "languages": _by_count(languages),
        "annotators": _by_count(annotators),
        "comparisons": {"n": types["comparison"], "preference": dict(preference), "strength": dict(strength)},
        "rankings": {
            "n": types["ranking"],
            "k": dict(sorted(ranking_k.items(), key=lambda item: int(item[0]))),
        },
        "ratings": {
            "n": types["rating"],
            "aspects": {
                aspect: {"n": len(scores), "mean": round(statistics.fmean(scores), 3)}
                for aspect, scores in sorted(aspect_scores.items())
            },
        },
        "thumbs": dict(thumbs),
        "prompt_chars": _lengths(prompt_chars),
        "response_chars": _lengths(response_chars),
    }
