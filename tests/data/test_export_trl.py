"""Exports to TRL's dataset formats, and back again through the TRL importer."""

from __future__ import annotations

import pytest

from alinea.data.exporters import export_trl
from alinea.data.importers import import_trl
from alinea.data.jsonl import write_jsonl
from alinea.data.records import Comparison, Demonstration, Prompt, Ranking, Rating, Thumb

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Sky colour?"}]
COMPARISONS = [
    Comparison(prompt="2+2?", response_a="4", response_b="5", preference="a", strength=3, annotator="ana"),
    Comparison(messages=CHAT, response_a="Green.", response_b="Blue.", preference="b"),
    Comparison(prompt="Hi", response_a="Hello", response_b="Hey", preference="tie"),
]
RANKING = Ranking(prompt="Best fruit?", responses=["apple", "rock", "mango"], ranks=[1, 3, 1])


def test_preference_conversational():
    rows, skipped = export_trl([*COMPARISONS, RANKING], "preference")
    assert rows == [
        {
            "prompt": [{"role": "user", "content": "2+2?"}],
            "chosen": [{"role": "assistant", "content": "4"}],
            "rejected": [{"role": "assistant", "content": "5"}],
        },
        {
            "prompt": CHAT,
            "chosen": [{"role": "assistant", "content": "Blue."}],
            "rejected": [{"role": "assistant", "content": "Green."}],
        },
        # the ranking: apple and mango tie at 1, both beat rock
        {
            "prompt": [{"role": "user", "content": "Best fruit?"}],
            "chosen": [{"role": "assistant", "content": "apple"}],
            "rejected": [{"role": "assistant", "content": "rock"}],
        },
        {
            "prompt": [{"role": "user", "content": "Best fruit?"}],
            "chosen": [{"role": "assistant", "content": "mango"}],
            "rejected": [{"role": "assistant", "content": "rock"}],
        },
    ]
    assert skipped == {"tie": 1, "tied ranking pair": 1}


def test_preference_standard_skips_multi_turn_prompts_and_other_types():
    records = [
        *COMPARISONS,
        Demonstration(prompt="p", response="r"),
        Thumb(prompt="p", response="r", thumb="up"),
    ]
    rows, skipped = export_trl(records, "preference", conversational=False)
    assert rows == [{"prompt": "2+2?", "chosen": "4", "rejected": "5"}]
    assert skipped == {"demonstration record": 1, "multi-turn prompt": 1, "thumb record": 1, "tie": 1}


def test_sft_both_layouts():
    demos = [Demonstration(prompt="Say hi.", response="Hi!"), Demonstration(messages=CHAT, response="Blue.")]
    rows, skipped = export_trl(demos, "sft")
    assert rows == [
        {"messages": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}]},
        {"messages": [*CHAT, {"role": "assistant", "content": "Blue."}]},
    ]
    assert skipped == {}
    rows, skipped = export_trl(demos, "sft", conversational=False)
    assert rows == [{"prompt": "Say hi.", "completion": "Hi!"}]
    assert skipped == {"multi-turn prompt": 1}


def test_unpaired_preference_and_prompt_only():
    thumbs = [Thumb(prompt="p", response="good", thumb="up"), Thumb(prompt="p", response="bad", thumb="down")]
    rows, _ = export_trl(thumbs, "unpaired-preference", conversational=False)
    assert rows == [
        {"prompt": "p", "completion": "good", "label": True},
        {"prompt": "p", "completion": "bad", "label": False},
    ]
    rows, _ = export_trl(thumbs[:1], "unpaired-preference")
    assert rows == [
        {
            "prompt": [{"role": "user", "content": "p"}],
            "completion": [{"role": "assistant", "content": "good"}],
            "label": True,
        }
    ]
    everything = [*thumbs, RANKING, Rating(prompt="q", response="r", ratings={"x": 2}), Prompt(messages=CHAT)]
    rows, skipped = export_trl(everything, "prompt-only", conversational=False)
    assert rows == [{"prompt": "p"}, {"prompt": "p"}, {"prompt": "Best fruit?"}, {"prompt": "q"}]
    assert skipped == {"multi-turn prompt": 1}


def test_unknown_kind():
    with pytest.raises(ValueError, match="kind must be one of"):
        export_trl([], "dpo")


def without_prompt(json_row: dict) -> dict:
    return {key: value for key, value in json_row.items() if key not in ("prompt", "messages")}


@pytest.mark.parametrize("conversational", [True, False])
def test_export_then_import_gives_the_same_records(tmp_path, conversational):
    originals = [
        Comparison(prompt="2+2?", response_a="4", response_b="5", preference="a"),
        Demonstration(prompt="Say hi.", response="Hi!"),
        Thumb(prompt="p", response="bad", thumb="down"),
        Prompt(prompt="Tell me a story."),
    ]
    path = tmp_path / "trl.jsonl"
    for kind, record in zip(
        ["preference", "sft", "unpaired-preference", "prompt-only"], originals, strict=True
    ):
        rows, skipped = export_trl([record], kind, conversational=conversational)
        assert skipped == {}
        write_jsonl(path, rows)
        (back,), _ = import_trl(path)
        # A conversational export writes a plain prompt as one user message; otherwise nothing changes.
        assert back.prompt_messages() == record.prompt_messages()
        assert (back.messages is not None) == conversational
        assert without_prompt(back.to_json()) == without_prompt(record.to_json())
