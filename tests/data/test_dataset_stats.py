"""dataset_stats on a five-record fixture whose numbers were worked out by hand."""

from __future__ import annotations

import json

from alinea.data.records import Comparison, Ranking, Rating, Thumb
from alinea.data.stats import dataset_stats

FIVE = [
    # prompt chars 4; responses 2 and 4
    Comparison(
        prompt="abcd", response_a="xx", response_b="yyyy", preference="a", strength=2, annotator="ana"
    ),
    # prompt chars 3 + 5 = 8; responses 1 and 2
    Comparison(
        messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": "hello"}],
        response_a="z",
        response_b="zz",
        preference="tie",
        language="fr",
    ),
    # prompt chars 7; responses 3, 5, 1
    Ranking(prompt="rank me", responses=["one", "three", "x"], ranks=[1, 2, 3], annotator="ana"),
    # prompt chars 2; response 11
    Rating(
        prompt="hi", response="hello there", ratings={"help": 6, "safety": 3}, annotator="bo", language="mg"
    ),
    # prompt chars 1; response 6
    Thumb(prompt="q", response="answer", thumb="down", language="fr"),
]


def test_five_records_by_hand():
    stats = dataset_stats(FIVE)
    assert stats == {
        "n_records": 5,
        "types": {"prompt": 0, "demonstration": 0, "comparison": 2, "ranking": 1, "rating": 1, "thumb": 1},
        "languages": {"en": 2, "fr": 2, "mg": 1},
        "annotators": {"(none)": 2, "ana": 2, "bo": 1},
        "comparisons": {
            "n": 2,
            "preference": {"a": 1, "b": 0, "tie": 1},
            "strength": {"0": 1, "1": 0, "2": 1, "3": 0},
        },
        "rankings": {"n": 1, "k": {"3": 1}},
        "ratings": {"n": 1, "aspects": {"help": {"n": 1, "mean": 6.0}, "safety": {"n": 1, "mean": 3.0}}},
        "thumbs": {"up": 0, "down": 1},
        # prompts 4, 8, 7, 2, 1: sum 22
        "prompt_chars": {"n": 5, "mean": 4.4, "median": 4, "min": 1, "max": 8},
        # responses 2, 4, 1, 2, 3, 5, 1, 11, 6: sum 35, sorted 1 1 2 2 [3] 4 5 6 11
        "response_chars": {"n": 9, "mean": 3.89, "median": 3, "min": 1, "max": 11},
    }
    assert json.loads(json.dumps(stats)) == stats


def test_no_records():
    stats = dataset_stats([])
    assert stats["n_records"] == 0
    assert stats["prompt_chars"] == {"n": 0, "mean": None, "median": None, "min": None, "max": None}
    json.dumps(stats)
