"""Task types: records to items, screen answers to canonical answers, gold checks, judgments back to records."""

from __future__ import annotations

import pytest

from alinea.data.records import Comparison, Prompt, Ranking, Thumb, parse_record
from alinea.feedback import tasks
from alinea.feedback.tasks import AnswerError, TaskShape


def test_shown_order_is_a_deterministic_shuffle_per_item_and_annotator():
    orders = {(item, user): tasks.shown_order(2, item_id=item, user_id=user) for item in range(50) for user in range(4)}
    assert orders[(3, 1)] == tasks.shown_order(2, item_id=3, user_id=1)
    assert all(sorted(order) == [0, 1] for order in orders.values())
    flipped = sum(order == [1, 0] for order in orders.values()) / len(orders)
    assert 0.35 < flipped < 0.65  # both orders are used, about equally
    assert sorted(tasks.shown_order(9, item_id=1, user_id=1)) == list(range(9))


def test_items_from_records_per_task_type():
    comparison = Comparison(prompt="Q", response_a="A", response_b="B", preference="b", strength=2, id="c1")
    item = tasks.item_from_record(comparison, "pairwise", gold=True)
    assert item.responses == ["A", "B"] and item.external_id == "c1"
    assert item.gold_answer == {"preference": "b", "strength": 2}
    assert tasks.item_from_record(Prompt(prompt="Write"), "demonstration", gold=False).responses == []
    with pytest.raises(AnswerError, match="2 responses for a pairwise project, found a prompt record with 0"):
        tasks.item_from_record(Prompt(prompt="Write"), "pairwise", gold=False)
    with pytest.raises(AnswerError, match="carries a demonstration answer"):
        tasks.item_from_record(Prompt(prompt="Write"), "demonstration", gold=True)
    ranking = Ranking(prompt="R", responses=("x", "y", "z"), ranks=(2, 1, 2))
    assert tasks.item_from_record(ranking, "ranking", gold=True).gold_answer == {"ranks": [2, 1, 2]}


def test_pairwise_answers_follow_the_shown_order():
    shape = TaskShape("pairwise", 2)
    assert tasks.canonical_answer(shape, {"choice": "left", "strength": 1}, [1, 0]) == {
        "preference": "b", "strength": 1, "both_bad": False, "winner_position": 0}
    assert tasks.canonical_answer(shape, {"choice": "right"}, [1, 0])["preference"] == "a"  # default strength 2
    tie = tasks.canonical_answer(shape, {"choice": "tie", "both_bad": True}, [0, 1])
    assert tie == {"preference": "tie", "strength": 0, "both_bad": True, "winner_position": None}
    with pytest.raises(AnswerError, match="strength: an integer from 0 to 3, found the number 4"):
        tasks.canonical_answer(shape, {"choice": "left", "strength": 4}, [0, 1])


def test_ranking_rating_thumbs_demonstration_answers():
    order = [2, 0, 1]  # position 0 shows response 2, ...
    ranked = tasks.canonical_answer(TaskShape("ranking", 3), {"ranks": [1, 3, 1]}, order)
    assert ranked == {"ranks": [3, 1, 1], "none_acceptable": False}
    with pytest.raises(AnswerError, match=r"ranks\[1\]"):
        tasks.canonical_answer(TaskShape("ranking", 3), {"ranks": [1, 4, 2]}, order)
    rating = TaskShape("rating", 1, aspects=("helpful", "honest"), flags=("unsafe",), scale=(1, 5))
    assert tasks.canonical_answer(rating, {"ratings": {"helpful": 5, "honest": 1}, "flags": ["unsafe", "unsafe"]},
                                  [0]) == {"ratings": {"helpful": 5, "honest": 1}, "flags": ["unsafe"], "comment": ""}
    with pytest.raises(AnswerError, match="ratings.honest: a score from 1 to 5 .the aspect is missing"):
        tasks.canonical_answer(rating, {"ratings": {"helpful": 5}}, [0])
    with pytest.raises(AnswerError, match="ratings.helpful: an integer from 1 to 5, found the number 6"):
        tasks.canonical_answer(rating, {"ratings": {"helpful": 6, "honest": 1}}, [0])
    assert tasks.canonical_answer(TaskShape("thumbs", 1), {"thumb": "down"}, [0]) == {"thumb": "down", "comment": ""}
    demo = TaskShape("demonstration", 1, original="Hi")
    turns = [{"role": "assistant", "content": "Hi"}]
    assert tasks.canonical_answer(demo, {"turns": turns}, [0]) == {"turns": turns, "edited": False}
    with pytest.raises(AnswerError, match=r"turns\[1\].role: 'assistant' .a demonstration ends with the answer"):
        tasks.canonical_answer(demo, {"turns": [*turns, {"role": "user", "content": "and?"}]}, [0])


def test_gold_checks():
    assert tasks.gold_correct("pairwise", {"preference": "a", "strength": 1}, {"preference": "a", "strength": 3})
    assert not tasks.gold_correct("pairwise", {"preference": "tie", "strength": 0}, {"preference": "a"})
    assert tasks.gold_correct("ranking", {"ranks": [2, 1, 1]}, {"ranks": [3, 1, 2]})  # one of the best matches
    assert not tasks.gold_correct("ranking", {"ranks": [1, 2, 3]}, {"ranks": [3, 1, 2]})
    assert tasks.gold_correct("rating", {"ratings": {"h": 4}}, {"ratings": {"h": 5}})
    assert not tasks.gold_correct("rating", {"ratings": {"h": 3}}, {"ratings": {"h": 5}})
    assert tasks.gold_correct("thumbs", {"thumb": "up"}, None) is None


def test_judgments_become_valid_records():
    common = {"messages": [{"role": "user", "content": "Q"}], "language": "fr", "annotator": "ana",
              "time": "2024-05-01T12:30:00.000Z", "record_id": "x/j1"}
    comparison = tasks.judgment_record("pairwise", responses=["A", "B"],
                                       answer={"preference": "b", "strength": 3}, **common)
    assert parse_record(comparison.to_json()) == comparison and comparison.chosen == "B"
    thumb = tasks.judgment_record("thumbs", responses=["A"], answer={"thumb": "up", "comment": "ok"}, **common)
    assert isinstance(thumb, Thumb) and thumb.language == "fr"
    rating = tasks.judgment_record("rating", responses=["A"], answer={"ratings": {"h": 2}}, scale=(1, 3), **common)
    assert rating.scale == (1, 3)
