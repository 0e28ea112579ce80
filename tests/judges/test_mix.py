"""Weighted mixes of judges and the spec parser: arithmetic worked by hand, errors that name the bad part."""

import pytest

from alinea.errors import UserError
from alinea.judges import JUDGES, WeightedJudge, get_judge, parse_judge_spec, weighted


def shout(prompts, responses):
    """A toy judge for these tests: 1 per '!' in the response."""
    return [float(r.count("!")) for r in responses]


PROMPTS = ["Review a film.", "Review a film."]
RESPONSES = ["A wonderful film!", "Terrible."]


def test_weighted_sum_by_hand():
    mix = weighted({"sentiment_lexicon": 2.0, "length": 0.5, shout: -1.0})
    # sentiment_lexicon: 1 positive word -> 0.5; 1 negative word -> -0.5
    # length: 3 words -> 3/8; 1 word -> 1/8
    # shout: 1 and 0
    expected = [2 * 0.5 + 0.5 * 3 / 8 - 1.0, 2 * -0.5 + 0.5 * 1 / 8 - 0.0]
    assert mix(PROMPTS, RESPONSES) == pytest.approx(expected)
    components = mix.components(PROMPTS, RESPONSES)
    assert list(components) == ["sentiment_lexicon", "length", "tests.judges.test_mix:shout"]
    assert components["length"] == pytest.approx([3 / 8, 1 / 8])
    assert mix.weights == [2.0, 0.5, -1.0]


def test_spec_parsing():
    mix = parse_judge_spec(" sentiment_lexicon=1, language=0.5 ,length")
    assert isinstance(mix, WeightedJudge)
    assert mix.names == ["sentiment_lexicon", "language", "length"]
    assert mix.weights == [1.0, 0.5, 1.0]
    assert mix.spec == "sentiment_lexicon=1,language=0.5,length=1"
    assert parse_judge_spec(mix.spec).weights == mix.weights
    # "Tena tsara" (mg, 2 words): lexicon 0.5, language 1 (prompt in mg), length 2/8
    assert mix(["Manorata hevitra fohy."], ["Tena tsara."]) == pytest.approx([0.5 + 0.5 * 1.0 + 0.25])
    detector = parse_judge_spec("toxicity=-1,tests.judges.test_mix:shout=0.25")
    assert detector(["p"], ["You idiot!!"]) == pytest.approx([-1.0 + 0.5])


@pytest.mark.parametrize(
    ("spec", "quoted"),
    [
        ("sentiment=1,language=abc", "'language=abc'"),
        ("sentiment=1,,length=1", "empty part"),
        ("sentiment=1,", "empty part"),
        ("=1", "'=1'"),
        ("sentiment=1,happiness=2", "'happiness=2'"),
        ("sentiment=1,sentiment=2", "twice"),
        ("sentiment=inf", "finite"),
        ("sentiment=0,length=0", "every weight is 0"),
        ("", "empty"),
        ("nosuchmodule_xyz:fn=1", "cannot import"),
        ("alinea.judges:nope=1", "no function 'nope'"),
    ],
)
def test_spec_errors_name_the_bad_part(spec, quoted):
    with pytest.raises(UserError) as caught:
        parse_judge_spec(spec)
    assert quoted in str(caught.value)


def test_get_judge_and_weight_errors():
    assert get_judge("language_consistency") is JUDGES["language_consistency"]
    assert get_judge("alinea.judges:sentiment") is JUDGES["sentiment"]
    with pytest.raises(UserError, match="no such judge"):
        get_judge("happiness")
    with pytest.raises(UserError, match="finite number"):
        weighted({"sentiment": float("nan")})
    with pytest.raises(UserError, match="no judge"):
        weighted({})


def test_components_reject_broken_judges():
    def too_few(prompts, responses):
        return [1.0]

    def not_finite(prompts, responses):
        return [float("nan")] * len(responses)

    with pytest.raises(UserError, match="returned 1 scores for 2"):
        weighted({too_few: 1.0})(PROMPTS, RESPONSES)
    with pytest.raises(UserError, match="non-finite"):
        weighted({not_finite: 1.0})(PROMPTS, RESPONSES)
