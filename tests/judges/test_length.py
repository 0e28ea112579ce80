"""The length judge: 1 inside the range, linear outside, hand-computed."""

import pickle

import pytest

from alinea.errors import UserError
from alinea.judges import JUDGES, LengthJudge, length, length_score


def words(n: int) -> str:
    return " ".join(["word"] * n)


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, 0.0), (2, 0.25), (4, 0.5), (8, 1.0), (30, 1.0), (60, 1.0), (66, 0.9), (90, 0.5), (120, 0.0), (200, 0.0)],
)
def test_default_range(n, expected):
    assert length_score(words(n)) == pytest.approx(expected)


def test_custom_range_and_batch():
    judge = LengthJudge(2, 4)
    assert judge(["p"] * 4, ["one", "one two", "a b c d e", "a b c d e f g h"]) == pytest.approx([0.5, 1.0, 0.75, 0.0])
    assert pickle.loads(pickle.dumps(judge))(["p"], ["a b c"]) == [1.0]
    assert JUDGES["length"] is length
    assert length(["p", "q"], ["Short.", words(20)]) == pytest.approx([1 / 8, 1.0])


def test_bad_range():
    for low, high in [(0, 5), (6, 5), (1.5, 3)]:
        with pytest.raises(UserError, match="low"):
            LengthJudge(low, high)
