"""Seeded train / held-out splits that keep related records together (`split_records`, `alinea data split`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alinea.data.jsonl import read_records, write_records
from alinea.data.records import Comparison, Demonstration, Prompt
from alinea.data.split import group_key, held_out_split, split_records
from alinea.errors import UserError


def comparisons(n_prompts: int, *, judges: int = 1, answers_per_prompt: int = 1) -> list[Comparison]:
    """n_prompts prompts, each with `answers_per_prompt` different pairs, each pair judged by `judges` annotators."""
    return [
        Comparison(
            prompt=f"question {p}", response_a=f"good {p}.{a}", response_b=f"bad {p}.{a}", preference="a",
            annotator=f"judge-{j}",
        )
        for p in range(n_prompts)
        for a in range(answers_per_prompt)
        for j in range(judges)
    ]


def test_sides_are_disjoint_complete_and_in_file_order():
    records = comparisons(40)
    split = split_records(records, holdout=0.15, seed=0)
    assert (split.n_groups, split.n_heldout_groups) == (40, 6)  # round(0.15 * 40)
    assert len(split.heldout) == 6 and len(split.train) == 34
    assert not {id(r) for r in split.train} & {id(r) for r in split.heldout}
    assert sorted(split.train + split.heldout, key=records.index) == records
    assert split.train == sorted(split.train, key=records.index)
    assert split.heldout == sorted(split.heldout, key=records.index)


def test_the_split_is_seeded_and_does_not_depend_on_file_order():
    records = comparisons(40)
    first = split_records(records, holdout=0.25, seed=3)
    assert split_records(records, holdout=0.25, seed=3) == first
    reversed_split = split_records(records[::-1], holdout=0.25, seed=3)
    assert set(map(group_key_of, reversed_split.heldout)) == set(map(group_key_of, first.heldout))
    assert split_records(records, holdout=0.25, seed=4).heldout != first.heldout


def group_key_of(record) -> str:
    return group_key(record, "item")


def test_judgments_of_one_item_stay_on_one_side():
    records = comparisons(30, judges=3)  # each pair judged three times
    split = split_records(records, holdout=0.2, seed=0)
    assert (split.n_groups, split.n_heldout_groups) == (30, 6)
    assert len(split.heldout) == 18
    assert not {group_key_of(r) for r in split.train} & {group_key_of(r) for r in split.heldout}


def test_by_prompt_keeps_every_answer_of_a_prompt_together():
    records = comparisons(10, answers_per_prompt=4)
    by_item = split_records(records, holdout=0.3, seed=1)
    by_prompt = split_records(records, holdout=0.3, seed=1, by="prompt")
    assert (by_item.n_groups, by_prompt.n_groups) == (40, 10)
    assert (by_prompt.n_heldout_groups, len(by_prompt.heldout)) == (3, 12)
    prompts = lambda side: {r.prompt for r in side}  # noqa: E731
    assert not prompts(by_prompt.train) & prompts(by_prompt.heldout)
    assert prompts(by_item.train) & prompts(by_item.heldout)  # by item, a prompt's answers may straddle


def test_prompt_and_demonstration_records_are_grouped_by_what_they_hold():
    records = [Prompt(prompt="q"), Demonstration(prompt="q", response="r"), Demonstration(prompt="q", response="r")]
    assert group_key(records[0], "item") != group_key(records[1], "item") == group_key(records[2], "item")
    assert group_key(records[0], "prompt") == group_key(records[1], "prompt")
    split = split_records(records, holdout=0.5, seed=0)
    assert sorted(map(len, (split.train, split.heldout))) == [1, 2]


def test_each_side_gets_at_least_one_group():
    records = comparisons(3)
    assert split_records(records, holdout=0.01, seed=0).n_heldout_groups == 1
    assert split_records(records, holdout=0.99, seed=0).n_heldout_groups == 2


@pytest.mark.parametrize(
    ("records", "kwargs", "message"),
    [
        (comparisons(5), {"holdout": 0.0}, "holdout: expected a share strictly between 0 and 1, got 0.0"),
        (comparisons(5), {"holdout": 1.0}, "strictly between 0 and 1"),
        (comparisons(5), {"holdout": 0.2, "by": "annotator"}, "expected one of item, prompt, got 'annotator'"),
        (comparisons(1, judges=4), {"holdout": 0.5}, "4 records form 1 item group(s); at least 2 are needed"),
    ],
)
def test_bad_settings_are_refused(records, kwargs, message):
    with pytest.raises(UserError) as caught:
        split_records(records, seed=0, **kwargs)
    assert message in str(caught.value)


def test_data_split_cli_writes_both_sides_and_a_summary(run_cli, tmp_path):
    source = tmp_path / "feedback.jsonl"
    write_records(source, comparisons(20, judges=2))
    out = tmp_path / "split"
    code, stdout, stderr = run_cli("data", "split", source, "--holdout", "0.25", "--seed", "7", "-o", out)
    assert code == 0, stderr
    train, heldout = read_records(out / "train.jsonl"), read_records(out / "heldout.jsonl")
    assert (len(train), len(heldout)) == (30, 10)
    assert not {group_key_of(r) for r in train} & {group_key_of(r) for r in heldout}
    summary = json.loads((out / "split.json").read_text(encoding="utf-8"))
    assert summary == {
        "source": str(source), "holdout": 0.25, "seed": 7, "by": "item", "records": 40, "groups": 20,
        "train_records": 30, "heldout_records": 10, "heldout_groups": 5,
    }
    assert "40 records in 20 item groups" in " ".join(stdout.split())


def test_data_split_cli_reports_bad_input_without_a_traceback(run_cli, tmp_path):
    source = tmp_path / "feedback.jsonl"
    write_records(source, comparisons(4))
    code, stdout, stderr = run_cli("data", "split", source, "--holdout", "1.5", "-o", tmp_path / "s")
    assert code == 2 and "Traceback" not in stdout + stderr
    assert "holdout: expected a share strictly between 0 and 1, got 1.5" in " ".join(stderr.split())
    assert not (tmp_path / "s").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "comparison", "prompt": "q"}\n', encoding="utf-8")
    code, stdout, stderr = run_cli("data", "split", bad, "-o", tmp_path / "s")
    assert code == 2 and f"{bad}:1: response_a" in " ".join(stderr.split())


def test_held_out_split_keeps_each_prompt_on_one_side():
    groups = [g for g in range(20) for _ in range(3)]  # 20 prompts, each judged 3 times
    held, kept = held_out_split(groups, 0.1, seed=0)
    assert sorted(held + kept) == list(range(60))
    assert len(held) == 6  # 2 whole prompts: 10% of 60 examples
    assert {groups[i] for i in held}.isdisjoint({groups[i] for i in kept})
    assert held_out_split(groups, 0.1, seed=0) == (held, kept)
    assert held_out_split(groups, 0.1, seed=1) != (held, kept)
    # a group that would overshoot is still taken whole; at least 2 training examples stay
    held, kept = held_out_split([0, 0, 0, 0, 1, 2], 0.2, seed=3)
    assert len(kept) >= 2 and {0, 1, 2} >= {[0, 0, 0, 0, 1, 2][i] for i in held}
    assert held_out_split([0] * 10, 0.0, seed=0) == ([], list(range(10)))


def test_held_out_split_with_distinct_prompts_is_a_seeded_permutation():
    held, kept = held_out_split(list(range(50)), 0.2, seed=4)
    order = np.random.default_rng(4).permutation(50).tolist()
    assert held == sorted(order[:10]) and len(kept) == 40


def test_held_out_split_leaves_min_train_examples():
    assert held_out_split([0, 1], 0.5, seed=0, min_train=1)[0] in ([0], [1])
    assert held_out_split([0, 1], 0.5, seed=0) == ([], [0, 1])  # min_train 2: nothing to hold out
    held, kept = held_out_split([0, 0], 0.5, seed=0, min_train=1)  # one prompt: single examples
    assert len(held) == 1 and len(kept) == 1


def test_held_out_split_falls_back_to_examples_when_one_prompt_holds_all():
    held, kept = held_out_split([0] * 10, 0.2, seed=0)
    assert len(held) == 2 and len(kept) == 8
    held, kept = held_out_split([0] * 9 + [1], 0.2, seed=0)  # the small prompt is held out, the big one cannot be
    assert held == [9] and len(kept) == 9
