"""Task types: what an item of each type holds, what an annotator submits, and the canonical answer we store.

Annotators see the responses of an item in a per-annotator shuffled order (`shown_order`); they answer in screen
positions (left/right, the k-th card), and `canonical_answer` translates that into the item's own response indices,
so that answers from different annotators can be compared. The shown order is stored beside every judgment
(position bias is measured from it).

| task type     | responses per item | submitted (screen positions)                          | canonical answer                                   |
|---------------|--------------------|-------------------------------------------------------|----------------------------------------------------|
| pairwise      | 2                  | choice left/right/tie, strength 0..3, both_bad        | preference a/b/tie, strength, both_bad, winner_position |
| ranking       | 2..9               | ranks per shown card (1 best, ties equal), none_acceptable | ranks per response, none_acceptable          |
| rating        | 1                  | ratings {aspect: score}, flags, comment               | the same                                           |
| thumbs        | 1                  | thumb up/down, comment                                | the same                                           |
| demonstration | 0 (write) or 1 (edit) | turns [{role, content}], assistant first and last  | turns, edited (whether an edit changed the answer) |
| chat          | 0 (a seed prompt)  | through the chat endpoints, not as a judgment         | (see chat.py)                                      |

Strength follows `alinea.data.records.STRENGTHS`: 0 negligible or unsure, 1 slightly better, 2 better, 3 much better.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alinea.data.records import (
    STRENGTHS,
    Comparison,
    Demonstration,
    Prompt,
    Ranking,
    Rating,
    Record,
    Thumb,
    describe_value,
)

TASK_TYPES = ("pairwise", "ranking", "rating", "thumbs", "demonstration", "chat")
STRENGTH_NAMES = {0: "negligible", 1: "slightly better", 2: "better", 3: "much better"}
MAX_RESPONSES = 9
MAX_TEXT = 20_000
"""Longest free text (a comment, a demonstration turn) we store, in characters."""
DEFAULT_ASPECTS = ("helpful", "harmless", "honest", "follows_language")
DEFAULT_FLAGS = ("wrong_language", "unsafe", "factual_error", "incomplete")


class AnswerError(ValueError):
    """A submitted answer breaks a rule: `field` is a dotted path (`ranks[2]`), `expected` what should be there."""

    def __init__(self, field: str, expected: str) -> None:
        super().__init__(f"{field}: {expected}")
        self.field = field
        self.expected = expected


@dataclass(frozen=True)
class TaskShape:
    """What a task type needs from the project and its items (enough to check an answer)."""

    task_type: str
    n_responses: int
    aspects: Sequence[str] = ()
    flags: Sequence[str] = ()
    scale: tuple[int, int] = (1, 7)
    original: str | None = None
    """Demonstration tasks that edit a model answer: that answer (to record whether it was changed)."""


def responses_allowed(task_type: str) -> tuple[int, int]:
    """(fewest, most) responses an item of this task type holds."""
    return {
        "pairwise": (2, 2),
        "ranking": (2, MAX_RESPONSES),
        "rating": (1, 1),
        "thumbs": (1, 1),
        "demonstration": (0, 1),
        "chat": (0, 0),
    }[task_type]


def shown_order(n_responses: int, *, item_id: int, user_id: int, seed: int = 0) -> list[int]:
    """The order an annotator sees an item's responses in: shuffled, the same every time for (item, annotator)."""
    order = list(range(n_responses))
    random.Random(f"{seed}:{item_id}:{user_id}").shuffle(order)
    return order


# ---------------------------------------------------------------------------------------------------------------------
# records -> items


@dataclass(frozen=True)
class ItemContent:
    """What an item is made of, taken from one record."""

    messages: list[dict[str, str]]
    responses: list[str]
    language: str
    tags: list[str]
    external_id: str | None
    gold_answer: dict[str, Any] | None


def item_from_record(record: Record, task_type: str, *, gold: bool) -> ItemContent:
    """The item a record makes for `task_type`; AnswerError (field, expected) when it does not fit.

    With `gold`, the record's own answer (a comparison's preference, a ranking's ranks, ...) becomes the item's
    known answer; records that carry no answer cannot be gold.
    """
    responses = _responses_for(record, task_type)
    low, high = responses_allowed(task_type)
    if not low <= len(responses) <= high:
        fit = f"{low}" if low == high else f"{low} to {high}"
        raise AnswerError(
            "type", f"a record with {fit} response{'s' if high != 1 else ''} for a {task_type} project, "
            f"found a {record.record_type} record with {len(responses)}"
        )
    gold_answer = _gold_from_record(record, task_type) if gold else None
    return ItemContent(
        messages=record.prompt_messages(),
        responses=list(responses),
        language=record.language,
        tags=list(record.tags),
        external_id=record.id,
        gold_answer=gold_answer,
    )


def _responses_for(record: Record, task_type: str) -> list[str]:
    if task_type == "chat":
        return [] if isinstance(record, Prompt) else record.response_texts()
    return record.response_texts()


def _gold_from_record(record: Record, task_type: str) -> dict[str, Any]:
    if task_type == "pairwise" and isinstance(record, Comparison):
        return {"preference": record.preference, "strength": record.strength}
    if task_type == "pairwise" and isinstance(record, Ranking):
        first, second = record.ranks
        preference = "tie" if first == second else ("a" if first < second else "b")
        return {"preference": preference, "strength": 0 if preference == "tie" else 1}
    if task_type == "ranking" and isinstance(record, Ranking):
        return {"ranks": list(record.ranks)}
    if task_type in ("rating",) and isinstance(record, Rating):
        return {"ratings": dict(record.ratings)}
    if task_type == "thumbs" and isinstance(record, Thumb):
        return {"thumb": record.thumb}
    raise AnswerError(
        "type", f"a record that carries a {task_type} answer to be a gold item, found a {record.record_type} record"
    )


# ---------------------------------------------------------------------------------------------------------------------
# submitted answers -> canonical answers


def _get(answer: Mapping[str, Any], name: str, default: Any = ...) -> Any:
    if name in answer:
        return answer[name]
    if default is ...:
        raise AnswerError(name, "a value (the field is missing)")
    return default


def _check_keys(answer: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for key in answer:
        if key not in allowed:
            raise AnswerError(str(key), f"no such field; allowed: {', '.join(allowed)}")


def _int(value: Any, field: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise AnswerError(field, f"an integer from {low} to {high}, found {describe_value(value)}")
    return value


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise AnswerError(field, f"true or false, found {describe_value(value)}")
    return value


def _text(value: Any, field: str, *, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise AnswerError(field, f"a string, found {describe_value(value)}")
    if not allow_empty and not value.strip():
        raise AnswerError(field, f"a non-empty string, found {describe_value(value)}")
    if len(value) > MAX_TEXT:
        raise AnswerError(field, f"at most {MAX_TEXT} characters, found {len(value)}")
    return value


def canonical_answer(shape: TaskShape, answer: Any, order: Sequence[int]) -> dict[str, Any]:
    """Check a submitted answer (in screen positions) and return it in terms of the item's responses."""
    if not isinstance(answer, Mapping):
        raise AnswerError("answer", f"an object, found {describe_value(answer)}")
    check = {
        "pairwise": _pairwise,
        "ranking": _ranking,
        "rating": _rating,
        "thumbs": _thumbs,
        "demonstration": _demonstration,
    }.get(shape.task_type)
    if check is None:
        raise AnswerError("task_type", "chat turns go through the chat endpoints, not as judgments")
    return check(shape, answer, order)


def _pairwise(shape: TaskShape, answer: Mapping[str, Any], order: Sequence[int]) -> dict[str, Any]:
    _check_keys(answer, ("choice", "strength", "both_bad"))
    choice = _get(answer, "choice")
    if choice not in ("left", "right", "tie"):
        raise AnswerError("choice", f"'left', 'right' or 'tie', found {describe_value(choice)}")
    both_bad = _bool(_get(answer, "both_bad", False), "both_bad")
    if choice == "tie":
        strength = _int(_get(answer, "strength", 0), "strength", 0, 0)
        return {"preference": "tie", "strength": strength, "both_bad": both_bad, "winner_position": None}
    strength = _int(_get(answer, "strength", 2), "strength", min(STRENGTHS), max(STRENGTHS))
    position = 0 if choice == "left" else 1
    winner = order[position]
    return {"preference": "ab"[winner], "strength": strength, "both_bad": both_bad, "winner_position": position}


def _ranking(shape: TaskShape, answer: Mapping[str, Any], order: Sequence[int]) -> dict[str, Any]:
    _check_keys(answer, ("ranks", "none_acceptable"))
    ranks = _get(answer, "ranks")
    n = shape.n_responses
    if not isinstance(ranks, list) or len(ranks) != n:
        raise AnswerError("ranks", f"a list of {n} ranks, one per shown response, found {describe_value(ranks)}")
    checked = [_int(rank, f"ranks[{k}]", 1, n) for k, rank in enumerate(ranks)]
    by_response = [0] * n
    for position, rank in enumerate(checked):
        by_response[order[position]] = rank
    none_acceptable = _bool(_get(answer, "none_acceptable", False), "none_acceptable")
    return {"ranks": by_response, "none_acceptable": none_acceptable}


def _rating(shape: TaskShape, answer: Mapping[str, Any], order: Sequence[int]) -> dict[str, Any]:
    _check_keys(answer, ("ratings", "flags", "comment"))
    ratings = _get(answer, "ratings")
    if not isinstance(ratings, Mapping):
        raise AnswerError("ratings", f"an object mapping each aspect to a score, found {describe_value(ratings)}")
    low, high = shape.scale
    for aspect in ratings:
        if aspect not in shape.aspects:
            raise AnswerError(f"ratings.{aspect}", f"no such aspect; this project rates {', '.join(shape.aspects)}")
    scores = {}
    for aspect in shape.aspects:
        if aspect not in ratings:
            raise AnswerError(f"ratings.{aspect}", f"a score from {low} to {high} (the aspect is missing)")
        scores[aspect] = _int(ratings[aspect], f"ratings.{aspect}", low, high)
    flags = _get(answer, "flags", [])
    if not isinstance(flags, list):
        raise AnswerError("flags", f"a list of flag names, found {describe_value(flags)}")
    for i, flag in enumerate(flags):
        if flag not in shape.flags:
            raise AnswerError(f"flags[{i}]", f"one of {', '.join(shape.flags) or '(no flags in this project)'}, "
                              f"found {describe_value(flag)}")
    comment = _text(_get(answer, "comment", ""), "comment")
    return {"ratings": scores, "flags": sorted(set(flags)), "comment": comment}


def _thumbs(shape: TaskShape, answer: Mapping[str, Any], order: Sequence[int]) -> dict[str, Any]:
    _check_keys(answer, ("thumb", "comment"))
    thumb = _get(answer, "thumb")
    if thumb not in ("up", "down"):
        raise AnswerError("thumb", f"'up' or 'down', found {describe_value(thumb)}")
    return {"thumb": thumb, "comment": _text(_get(answer, "comment", ""), "comment")}


def _demonstration(shape: TaskShape, answer: Mapping[str, Any], order: Sequence[int]) -> dict[str, Any]:
    _check_keys(answer, ("turns",))
    turns = _get(answer, "turns")
    if not isinstance(turns, list) or not turns or len(turns) > 64:
        raise AnswerError("turns", f"a list of 1 to 64 turns, assistant first, found {describe_value(turns)}")
    checked = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, Mapping) or set(turn) != {"role", "content"}:
            raise AnswerError(f"turns[{i}]", f"an object with 'role' and 'content', found {describe_value(turn)}")
        expected_role = "assistant" if i % 2 == 0 else "user"
        if turn["role"] != expected_role:
            raise AnswerError(f"turns[{i}].role", f"{expected_role!r} (turns alternate, the assistant first), "
                              f"found {describe_value(turn['role'])}")
        checked.append({"role": expected_role, "content": _text(turn["content"], f"turns[{i}].content",
                                                                 allow_empty=False)})
    if checked[-1]["role"] != "assistant":
        raise AnswerError(f"turns[{len(checked) - 1}].role", "'assistant' (a demonstration ends with the answer)")
    result: dict[str, Any] = {"turns": checked}
    if shape.original is not None:
        result["edited"] = checked[0]["content"] != shape.original
    return result


# ---------------------------------------------------------------------------------------------------------------------
# gold


def gold_correct(task_type: str, canonical: Mapping[str, Any], gold: Mapping[str, Any] | None) -> bool | None:
    """Whether an answer agrees with a gold item's known answer; None when there is nothing to check.

    pairwise: the same preference (a, b or tie; strength not compared). ranking: the annotator's best response is
    one of the gold best. rating: every aspect within 1 point of the gold score. thumbs: the same thumb.
    """
    if not gold:
        return None
    if task_type == "pairwise":
        return canonical["preference"] == gold["preference"]
    if task_type == "ranking":
        ranks, gold_ranks = canonical["ranks"], gold["ranks"]
        best = {i for i, r in enumerate(ranks) if r == min(ranks)}
        gold_best = {i for i, r in enumerate(gold_ranks) if r == min(gold_ranks)}
        return bool(best & gold_best)
    if task_type == "rating":
        return all(abs(canonical["ratings"].get(k, float("inf")) - v) <= 1 for k, v in gold["ratings"].items())
    if task_type == "thumbs":
        return canonical["thumb"] == gold["thumb"]
    return None


# ---------------------------------------------------------------------------------------------------------------------
# canonical answers -> records (export)


def judgment_record(task_type: str, *, messages: list[dict[str, str]], responses: list[str],
                    answer: Mapping[str, Any], language: str, annotator: str, time: str,
                    record_id: str | None, tags: Sequence[str] = (),
                    scale: tuple[int, int] = (1, 7)) -> Record | None:
    """The alinea record a judgment stands for (what the reward and SFT trainers read); None for chat.

    "both bad" and "none acceptable" have no field in the records: they stay in the canonical export and the
    reward trainer sees the preference or the ranks alone.
    """
    common = {"messages": messages, "language": language, "annotator": annotator, "time": time,
              "id": record_id, "tags": tuple(tags)}
    if task_type == "pairwise":
        return Comparison(response_a=responses[0], response_b=responses[1], preference=answer["preference"],
                          strength=answer["strength"], **common)
    if task_type == "ranking":
        return Ranking(responses=tuple(responses), ranks=tuple(answer["ranks"]), **common)
    if task_type == "rating":
        return Rating(response=responses[0], ratings=dict(answer["ratings"]), scale=scale, **common)
    if task_type == "thumbs":
        return Thumb(response=responses[0], thumb=answer["thumb"], comment=answer.get("comment", ""), **common)
    if task_type == "demonstration":
        turns = answer["turns"]
        conversation = [*messages, *turns[:-1]]
        return Demonstration(response=turns[-1]["content"], **{**common, "messages": conversation})
    return None
