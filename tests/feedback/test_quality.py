"""Quality figures against numbers worked by hand."""

from __future__ import annotations

import pytest

from alinea.feedback import quality


def test_cohen_kappa_by_hand():
    # p_o = 4/6; each annotator says a 3 times and b 3 times, so p_e = (3*3 + 3*3) / 36 = 1/2;
    # kappa = (2/3 - 1/2) / (1 - 1/2) = 1/3.
    first = ["a", "a", "b", "b", "a", "b"]
    second = ["a", "b", "b", "b", "a", "a"]
    assert quality.cohen_kappa(first, second) == pytest.approx(1 / 3)
    assert quality.cohen_kappa(first, first) == pytest.approx(1.0)
    assert quality.cohen_kappa(["a", "a"], ["a", "a"]) is None  # p_e = 1: undefined
    assert quality.cohen_kappa(["a"], ["b"]) is None


def test_krippendorff_alpha_nominal_by_hand():
    # Units 1-4, coder 1: a a b b, coder 2: a b b b. Coincidences: o_aa = 2, o_ab = o_ba = 1, o_bb = 4; n_a = 3,
    # n_b = 5, n = 8. D_o = 2/8, D_e = 2 * 3 * 5 / (8 * 7) = 30/56; alpha = 1 - D_o / D_e = 1 - 7/15 = 8/15.
    labels = {"c1": {(1,): "a", (2,): "a", (3,): "b", (4,): "b"},
              "c2": {(1,): "a", (2,): "b", (3,): "b", (4,): "b"}}
    assert quality.krippendorff_alpha(labels, "nominal") == pytest.approx(8 / 15)
    # A third coder on unit 1 only: missing values are allowed.
    labels["c3"] = {(1,): "a"}
    assert quality.krippendorff_alpha(labels, "nominal") is not None
    assert quality.krippendorff_alpha({"c1": {(1,): "a"}}, "nominal") is None  # one coder: no pairs


def test_agreement_over_pairwise_judgments():
    judgments = [("ana", 1, {"preference": "a"}), ("ben", 1, {"preference": "a"}),
                 ("ana", 2, {"preference": "b"}), ("ben", 2, {"preference": "a"}),
                 ("cy", 3, {"preference": "tie"})]
    result = quality.agreement("pairwise", judgments)
    assert result["level"] == "nominal"
    assert result["kappa"] == [{"annotators": ["ana", "ben"], "units": 2, "kappa": 0.0}]
    # ana (a, b) vs ben (a, a): p_o = 1/2, p_e = (1*2 + 1*0) / 4 = 1/2, kappa 0.


def test_annotator_statistics():
    rows = [
        {"annotator": "ana", "time_spent_ms": 2000, "is_gold": True, "gold_correct": True,
         "answer": {"winner_position": 0}},
        {"annotator": "ana", "time_spent_ms": 4000, "is_gold": True, "gold_correct": False,
         "answer": {"winner_position": 0}},
        {"annotator": "ana", "time_spent_ms": 6000, "is_gold": False, "gold_correct": None,
         "answer": {"winner_position": 1}},
        {"annotator": "ana", "time_spent_ms": None, "is_gold": False, "gold_correct": None,
         "answer": {"winner_position": None}},
    ]
    (ana, ben) = quality.annotator_stats("pairwise", rows, {"ben": 2})
    assert ana["judgments"] == 4 and ana["median_time_s"] == 4.0 and ana["mean_time_s"] == 4.0
    assert ana["per_hour"] == pytest.approx(3600 * 3 / 12)  # 3 timed judgments in 12 s
    assert ana["gold_accuracy"] == 0.5 and ana["gold_n"] == 2
    assert ana["position_bias"] == pytest.approx(2 / 3) and ana["position_n"] == 3
    assert ben == {"annotator": "ben", "judgments": 0, "skips": 2, "median_time_s": None, "mean_time_s": None,
                   "per_hour": None, "gold_n": 0, "gold_accuracy": None, "position_bias": None, "position_n": 0}


def test_labels_per_task_type():
    assert quality.labels_for("ranking", 7, {"ranks": [2, 1]}) == {(7, 0): 2, (7, 1): 1}
    assert quality.labels_for("rating", 7, {"ratings": {"h": 3}}) == {(7, "h"): 3}
    assert quality.labels_for("demonstration", 7, {"turns": []}) == {}
